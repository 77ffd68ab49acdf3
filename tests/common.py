# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The tests' vocabulary: enqueue jobs, run a runner, open a second real cursor."""

import contextlib
import inspect
import threading

from odoo import api
from odoo.modules.registry import Registry
from odoo.tests import BaseCase, TransactionCase, get_db_name
from odoo.tests import common as odoo_tests_common
from odoo.tools import config

from odoo.addons.queue_job.job import Job
from odoo.addons.queue_job.jobrunner.runner import Database as JobRunnerDatabase

from dqj_harness.kit import kill, odoo_main, start_with_input

from ..engine.settings import PARAM_PREFIX
from ..engine.transaction import CALLER_OWNS_TRANSACTION

# The runner logs each failed job at ERROR, with its traceback, like queue_job does;
# tests that make jobs fail on purpose mute it.
JOB_LOGGER = "odoo.addons.deltatech_queue_job.models.queue_job"


def access_groups(record):
    """The groups a menu (or action, view) is restricted to: ``groups_id`` on 18.0,
    renamed ``group_ids`` on 19.0."""
    return record["group_ids" if "group_ids" in record._fields else "groups_id"]


def process_cron_job(ir_cron, db, cron_cr, job):
    """Run one acquired cron job as Odoo's cron worker does: ``_process_job(db,
    cron_cr, job)`` on 18.0, ``_process_job(cron_cr, job)`` on 19.0."""
    if "db" in inspect.signature(ir_cron._process_job).parameters:
        return ir_cron._process_job(db, cron_cr, job)
    return ir_cron._process_job(cron_cr, job)


def ensure_cron_jobrunner_record(env):
    """OCA's queue_job_cron_jobrunner's module record, uninstalled: listed from the
    addons path (18.0: dev.sh puts its release there), or, where OCA publishes none
    (19.0), created as the record a database keeps of a module once listed."""
    Module = env["ir.module.module"]
    domain = [("name", "=", "queue_job_cron_jobrunner")]
    if not Module.search(domain):
        Module.update_list()
    return Module.search(domain) or Module.create(
        {"name": "queue_job_cron_jobrunner", "state": "uninstalled"}
    )


def enter_registry_test_mode(case):
    """New cursors of the registry wrap the test's cursor (TestCursor) until the test
    ends: ``registry.enter_test_mode(cr)`` on 18.0, the test case's
    ``registry_enter_test_mode()`` on 19.0."""
    if hasattr(case.registry, "enter_test_mode"):
        case.registry.enter_test_mode(case.cr)
        case.addCleanup(case.registry.leave_test_mode)
    else:
        case.registry_enter_test_mode()


@contextlib.contextmanager
def holding_test_lock(case):
    """Hold the lock a TestCursor takes, as an HTTP request holds it while it runs:
    another thread cannot open its cursor meanwhile. On 18.0 the test takes the
    registry's ``test_lock`` here; on 19.0 the test thread always holds it."""
    lock = getattr(case.registry, "test_lock", None)
    if lock is None:
        yield
        return
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def letting_threads_open_cursors():
    """Let other threads open their TestCursors while in the block: on 19.0 the test
    thread holds the lock outside of ``release_test_lock()``; on 18.0 it is free
    outside of :func:`holding_test_lock`."""
    release = getattr(odoo_tests_common, "release_test_lock", None)
    return release() if release else contextlib.nullcontext()


@contextlib.contextmanager
def time_limits(cron, real):
    saved = config["limit_time_real_cron"], config["limit_time_real"]
    config["limit_time_real_cron"], config["limit_time_real"] = cron, real
    try:
        yield
    finally:
        config["limit_time_real_cron"], config["limit_time_real"] = saved


@contextlib.contextmanager
def as_cron_thread(start_time):
    """Make the current thread what Odoo's threaded server makes its cron threads:
    ``type = 'cron'``, and ``start_time`` (a ``time.time()``), set before each pass,
    the heartbeat its watchdog counts from. (Not another thread: the test runner
    holds the registries' lock, which the cron machinery takes.)"""
    thread = threading.current_thread()
    saved = {name: thread.__dict__.get(name) for name in ("type", "start_time")}
    thread.type, thread.start_time = "cron", start_time
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                thread.__dict__.pop(name, None)
            else:
                setattr(thread, name, value)


