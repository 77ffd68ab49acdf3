"""Scenario: several servers, one queue.

Users who outgrow one Odoo server add servers behind a load balancer, all on one
PostgreSQL database. Here three separate ``odoo`` processes (``--workers=2
--max-cron-threads=1``, each on a port of its own, as three hosts would be) serve one
database; API callers are spread over the three, and each server's cron worker runs
the runner crons. A third of the way through, one server is killed with ``SIGKILL``
(its whole process group: master, HTTP and cron workers, jobs in flight) and started
again on the same port; its callers' calls are cut, they get connection errors until
it is back, and go on. Every job must end done, exactly once.

Who ran a job is recorded by the job itself: the ``application_name`` of its
PostgreSQL session, which Odoo takes from the ``ODOO_PGAPPNAME`` environment variable
of the server process that opened the connection (each server gets its own). The
split between API and cron comes from the runs' records (``queue_job_run``), which a
run cut by the kill never writes: their sum falls short of N by the jobs those runs
had done.
"""

import contextlib
import os
import signal
import threading
import time

from .harness import Stress
from .odoo_server import (
    RUNNING_LOCK_NS,
    Failure,
    OdooServer,
    check,
    enqueue,
    job_group,
    wait_for,
)

SERVERS = ("A", "B", "C")
VICTIM = "B"
SERVER = {"workers": 2, "cron_threads": 1}
CALLERS_PER_SERVER = 2
APP_NAME = "dqj-stress-server-"
REJOIN_MIN_LEFT = 100
JOB_SECONDS_SHORT = 0.1

# The job writes its effect row, then stamps it with the server it runs on.
WHO_RAN = (
    '!env.cr.execute("UPDATE dqj_stress_effect SET kind = '
    "current_setting('application_name') WHERE uuid = %s\", "
    "[env.context['job_uuid']])"
)

# Jobs the victim's processes are running at this moment (the engine's advisory
# "running now" lock, held by one of its PostgreSQL sessions).
IN_FLIGHT = """
SELECT l.objid::integer FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2 AND l.granted
  AND a.datname = current_database() AND a.application_name = %s
"""


def _size(st, short, full):
    return short if st.short else full


def _start_all(servers):
    """Start the servers side by side (each start loads a registry: several seconds,
    more on a busy machine)."""
    errors = []

    def start(server):
        try:
            server.start()
        except Exception as err:  # noqa: BLE001 -- reported below
            errors.append(err)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    check(not errors, f"a server did not start: {errors[:1]}")
    check(not any(t.is_alive() for t in threads), "a server start hangs")


