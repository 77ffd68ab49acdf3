# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The test kit: the plain Python shared by the addon's Odoo tests, stress and bench.

Waiting on a condition with a bound, free ports, the command that starts Odoo,
throw-away databases (clone, drop, SQL, ``odoo -i``/``odoo shell`` on them), killing
processes, scanning an Odoo log for problems, and the addon's own constants.

Why here, in the harness package (``dqj_harness``), and imported by name everywhere
(``from dqj_harness.kit import wait_for``): the addon's tests, the stress suite and
the benchmarks use one copy of it, and the addon's wheel ships none of it (the site
that runs the addon's tests installs the harness: ``pip install -e harness``, which
``./dev.sh`` does in each series' virtual environment). It imports neither Odoo nor
the addon (only the standard library and psycopg2), so importing it has no side
effect in a process that is no Odoo server. It is not in ``engine/``: that package is
the addon's runtime, shipped to production; test tooling stays out of it.

The addon's constants are read, never copied. Modules that import only Odoo's plain
modules are loaded by path (:func:`engine_module`: ``engine/settings.py``,
``engine/api_key.py``); those that import queue_job or the ORM
(``engine/job_locks.py``) cannot be imported outside a server, so their literal
constants are read from their source (:func:`addon_constant`), as are the names of
``engine/names.py``: the value is the module's own, and a renamed or no longer
literal constant fails loudly.
"""

import ast
import contextlib
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2
import psycopg2.sql

# The addon's folder: the repository holding the harness (harness/dqj_harness/kit.py).
ADDON_DIR = pathlib.Path(__file__).resolve().parents[2]


class Failure(AssertionError):
    """A violated expectation: the test, scenario or benchmark fails loudly."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def wait_for(condition, timeout, what, interval=0.1):
    """Poll ``condition()`` until it is truthy and return its value; fail after
    ``timeout`` seconds, saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def threads_running(target, count, stop, join_timeout):
    """``count`` daemon threads running ``target`` while the block runs; then
    ``stop`` (the threading.Event they watch) is set and each is given
    ``join_timeout`` seconds to end. Yields the threads."""
    threads = [threading.Thread(target=target, daemon=True) for _i in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield threads
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=join_timeout)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- the addon's names
def addon_constant(relative_path, name):
    """The literal value of the module-level constant ``name`` in the addon's file
    ``relative_path``, read from its source (the module is not imported)."""
    path = ADDON_DIR / relative_path
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name
            for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError(f"no constant {name} in {relative_path}")


def engine_module(name):
    """The addon's ``engine/<name>.py``, loaded by path as ``dqj_engine.<name>``.

    Only for the engine modules that import Odoo's plain modules alone (settings,
    api_key): importing the addon as such would import queue_job into a process that
    has no server's addons namespace.
    """
    package = sys.modules.get("dqj_engine")
    if package is None:
        engine = ADDON_DIR / "engine"
        spec = importlib.util.spec_from_file_location(
            "dqj_engine",
            engine / "__init__.py",
            submodule_search_locations=[str(engine)],
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"dqj_engine.{name}")


def addon_version(series):
    """The version Odoo ``series`` ("18.0") records for the addon: the manifest's
    series-free ``x.y.z`` with the series in front, as Odoo's ``adapt_version``
    does."""
    manifest = ADDON_DIR / "__manifest__.py"
    return f"{series}.{ast.literal_eval(manifest.read_text())['version']}"


# ---------------------------------------------------------------- processes
def odoo_main():
    """The command starting Odoo: the test tooling's launcher when dev.sh names one
    (``DQJ_ODOO_LAUNCHER``, inherited by the processes it starts; see
    :mod:`dqj_harness.tools.odoo_launcher`), else odoo-bin's own lines."""
    launcher = os.environ.get("DQJ_ODOO_LAUNCHER")
    if launcher:
        return [sys.executable, "-m", launcher]
    return [sys.executable, "-c", "import odoo.cli; odoo.cli.main()"]


def odoo_env():
    return {**os.environ, "TZ": "UTC"}


