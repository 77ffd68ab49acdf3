"""A real Odoo server on a throw-away database, driven from outside.

Used by :mod:`dqj_harness.stress.run` (the stress and chaos suite) and
:mod:`dqj_harness.bench.bench_server` (end-to-end benchmark). Nothing here is mocked:
the database is a copy of dev.sh's template with the addon installed by ``odoo -i``,
the server is ``odoo`` in prefork mode (``--workers=2 --max-cron-threads=2``) on a
free loopback port, jobs are enqueued by ``odoo shell`` processes, and the server is
reached over HTTP and PostgreSQL only.

What is not about a server (waiting, free ports, databases, processes, logs, the
addon's constants) is the test kit the Odoo tests use too, :mod:`dqj_harness.kit`:
re-exported here for the scenarios and benchmarks that import it from here.
"""

import argparse
import contextlib
import json
import os
import re
import subprocess
import time
import traceback

import requests

from dqj_harness.kit import (
    ADDON_DIR,
    Database,
    Failure,
    PgBouncer,
    addon_constant,
    addon_version,
    check,
    engine_module,
    free_port,
    log_lines,
    log_problems,
    odoo_env,
    odoo_main,
    start_with_input,
    stop_process_group,
    wait_for,
)

# The engine's "running now" advisory lock: (RUNNING_LOCK_NS, job id), objsubid 2 for
# the two-int form (see engine/job_locks.py).
RUNNING_LOCK_NS = addon_constant("engine/job_locks.py", "RUNNING_LOCK_NS")
# The external API's routes.
PROCESS_ROUTE = addon_constant("engine/names.py", "PROCESS_ROUTE")
STATS_ROUTE = addon_constant("engine/names.py", "STATS_ROUTE")
# The addon's parameter names (``settings.PARAM_*``).
settings = engine_module("settings")

__all__ = [
    "PROCESS_ROUTE",
    "RUNNING_LOCK_NS",
    "STATS_ROUTE",
    "Database",
    "Failure",
    "OdooServer",
    "PgBouncer",
    "addon_version",
    "check",
    "enqueue",
    "free_port",
    "hash_api_key",
    "job_group",
    "log_lines",
    "log_problems",
    "odoo_env",
    "odoo_main",
    "run_parser",
    "run_step",
    "settings",
    "start_with_input",
    "wait_for",
]


