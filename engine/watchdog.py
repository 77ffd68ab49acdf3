# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""When Odoo's watchdog would kill the worker running a cron, measured as it measures.

**Prefork** (``--workers``). The master kills a cron worker (SIGKILL) once
``now - worker.watchdog_time >= limit_time_real_cron`` (``limit_time_real`` when it is
-1; no limit when it is 0). ``watchdog_time`` is refreshed when the worker writes to
its watchdog pipe, which ``Worker._runloop`` does once per loop through
``self.multi.pipe_ping(...)``, *before* the worker sleeps (up to 60 s plus its pid mod
10, unless a ``NOTIFY cron_trigger`` wakes it) and before ``ir.cron._process_jobs``
runs every due cron one after the other, each up to ten callback calls. So the time a
runner has is the limit minus the time since that ping, not a budget counted from its
own start. :func:`install_heartbeat` records the ping's time in this process, without
changing what the ping does.

**Threaded** (no ``--workers``). ``ThreadedServer.cron_thread`` sets
``thread.start_time`` before each ``_process_jobs`` pass; ``process_limit`` (checked
by the main thread once a minute) restarts the whole server once a cron thread has
been in a pass for more than ``limit_time_real_cron`` (``limit_time_real`` when it is
0 or -1). The heartbeat is that ``start_time``.

Anywhere else (a shell, a test calling the cron machinery) no watchdog is known:
:func:`cron_watchdog` returns None.

**CPU time** (``limit_time_cpu``). Every prefork worker, HTTP and cron alike, sets
its soft ``RLIMIT_CPU`` to the CPU time it has used plus ``limit_time_cpu`` in
``Worker.check_limits``, once per loop (per request for an HTTP worker, per pass for
a cron worker). Past it the kernel sends SIGXCPU, and the worker exits (its handler
raises in the main thread, which ``Worker.run`` turns into an exit); past the hard
limit, SIGKILL. The threaded server sets no such limit. :func:`cpu_watchdog` reads
the limit the process really has, whoever set it: CPU time cannot run faster than
the wall clock for the one thread running a job, so the CPU seconds left, less the
margin of :func:`~.settings.limit_cap`, are a wall deadline that comes no later than
the signal. (A job burning CPU on several threads at once can use it faster; the
margin is the only allowance for that.) :func:`process_watchdog` is the earlier of
the two, for every run, not only the cron's.
"""

import os
import resource
import threading
import time
from typing import NamedTuple

import psutil

from odoo.service import server as odoo_server
from odoo.tools import config

from .settings import LIMIT_MARGIN_MIN, LIMIT_MARGIN_RATIO, limit_cap

# (pid, time.monotonic()) of this process's last watchdog ping; the pid tells a ping
# of this process from one inherited from the master (a fork copies this global).
_last_ping = None


def install_heartbeat():
    """Record the time of each watchdog ping of this process's prefork worker.

    Installed by the addon's ``post_load`` hook, once per process, when Odoo loads the
    addon (at server start when it is server-wide, else in the worker that first
    loads a registry with it). ``Worker._runloop`` looks ``pipe_ping`` up on the
    server object at each call, so wrapping the class's method reaches the workers
    forked after that as well as the one loading it. The wrapper reads the clock and
    calls the original: the watchdog sees exactly the pings it saw before. The time is
    read before the write, so that it is never later than the moment the master reads
    the ping. Idempotent.
    """
    original = odoo_server.PreforkServer.pipe_ping
    if getattr(original, "dqj_heartbeat", False):
        return

    def pipe_ping(self, pipe):
        now = time.monotonic()
        original(self, pipe)
        # The master also pings its own wake-up pipe (signals): not a heartbeat.
        if pipe is not getattr(self, "pipe", None):
            global _last_ping
            _last_ping = (os.getpid(), now)

    pipe_ping.dqj_heartbeat = True
    pipe_ping.__wrapped__ = original
    odoo_server.PreforkServer.pipe_ping = pipe_ping


def _monotonic_of(epoch):
    """``time.time()`` value ``epoch`` on the ``time.monotonic()`` clock."""
    return time.monotonic() - (time.time() - epoch)


def _prefork_worker():
    """True in a worker process forked by Odoo's prefork server."""
    server = odoo_server.server
    return isinstance(server, odoo_server.PreforkServer) and server.pid != os.getpid()