def _kill_hard(server):
    """SIGKILL the server's whole process group, as a host going down would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pgid, signal.SIGKILL)
    server.proc.wait(timeout=30)

    def gone():
        try:
            os.killpg(server.pgid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 30, "the killed server's processes to be gone")


def _done(st, uuids):
    return st.db.scalar(
        "SELECT count(*) FROM dqj_stress_effect WHERE uuid = ANY(%s)", [uuids]
    )


def several_servers(st):
    """N jobs drained by three servers on one database, one of them killed and
    restarted midway: nothing lost, nothing run twice, each server took its share."""
    n = _size(st, 1000, 10000)
    # Short run's jobs last a while, so that the queue still holds work when the
    # killed server is back (an Odoo start takes seconds): trivial jobs, drained by
    # the other two meanwhile, would leave it nothing to rejoin.
    seconds = _size(st, JOB_SECONDS_SHORT, 0)
    sleep = [f"SELECT pg_sleep({seconds})"] if seconds else []
    st.server.stop()
    st.reset()
    servers = {
        label: OdooServer(
            st.db,
            log_name=f"stress-several-{label}-server.log",
            env={"ODOO_PGAPPNAME": APP_NAME + label},
            **SERVER,
        )
        for label in SERVERS
    }
    st.extra_logs += [server.log for server in servers.values()]
    victim = servers[VICTIM]
    try:
        _start_all(list(servers.values()))
        since = st.now()
        with contextlib.ExitStack() as stack:
            calls = {
                label: stack.enter_context(
                    Stress(st.db, server, st.key, st.short).callers(
                        CALLERS_PER_SERVER,
                        tolerate_cuts=True,
                        batch_size=50,
                        max_seconds=5,
                    )
                )
                for label, server in servers.items()
            }
            # One commit: the runner crons of the three servers are triggered by
            # it, the callers (polling already) find the jobs at once.
            uuids, _committed = enqueue(
                st.db, [job_group("several", n, after=[*sleep, WHO_RAN])]
            )
            uuids = uuids["several"]
            start = time.monotonic()
            wait_for(
                lambda: _done(st, uuids) >= n // 3,
                _size(st, 120, 600),
                "a third of the jobs to be done",
                interval=0.1,
            )
            kill = _kill_and_restart(st, uuids, victim)
            st.wait_final(uuids, _size(st, 240, 900), interval=0.5)
            elapsed = time.monotonic() - start
        for label, server in servers.items():
            check(server.proc.poll() is None, f"server {label} died")
    finally:
        for server in servers.values():
            server.stop()
    return _verdict(st, uuids, since, calls, kill, elapsed)


def _in_flight_on(st, label):
    return [row[0] for row in st.db.sql(IN_FLIGHT, [RUNNING_LOCK_NS, APP_NAME + label])]


def _kill_and_restart(st, uuids, victim):
    """Kill the victim, with jobs in flight on it when there are, and start it again
    on its port. Returns what the verdict needs to know about the kill."""
    with contextlib.suppress(Failure):
        wait_for(
            lambda: _in_flight_on(st, VICTIM),
            10,
            "a job in flight on the victim",
            interval=0.02,
        )
    kill = {"in_flight": _in_flight_on(st, VICTIM), "after": _done(st, uuids)}
    kill["at"] = st.db.scalar("SELECT clock_timestamp()")  # as the effect rows
    down = time.monotonic()
    _kill_hard(victim)
    victim.start()
    kill["gap"] = time.monotonic() - down
    kill["left"] = len(uuids) - _done(st, uuids)
    return kill


def _seconds(value):
    return "-" if value is None else f"{float(value):.1f} s"


def _verdict(st, uuids, since, calls, kill, elapsed):
    n = len(uuids)
    in_flight = kill["in_flight"]
    states = st.states(uuids)
    effects = st.effects(uuids)
    duplicates = sum(1 for count in effects.values() if count > 1) + st.db.scalar(
        "SELECT count(*) FROM queue_job WHERE uuid = ANY(%s) "
        "AND exc_info LIKE '%%dqj_stress_effect_pkey%%'",
        [uuids],
    )
    lost = n - sum(1 for uuid in uuids if effects[uuid] == 1)
    by_server = dict(
        st.db.sql(
            "SELECT kind, count(*) FROM dqj_stress_effect WHERE uuid = ANY(%s) "
            "GROUP BY kind",
            [uuids],
        )
    )
    ran = {label: by_server.pop(APP_NAME + label, 0) for label in SERVERS}
    # The restarted server's first job: its workers take calls before its health
    # check answers (they are busy with its callers' calls), so this is when it was
    # back, from the database's clock.
    after_restart, back_after, left_then = st.db.sql(
        "SELECT count(*), extract(epoch FROM min(started) - %s), "
        "(SELECT count(*) FROM dqj_stress_effect WHERE uuid = ANY(%s) "
        " AND started >= min(b.started)) "
        "FROM dqj_stress_effect b WHERE uuid = ANY(%s) AND kind = %s "
        "AND started > %s",
        [kill["at"], uuids, uuids, APP_NAME + VICTIM, kill["at"]],
    )[0]
    in_flight_done = st.db.scalar(
        "SELECT count(*) FROM queue_job q JOIN dqj_stress_effect e ON e.uuid = q.uuid "
        "WHERE q.id = ANY(%s) AND q.state = 'done'",
        [in_flight],
    )
    kind = f" of {JOB_SECONDS_SHORT} s" if st.short else ""
    runs = st.runs_since(since)
    by_source = {s: runs.get(s, (0, 0))[0] for s in ("api", "cron")}
    cut = calls[VICTIM]["cut"]
    summary = (
        f"several servers: {n} jobs{kind}, {len(SERVERS)} servers (one killed and "
        f"restarted after {kill['after']} done), duplicates {duplicates}, lost {lost}, "
        f"ran by server {'/'.join(SERVERS)}: "
        f"{'/'.join(str(ran[label]) for label in SERVERS)} "
        f"(api {by_source['api']} / cron {by_source['cron']}); server {VICTIM} "
        f"killed with {len(in_flight)} job(s) in flight (each done once: "
        f"{in_flight_done}/{len(in_flight)}), answering again "
        f"{kill['gap']:.1f} s after the kill, its first job after "
        f"{_seconds(back_after)} ({left_then} jobs left then), ran {after_restart} "
        f"after its restart, its callers' calls cut {cut}; {elapsed:.1f} s"
    )
    st.check_exactly_once(uuids, duplicates, lost, states["done"], summary)
    check(not by_server, f"jobs stamped by no server under test: {by_server}")
    for label in SERVERS:
        check(ran[label] > 0, f"server {label} ran no job: {summary}")
    check(in_flight_done == len(in_flight), f"a killed job is not done: {summary}")
    # A server back while the queue is far from empty takes its share again (the
    # others may have drained a short queue while it was starting).
    check(
        after_restart > 0 or kill["left"] < REJOIN_MIN_LEFT,
        f"server {VICTIM} ran nothing after its restart: {summary}",
    )
    check(cut > 0, f"the victim's callers never saw it down: {summary}")
    return summary