class JobsMixin:
    """Helpers for cases whose ``self.env`` is a ``queue.job``-capable environment."""

    def enqueue(self, count=1, env=None, **delay_kwargs):
        """Enqueue ``count`` plain jobs (test_queue_job's ``testing_method``)."""
        env = env or self.env
        model = env["test.queue.job"]
        delayables = [
            model.with_delay(**delay_kwargs).testing_method(i) for i in range(count)
        ]
        return self.jobs_of(delayables, env)

    def enqueue_code(self, code, env=None, **delay_kwargs):
        """Enqueue a job running ``code`` (a server action: real ORM code, any effect).

        The code sees ``env`` (with ``job_uuid`` in its context) like any server action.
        """
        env = env or self.env
        action = env["ir.actions.server"].create(
            {
                "name": "deltatech_queue_job test job",
                "model_id": env.ref("base.model_res_partner").id,
                "state": "code",
                "code": code,
            }
        )
        return self.jobs_of([action.with_delay(**delay_kwargs).run()], env)

    def jobs_of(self, delayables, env=None):
        env = env or self.env
        # with_delay() gives a Job; delayable() a Delayable, whose job exists once
        # the graph is delayed.
        uuids = [getattr(d, "_generated_job", d).uuid for d in delayables]
        return env["queue.job"].search([("uuid", "in", uuids)], order="id")

    def run_runner(self, env=None, **kwargs):
        env = env or self.env
        kwargs.setdefault("commit", False)
        kwargs.setdefault("source", "test")
        return env["queue.job"]._job_runner(**kwargs)

    def job_obj(self, record):
        return Job.load(record.env, record.uuid)


class QueueJobCase(TransactionCase, JobsMixin):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The test owns the transaction: the buttons take savepoints only.
        cls.env = cls.env(
            context=dict(
                cls.env.context,
                tracking_disable=True,
                **{CALLER_OWNS_TRANSACTION: True},
            )
        )
        cls.queue_job = cls.env["queue.job"]
        # Start every test from an empty queue: only this test's jobs are eligible.
        cls.env.cr.execute(
            "UPDATE queue_job SET state = 'done' WHERE state IN ('pending', 'enqueued')"
        )
        cls.queue_job.invalidate_model()
        # ... and without duration estimates: budgets judge the jobs by the run alone.
        cls.env.cr.execute("DELETE FROM queue_job_duration")


@contextlib.contextmanager
def second_cursor(dbname):
    """A real second connection to the database (another transaction), as superuser."""
    with Registry(dbname).cursor() as cr:
        yield api.Environment(cr, api.SUPERUSER_ID, {})


@contextlib.contextmanager
def queue_job_jobrunner(dbname):
    """queue_job's own jobrunner connection to the database (its ``Database`` class):
    it wins the master election (holds the election lock), listens to queue_job's
    notifications, and enqueues with its own ``set_job_enqueued``."""
    jobrunner = JobRunnerDatabase(dbname)
    try:
        assert jobrunner.has_queue_job, "queue_job's jobrunner does not see queue_job"
        yield jobrunner
    finally:
        jobrunner.close()


def odoo_command(*args):
    """The command line of an Odoo process on this test's database and addons.

    It starts Odoo the way this process was started (tooling's ``odoo_main``).
    """
    addons_path = config["addons_path"]  # a list on Odoo 19, a string on 18
    if not isinstance(addons_path, str):
        addons_path = ",".join(addons_path)
    argv = [*odoo_main(), *args]
    argv += ["-d", get_db_name(), "--addons-path", addons_path]
    # Odoo 19 warns when --http-interface is missing (a later one wins).
    argv += ["--http-interface", "127.0.0.1"]
    argv += ["--data-dir", config["data_dir"], "--log-level", "warn"]
    for option in ("db_host", "db_port", "db_user", "db_password"):
        if config.get(option):
            argv += [f"--{option.replace('_', '-')}", str(config[option])]
    return argv