def run_parser(description):
    """The command line of a run on copies of dev.sh's template database."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--template", required=True, help="database to copy")
    parser.add_argument("--addons-path", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--log-dir", required=True)
    return parser


def run_step(name, step):
    """Print what ``step()`` returns (its summary line), or FAIL and why; the
    number of failures (0 or 1). A crash is reported too, and the run goes on."""
    try:
        print(step(), flush=True)
    except Failure as err:
        print(f"FAIL {name}: {err}", flush=True)
    except Exception:  # noqa: BLE001 -- report and go on with the next one
        print(f"FAIL {name}: crashed\n{traceback.format_exc()}", flush=True)
    else:
        return 0
    return 1


def addon_link_dir(addons_path):
    """The addons-path entry holding the link named ``deltatech_queue_job``."""
    for entry in addons_path.split(","):
        if os.path.isdir(os.path.join(entry, "deltatech_queue_job")):
            return entry
    raise Failure("deltatech_queue_job is not in the addons path")


def hash_api_key(addons_path, key):
    """The stored form of ``key``, computed by the addon's own code (no registry).

    The addon on ``addons_path`` must be this checkout: its engine is the one loaded.
    """
    served = os.path.join(addon_link_dir(addons_path), "deltatech_queue_job")
    check(
        os.path.samefile(served, ADDON_DIR),
        f"the addons path serves {served}, not this checkout ({ADDON_DIR})",
    )
    return engine_module("api_key").hash_api_key(key)


class OdooServer:
    """``odoo`` in prefork mode on a free loopback port, in a process group of its
    own so that it can always be stopped whole (workers, cron workers, gevent).

    ``workers=0`` is Odoo's threaded mode; ``extra_args`` (e.g. ``--load=...``) and
    ``env`` (added to the environment) reach the server as given.
    """

    def __init__(
        self, db, workers=2, cron_threads=2, log_name=None, extra_args=(), env=None
    ):
        self.db = db
        self.workers = workers
        self.cron_threads = cron_threads
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = os.path.join(db.log_dir, log_name or f"{db.name}-server.log")
        self.proc = None
        self.started_at = None  # time.monotonic() when the server was started
        self._log_fresh = False

    def start(self, timeout=120):
        if not self._log_fresh:
            # A restarted server appends to the log of its first start.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.log)
            self._log_fresh = True
        argv = self.db.odoo_argv(
            f"--workers={self.workers}",
            f"--max-cron-threads={self.cron_threads}",
            "--http-interface=127.0.0.1",
            f"--http-port={self.port}",
            f"--gevent-port={free_port()}",
            f"--db-filter=^{self.db.name}$",
            f"--logfile={self.log}",
            "--log-level=info",
            *self.extra_args,
        )
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            cwd="/",
            env={**odoo_env(), **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, f"the server exited, see {self.log}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/web/health", timeout=5).status_code == 200:
                    return self
            time.sleep(0.5)
        raise Failure(f"the server did not answer within {timeout} s, see {self.log}")

    @property
    def pgid(self):
        return self.proc.pid  # start_new_session: the master leads its group

    def is_worker(self, pid):
        """True for a live process of this server other than its master."""
        if pid == self.proc.pid:
            return False
        try:
            return os.getpgid(pid) == self.pgid
        except ProcessLookupError:
            return False

    def cron_worker_pids(self):
        """Cron worker processes this server started (they say so in its log)."""
        with open(self.log, errors="replace") as log:
            return {
                int(match.group(1))
                for match in re.finditer(
                    r"Worker WorkerCron \((\d+)\) alive", log.read()
                )
            }

    def cron_worker_timeouts(self):
        """Cron workers the master killed for overrunning their time limit."""
        with open(self.log, errors="replace") as log:
            return len(re.findall(r"WorkerCron \(\d+\) timeout after", log.read()))

    def process_of_backend(self, backend_pid):
        """The server's process at the other end of a PostgreSQL backend's socket.

        ``application_name`` cannot tell: it is fixed when the registry's connection
        settings are made, in the master before it forks its workers.
        """
        sockets = subprocess.run(
            ["ss", "-xpnH"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        ends = []  # (own inode, peer inode, pids)
        for line in sockets.splitlines():
            match = re.search(r"(\d+) \S+ (\d+) users:\((.*)\)", line)
            if match:
                pids = {int(pid) for pid in re.findall(r"pid=(\d+)", match.group(3))}
                ends.append((match.group(1), match.group(2), pids))
        peers = {peer for inode, peer, pids in ends if backend_pid in pids}
        pids = set().union(*(pids for inode, _peer, pids in ends if inode in peers))
        workers = [pid for pid in pids if self.is_worker(pid)]
        return workers[0] if len(workers) == 1 else None

    def stop(self):
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None

    # ------------------------------------------------------------ HTTP
    def api(self, path=PROCESS_ROUTE, params=None, timeout=180, **kwargs):
        """POST a JSON-RPC request to the queue API: (status, result, seconds)."""
        body = {"jsonrpc": "2.0", "id": 1, "params": params or {}}
        start = time.monotonic()
        response = requests.post(self.url + path, json=body, timeout=timeout, **kwargs)
        elapsed = time.monotonic() - start
        return response.status_code, response.json()["result"], elapsed

    def jsonrpc(self, path, params, session=None, timeout=120):
        """POST a JSON-RPC ``call`` to ``path`` (in ``session`` if given): the answer,
        ``result`` or ``error``."""
        response = (session or requests).post(
            self.url + path,
            json={"jsonrpc": "2.0", "method": "call", "params": params},
            timeout=timeout,
        )
        return response.json()

    def admin_session(self):
        """A logged-in web session of the administrator."""
        session = requests.Session()
        answer = self.jsonrpc(
            "/web/session/authenticate",
            {"db": self.db.name, "login": "admin", "password": "admin"},
            session=session,
            timeout=60,
        )
        check((answer.get("result") or {}).get("uid"), f"admin login failed: {answer}")
        return session

    def call_kw(self, session, model, method, args, kwargs=None, timeout=120):
        """``model.method(*args, **kwargs)`` through the web client's route; fails
        on an error."""
        data = self.call_kw_answer(session, model, method, args, kwargs, timeout)
        check("error" not in data, f"{model}.{method} failed: {data.get('error')}")
        return data["result"]

    def call_kw_answer(self, session, model, method, args, kwargs=None, timeout=120):
        """The web client's call, answered as is (``result`` or ``error``)."""
        params = {"model": model, "method": method, "args": args}
        return self.jsonrpc(
            f"/web/dataset/call_kw/{model}/{method}",
            {**params, "kwargs": kwargs or {}},
            session=session,
            timeout=timeout,
        )


# ---------------------------------------------------------------- enqueueing
# A job body is the code of a server action run as a job: ``env`` is the job's,
# with ``job_uuid`` in its context.
EFFECT = (
    'env.cr.execute("INSERT INTO dqj_stress_effect (uuid, kind, backend, started) '
    'VALUES (%s, %s, pg_backend_pid(), clock_timestamp())", '
    "[env.context['job_uuid'], {kind!r}])"
)

ENQUEUE = """
spec = json.loads({spec!r})
env = env(context=dict(env.context, tracking_disable=True))
model_id = env.ref("base.model_res_partner").id
uuids = {{}}
for group in spec:
    action = env["ir.actions.server"].create({{
        "name": "dqj stress: " + group["kind"],
        "model_id": model_id,
        "state": "code",
        "code": group["code"],
    }})
    for _i in range(group["count"]):
        job = action.with_delay(**group["delay"]).run()
        uuids.setdefault(group["kind"], []).append(job.uuid)
env.cr.commit()
print("RESULT", json.dumps({{"uuids": uuids, "committed": time.time()}}))
"""


def job_group(kind, count, before=(), after=(), effect=True, **delay):
    """``count`` jobs of ``kind``: SQL statements ``before``, the effect row, SQL
    statements ``after`` (each a string, or a line of Python when it starts with
    ``!``)."""
    lines = [_line(statement) for statement in before]
    if effect:
        lines.append(EFFECT.format(kind=kind))
    lines += [_line(statement) for statement in after]
    return {"kind": kind, "count": count, "code": "\n".join(lines), "delay": delay}


def _line(statement):
    if statement.startswith("!"):
        return statement[1:]
    return f"env.cr.execute({statement!r})"


def enqueue(db, groups):
    """Enqueue ``groups`` (see job_group) in one transaction, in an odoo shell.

    Returns ``{kind: [uuid, ...]}`` and the time right after the commit.
    """
    result = db.shell(ENQUEUE.format(spec=json.dumps(groups)))
    return result["uuids"], result["committed"]