def start_with_input(argv, text):
    """Start ``argv`` (e.g. an ``odoo shell``) reading ``text`` as its whole input;
    its output and errors are pipes, read with ``communicate()``."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdin.write(text)
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it again
    return proc


def kill(proc, timeout=30):
    """SIGKILL ``proc`` (a Popen) if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=timeout)


def stop_process_group(proc, grace=(20, 10)):
    """SIGTERM, then SIGKILL, the process group ``proc`` leads (a Popen started with
    ``start_new_session=True``), waiting at most ``grace`` seconds after each."""
    pgid = proc.pid
    for sig, seconds in zip((signal.SIGTERM, signal.SIGKILL), grace, strict=True):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=seconds)
            # The leader is gone; the rest of its group may linger a moment.
            if not _group_alive(pgid):
                break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


# ---------------------------------------------------------------- Odoo logs
# Odoo's noise on a machine where it runs as root: never a problem of the code.
ALWAYS_EXCUSED = ("Running as user 'root' is a security risk",)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_lines(path, levels):
    """The lines of the Odoo log ``path`` (none if it does not exist) logged at one
    of ``levels`` (``date time pid LEVEL db logger: message``)."""
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as log:
        return [
            line.rstrip()
            for line in log
            if len(parts := line.split(" ", 4)) > 4 and parts[3] in levels
        ]


def log_problems(path, level="ERROR", excused=()):
    """The lines of the Odoo log ``path`` at ``level`` or above, but those holding
    one of the ``excused`` texts (asked for on purpose). CRITICAL is never excused."""
    excused = (*ALWAYS_EXCUSED, *excused)
    return [
        line
        for line in log_lines(path, LEVELS[LEVELS.index(level) :])
        if " CRITICAL " in line or not any(text in line for text in excused)
    ]


# ---------------------------------------------------------------- databases
class Database:
    """A throw-away PostgreSQL database (a copy of ``template``) and the Odoo
    processes run on it, with the addons path and data dir of the run."""

    def __init__(self, name, template, addons_path, data_dir, log_dir):
        self.name = name
        self.template = template
        self.addons_path = addons_path
        self.data_dir = data_dir
        self.log_dir = log_dir

    def clone(self, name):
        """The handle of a copy of this database named ``name`` (see create)."""
        return Database(name, self.name, self.addons_path, self.data_dir, self.log_dir)

    # ------------------------------------------------------------ lifecycle
    # Not an ORM create (pylint-odoo takes any "create" for one).
    def create(self, modules):  # pylint: disable=method-required-super
        """A copy of the template, then ``odoo -i modules`` (none: the copy only)."""
        self.drop()
        subprocess.run(["createdb", "-T", self.template, self.name], check=True)
        store = os.path.join(self.data_dir, "filestore")
        if os.path.isdir(os.path.join(store, self.template)):
            shutil.copytree(
                os.path.join(store, self.template), os.path.join(store, self.name)
            )
        if modules:
            self.odoo_init("-i", modules, f"{self.name}-install.log")

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
                cr.execute(
                    psycopg2.sql.SQL("DROP DATABASE IF EXISTS {}").format(
                        psycopg2.sql.Identifier(self.name)
                    )
                )
        shutil.rmtree(
            os.path.join(self.data_dir, "filestore", self.name), ignore_errors=True
        )

    def odoo_init(self, flag, modules, log_name, log_level="warn", timeout=900):
        """``odoo -i|-u modules --stop-after-init``; it must succeed. Returns the path
        of its (fresh) log."""
        log = os.path.join(self.log_dir, log_name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log)
        proc = subprocess.run(
            self.odoo_argv(flag, modules, "--stop-after-init", "--http-port=0")
            + ["--logfile", log, "--log-level", log_level],
            cwd="/",
            env=odoo_env(),
            timeout=timeout,
            check=False,
        )
        check(proc.returncode == 0, f"odoo {flag} {modules} failed, see {log}")
        return log

    # ------------------------------------------------------------ access
    def odoo_argv(self, *args, shell=False):
        argv = odoo_main()
        if shell:
            argv.append("shell")
        argv += [f"--addons-path={self.addons_path}", f"--data-dir={self.data_dir}"]
        # Odoo 19 warns when --http-interface is missing (a later one wins).
        argv += ["--http-interface=127.0.0.1"]
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