class CommittedQueueCase(BaseCase, JobsMixin):
    """Jobs committed for real, seen by other cursors and processes.

    Each test starts with an empty queue and a scratch table ``dqj_test_effect``
    where test jobs record their side effects; what a test commits is removed after.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = Registry(get_db_name())

    def setUp(self):
        super().setUp()
        with self.committed() as env:
            env.cr.execute("SELECT coalesce(max(id), 0) FROM queue_job")
            self.first_job_id = env.cr.fetchone()[0] + 1
            env.cr.execute("SELECT coalesce(max(id), 0) FROM ir_cron_trigger")
            self.first_trigger_id = env.cr.fetchone()[0] + 1
            env.cr.execute("SELECT count(*) FROM queue_job WHERE state = 'pending'")
            self.assertEqual(env.cr.fetchone()[0], 0, "the queue must start empty")
            env.cr.execute(
                "CREATE TABLE dqj_test_effect (uuid varchar, channel varchar, "
                "started timestamp, finished timestamp)"
            )
        self.addCleanup(self._cleanup)

    def allow_commit_of_server_actions(self):
        """Give the job function of server actions run as jobs
        (``<ir.actions.server>.run``) "Allow Commit", committed, until the test
        ends."""
        with self.committed() as env:
            function = env["queue.job.function"].search(
                [("name", "=", "<ir.actions.server>.run")]
            )
            had_function = bool(function)
            if not function:
                function = env["queue.job.function"].create(
                    {
                        "model_id": env.ref("base.model_ir_actions_server").id,
                        "method": "run",
                    }
                )
            function.allow_commit = True
            function_id = function.id

        def restore():
            with self.committed() as env:
                function = env["queue.job.function"].browse(function_id)
                if had_function:
                    function.allow_commit = False
                else:
                    function.unlink()

        self.addCleanup(restore)

    def _cleanup(self):
        with self.committed() as env:
            env.cr.execute("DROP TABLE IF EXISTS dqj_test_effect")
            env.cr.execute("DELETE FROM queue_job WHERE id >= %s", [self.first_job_id])
            env.cr.execute(
                "DELETE FROM ir_cron_trigger WHERE id >= %s", [self.first_trigger_id]
            )
            env.cr.execute(
                "DELETE FROM ir_act_server WHERE name->>'en_US' = "
                "'deltatech_queue_job test job'"
            )
            env.cr.execute(
                "DELETE FROM ir_config_parameter WHERE key LIKE %s",
                [PARAM_PREFIX + "%"],
            )
            env.cr.execute("DELETE FROM queue_job_duration")
            env.registry.clear_cache()

    @contextlib.contextmanager
    def committed(self):
        """A new cursor whose work is committed when the block ends."""
        with self.registry.cursor() as cr:
            yield api.Environment(cr, api.SUPERUSER_ID, {"tracking_disable": True})

    EFFECT_CODE = (
        'env.cr.execute("INSERT INTO dqj_test_effect '
        'SELECT %s, %s, clock_timestamp(), NULL", '
        "[env.context['job_uuid'], {channel!r}])\n"
        "{body}\n"
        'env.cr.execute("UPDATE dqj_test_effect SET finished = clock_timestamp() '
        "WHERE uuid = %s\", [env.context['job_uuid']])"
    )

    def enqueue_effect_jobs(self, env, count, body="", channel=None, **delay_kwargs):
        """``count`` jobs recording their run in dqj_test_effect, running ``body``."""
        code = self.EFFECT_CODE.format(channel=channel or "root", body=body)
        action = env["ir.actions.server"].create(
            {
                "name": "deltatech_queue_job test job",
                "model_id": env.ref("base.model_res_partner").id,
                "state": "code",
                "code": code,
            }
        )
        if channel:
            delay_kwargs["channel"] = channel
        return self.jobs_of(
            [action.with_delay(**delay_kwargs).run() for _i in range(count)], env
        )

    def enqueue_sleeping_jobs(self, env, count, seconds, **kwargs):
        """``count`` effect jobs (as above) that hold their worker ``seconds`` seconds
        in PostgreSQL (long enough, say, for the test to kill it)."""
        body = f"env.cr.execute('SELECT pg_sleep({seconds})')"
        return self.enqueue_effect_jobs(env, count, body=body, **kwargs)

    def start_runner_process(self, script):
        """An ``odoo shell`` process running ``script``, killed at the test's end."""
        proc = start_with_input(odoo_command("shell", "--no-http"), script)
        self.addCleanup(kill, proc)
        return proc

    def effects(self, env):
        env.cr.execute("SELECT uuid, channel, started, finished FROM dqj_test_effect")
        return env.cr.fetchall()