def prefork_heartbeat():
    """``time.monotonic()`` of this worker's last ping, or a safe earlier bound.

    Until this process recorded a ping of its own (the addon was imported in the
    worker, during its first pass, after that pass's ping), the process's start is
    used: the worker pings after it is forked, so that is earlier than any ping the
    master has seen, and a deadline counted from it comes before the real one.
    """
    if _last_ping is not None and _last_ping[0] == os.getpid():
        return _last_ping[1]
    return _monotonic_of(psutil.Process().create_time())


def prefork_cron_limit():
    """Seconds a prefork cron worker may go without a ping, None when unlimited
    (as ``PreforkServer.__init__`` reads them)."""
    limit = config["limit_time_real_cron"] or None
    if limit == -1:
        limit = config["limit_time_real"]
    return limit if limit and limit > 0 else None


def threaded_cron_limit():
    """Seconds a cron thread's pass may last, None when unlimited (as
    ``ThreadedServer.process_limit`` reads them)."""
    limit = config["limit_time_real"]
    if config["limit_time_real_cron"] and config["limit_time_real_cron"] > 0:
        limit = config["limit_time_real_cron"]
    return limit if limit and limit > 0 else None


def cron_heartbeat():
    """(heartbeat, limit) of the watchdog over this cron run, or (None, None).

    The heartbeat is on the ``time.monotonic()`` clock.
    """
    if _prefork_worker():
        return prefork_heartbeat(), prefork_cron_limit()
    thread = threading.current_thread()
    start = getattr(thread, "start_time", None)
    if getattr(thread, "type", None) == "cron" and start:
        return _monotonic_of(start), threaded_cron_limit()
    return None, None


class Watchdog(NamedTuple):
    """The time limit a runner started by the cron lives under.

    ``deadline``: the ``time.monotonic()`` instant the run must be done by, counted
    from the worker's last heartbeat, so that it also covers Odoo's further callback
    calls and the crons run before in the same pass; ``budget``: the most any cron run
    gets (right after a heartbeat).
    """

    deadline: float
    budget: float


def watchdog_after(heartbeat, limit):
    """The :class:`Watchdog` of a limit of ``limit`` seconds counted from
    ``heartbeat``, or None when either is unknown. The run must be done the margin of
    :func:`~.settings.limit_cap` before the limit: the job in flight overrunning its
    estimate, its commit, the cron's own bookkeeping, the master's check interval."""
    budget = limit_cap(limit)
    if heartbeat is None or budget is None:
        return None
    return Watchdog(heartbeat + budget, budget)


def cron_watchdog():
    """The :class:`Watchdog` over a runner started by the cron in this thread, or
    None."""
    return watchdog_after(*cron_heartbeat())


def cpu_watchdog_after(soft_limit, used, now, limit=None):
    """The :class:`Watchdog` of a process whose soft ``RLIMIT_CPU`` is
    ``soft_limit`` CPU seconds, of which it used ``used``, at ``now`` (monotonic).

    ``limit``: the CPU seconds each unit of work gets (prefork's
    ``limit_time_cpu``), which sizes the margin (as :func:`~.settings.limit_cap`
    does) and the budget; when unknown or 0, the seconds left. The deadline is the
    seconds left less the margin, already passed when the margin is the larger."""
    left = soft_limit - used
    if not limit or limit <= 0:
        limit = max(left, 0)
    margin = max(LIMIT_MARGIN_MIN, limit * LIMIT_MARGIN_RATIO)
    return Watchdog(now + left - margin, max(limit - margin, 0))


def cpu_watchdog():
    """The :class:`Watchdog` of this process's CPU time limit, or None when it has
    none."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_CPU)
    if soft == resource.RLIM_INFINITY:
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return cpu_watchdog_after(
        soft,
        usage.ru_utime + usage.ru_stime,
        time.monotonic(),
        config["limit_time_cpu"],
    )


def process_watchdog(in_cron):
    """The earlier of the watchdogs over a run in this thread: the cron's (when
    ``in_cron``) and the CPU time limit's, or None when neither applies."""
    watchdogs = [cpu_watchdog()]
    if in_cron:
        watchdogs.append(cron_watchdog())
    watchdogs = [watchdog for watchdog in watchdogs if watchdog is not None]
    if not watchdogs:
        return None
    return Watchdog(
        min(watchdog.deadline for watchdog in watchdogs),
        min(watchdog.budget for watchdog in watchdogs),
    )