# ---------------------------------------------------------------- poolers
PGBOUNCER_CONFIG = """\
[databases]
{db} = host={socket_dir} port={pg_port} dbname={db} user={server_user}
* = host={socket_dir} port={pg_port} user={server_user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
admin_users = {admin}
pool_mode = {mode}
default_pool_size = 20
max_client_conn = 200
server_round_robin = 1
ignore_startup_parameters = extra_float_digits,options
"""


class PgBouncer:
    """A real pgbouncer (Debian's package) of our own, in ``mode`` (``session`` or
    ``transaction``), on a free loopback port in front of database ``dbname``'s
    PostgreSQL (reached as psycopg2 reaches it by default: ``PGHOST``...).

    It logs in to PostgreSQL on its Unix socket: when started by root, as the
    ``postgres`` user (pgbouncer refuses to run as root; the socket's peer
    authentication takes it), otherwise as the current user. Clients log in as
    anyone (``auth_type = any``). Idle server connections are handed out in turn
    (``server_round_robin``), as a busy pool does: a lone client's consecutive
    transactions then run on different server connections whenever several are idle.
    """

    BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

    def __init__(self, dbname, mode, log_path):
        self.dbname = dbname
        self.mode = mode
        self.log = log_path
        self.port = free_port()
        self.dir = None
        self.proc = None

    def start(self, timeout=30):
        direct = contextlib.closing(psycopg2.connect(dbname=self.dbname))
        with direct as conn, conn.cursor() as cr:
            cr.execute(
                "SELECT current_setting('unix_socket_directories'), "
                "current_setting('port'), current_user"
            )
            socket_dirs, pg_port, client = cr.fetchone()
        as_root = os.geteuid() == 0
        self.dir = tempfile.mkdtemp(prefix="dqj-pgbouncer-")
        os.chmod(self.dir, 0o755)  # readable by the postgres user
        ini = os.path.join(self.dir, "pgbouncer.ini")
        with open(ini, "w") as config:
            config.write(
                PGBOUNCER_CONFIG.format(
                    db=self.dbname,
                    socket_dir=socket_dirs.split(",")[0].strip(),
                    pg_port=pg_port,
                    server_user="postgres" if as_root else client,
                    port=self.port,
                    admin=client,
                    mode=self.mode,
                )
            )
        os.chmod(ini, 0o644)
        argv = [self.BINARY, *(["-u", "postgres"] if as_root else []), ini]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._answers, timeout, f"pgbouncer to answer, see {self.log}")
        return self

    def _answers(self):
        check(self.proc.poll() is None, f"pgbouncer exited, see {self.log}")
        try:
            self.stats()
        except psycopg2.Error:
            return False
        return True

    def connect(self, dbname=None, autocommit=True):
        """A client connection through the pooler."""
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            dbname=dbname or self.dbname,
            connect_timeout=10,
        )
        conn.autocommit = autocommit
        return conn

    def uri(self):
        """The database through the pooler, as Odoo's ``db_connect`` takes it."""
        return f"postgresql://127.0.0.1:{self.port}/{self.dbname}"

    def stats(self):
        """The database's row of pgbouncer's ``SHOW STATS``: {column: value}."""
        # The admin console takes no BEGIN: autocommit.
        console = contextlib.closing(self.connect("pgbouncer"))
        with console as conn, conn.cursor() as cr:
            cr.execute("SHOW STATS")
            names = [column.name for column in cr.description]
            rows = [dict(zip(names, row, strict=True)) for row in cr.fetchall()]
        return next((row for row in rows if row["database"] == self.dbname), {})

    def open_server_connections(self, count):
        """Make the pool hold ``count`` idle server connections: ``count`` clients
        in a transaction at once, then done."""
        clients = [self.connect(autocommit=False) for _i in range(count)]
        try:
            for conn in clients:
                with conn.cursor() as cr:
                    cr.execute("SELECT pg_backend_pid()")
            for conn in clients:
                conn.commit()
        finally:
            for conn in clients:
                conn.close()

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
