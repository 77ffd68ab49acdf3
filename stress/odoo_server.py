"""A real Odoo server on a throw-away database, driven from outside.

Used by ``stress/run.py`` (the stress and chaos suite) and ``bench/bench_server.py``
(end-to-end benchmark). Nothing here is mocked: the database is a copy of dev.sh's
template with the addon installed by ``odoo -i``, the server is ``odoo`` in prefork
mode (``--workers=2 --max-cron-threads=2``) on a free loopback port, jobs are enqueued
by ``odoo shell`` processes, and the server is reached over HTTP and PostgreSQL only.
"""

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import psycopg2
import requests

# The engine's "running now" advisory lock: (RUNNING_LOCK_NS, job id), objsubid 2 for
# the two-int form (see engine/job_locks.py).
RUNNING_LOCK_NS = 0x51D7


def odoo_main():
    """The command starting Odoo: the test tooling's launcher when dev.sh names one
    (``DQJ_ODOO_LAUNCHER``, see tools/odoo_launcher.py), else odoo-bin's own lines."""
    launcher = os.environ.get("DQJ_ODOO_LAUNCHER")
    if launcher:
        return [sys.executable, launcher]
    return [sys.executable, "-c", "import odoo; odoo.cli.main()"]


class Failure(AssertionError):
    """A violated expectation: the scenario (or the benchmark) fails loudly."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def wait_for(condition, timeout, what, interval=0.2):
    """Poll ``condition()`` until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def addon_link_dir(addons_path):
    """The addons-path entry holding the link named ``deltatech_queue_job``."""
    for entry in addons_path.split(","):
        if os.path.isdir(os.path.join(entry, "deltatech_queue_job")):
            return entry
    raise Failure("deltatech_queue_job is not in the addons path")


def hash_api_key(addons_path, key):
    """The stored form of ``key``, computed by the addon's own code (no registry).

    Only the addon's ``engine`` package is loaded (it imports no ORM class): importing
    the addon itself would import queue_job into this process, which is no Odoo
    process and has neither the run's addons namespace nor its stand-in.
    """
    engine = os.path.join(addon_link_dir(addons_path), "deltatech_queue_job", "engine")
    spec = importlib.util.spec_from_file_location(
        "dqj_engine",
        os.path.join(engine, "__init__.py"),
        submodule_search_locations=[engine],
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package
    spec.loader.exec_module(package)
    from dqj_engine.api_key import (  # noqa: PLC0415 -- loaded just above
        hash_api_key as addon_hash,
    )

    return addon_hash(key)


class Database:
    """A throw-away copy of the template database, with the addon (or another) in."""

    def __init__(self, name, template, addons_path, data_dir, log_dir):
        self.name = name
        self.template = template
        self.addons_path = addons_path
        self.data_dir = data_dir
        self.log_dir = log_dir

    # ------------------------------------------------------------ lifecycle
    def create(self, modules):
        """A copy of the template, then ``odoo -i modules`` (none: the copy only)."""
        self.drop()
        subprocess.run(["createdb", "-T", self.template, self.name], check=True)
        store = os.path.join(self.data_dir, "filestore")
        if os.path.isdir(os.path.join(store, self.template)):
            shutil.copytree(
                os.path.join(store, self.template), os.path.join(store, self.name)
            )
        if not modules:
            return
        log = os.path.join(self.log_dir, f"{self.name}-install.log")
        proc = subprocess.run(
            self.odoo_argv("-i", modules, "--stop-after-init", "--http-port=0")
            + ["--logfile", log, "--log-level", "warn"],
            cwd="/",
            env=odoo_env(),
            timeout=600,
            check=False,
        )
        check(proc.returncode == 0, f"installing {modules} failed, see {log}")

    def drop(self):
        with (
            contextlib.suppress(psycopg2.Error),
            contextlib.closing(psycopg2.connect(dbname="postgres")) as conn,
        ):
            conn.autocommit = True
            with conn.cursor() as cr:
                cr.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid != pg_backend_pid()",
                    [self.name],
                )
                cr.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
        shutil.rmtree(
            os.path.join(self.data_dir, "filestore", self.name), ignore_errors=True
        )

    # ------------------------------------------------------------ access
    def odoo_argv(self, *args, shell=False):
        argv = odoo_main()
        if shell:
            argv.append("shell")
        argv += [f"--addons-path={self.addons_path}", f"--data-dir={self.data_dir}"]
        return argv + ["-d", self.name, *args]

    def connect(self, autocommit=True):
        conn = psycopg2.connect(dbname=self.name)
        conn.autocommit = autocommit
        return conn

    def sql(self, query, params=None):
        """Run ``query`` in its own transaction; rows for a SELECT."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cr:
            cr.execute(query, params)
            return cr.fetchall() if cr.description else None

    def scalar(self, query, params=None):
        return self.sql(query, params)[0][0]

    def shell(self, script, timeout=600):
        """Run ``script`` in ``odoo shell``; the JSON it prints after ``RESULT``."""
        proc = subprocess.run(
            self.odoo_argv("--no-http", "--log-level=warn", shell=True),
            input="import json, time\n" + script,
            capture_output=True,
            text=True,
            cwd="/",
            env=odoo_env(),
            timeout=timeout,
            check=False,
        )
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])
        raise Failure(
            f"odoo shell failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )


def odoo_env():
    return {**os.environ, "TZ": "UTC"}


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
        if self.proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
                # The master is gone; its workers may linger a moment.
                if not self._group_alive():
                    break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.proc = None

    def _group_alive(self):
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False

    # ------------------------------------------------------------ HTTP
    def api(self, path="/api/v1/queue/process", params=None, timeout=180, **kwargs):
        """POST a JSON-RPC request to the queue API: (status, result, seconds)."""
        body = {"jsonrpc": "2.0", "id": 1, "params": params or {}}
        start = time.monotonic()
        response = requests.post(self.url + path, json=body, timeout=timeout, **kwargs)
        elapsed = time.monotonic() - start
        return response.status_code, response.json()["result"], elapsed

    def admin_session(self):
        """A logged-in web session of the administrator."""
        session = requests.Session()
        response = session.post(
            self.url + "/web/session/authenticate",
            json={
                "jsonrpc": "2.0",
                "method": "call",
                "params": {"db": self.db.name, "login": "admin", "password": "admin"},
            },
            timeout=60,
        )
        check(
            response.ok and response.json().get("result", {}).get("uid"),
            f"admin login failed: {response.text[:500]}",
        )
        return session

    def call_kw(self, session, model, method, args, kwargs=None, timeout=120):
        response = session.post(
            f"{self.url}/web/dataset/call_kw/{model}/{method}",
            json={
                "jsonrpc": "2.0",
                "method": "call",
                "params": {
                    "model": model,
                    "method": method,
                    "args": args,
                    "kwargs": kwargs or {},
                },
            },
            timeout=timeout,
        )
        data = response.json()
        check("error" not in data, f"{model}.{method} failed: {data.get('error')}")
        return data["result"]


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
