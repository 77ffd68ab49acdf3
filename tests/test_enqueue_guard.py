# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""queue_job's own jobrunner beside this addon's runners: the enqueue guard.

The jobrunner here is queue_job's own code (``jobrunner.runner.Database``): its
connection, its election lock, its ``set_job_enqueued`` UPDATE.
"""

import collections
import os
import threading
from unittest import mock

import odoo
from odoo.service import server as odoo_server
from odoo.tests import TransactionCase, get_db_name, tagged
from odoo.tools import config, mute_logger

from dqj_harness.kit import wait_for

from .. import hooks
from ..engine.jobrunner_guard import ENQUEUE_GUARD, queue_job_runner_attached
from ..engine.settings import queue_job_runner_in_this_server
from .common import JOB_LOGGER, CommittedQueueCase, queue_job_jobrunner

# A job that asks to be run again in a minute: the runner postpones it.
RETRY_LATER = "raise RetryableJobError('not yet', seconds=60)"

# A committed job, by its id and uuid (usable once its cursor is closed).
JobRef = collections.namedtuple("JobRef", "id uuid")


@tagged("post_install", "-at_install")
class TestEnqueueGuard(CommittedQueueCase):
    def committed_jobs(self, count, body=None):
        with self.committed() as env:
            if body is None:
                jobs = self.enqueue(count, env=env)
            else:
                jobs = self.enqueue_effect_jobs(env, count, body=body)
            return [JobRef(job.id, job.uuid) for job in jobs]

    def job_row(self, job):
        with self.committed() as env:
            env.cr.execute(
                "SELECT state, date_enqueued, eta > now() AT TIME ZONE 'UTC' "
                "FROM queue_job WHERE id = %s",
                [job.id],
            )
            return env.cr.fetchone()

    def set_row(self, job, state, eta_offset=None):
        with self.committed() as env:
            env.cr.execute(
                "UPDATE queue_job SET state = %s, eta = CASE WHEN %s::interval IS NULL "
                "THEN NULL ELSE now() AT TIME ZONE 'UTC' + %s::interval END "
                "WHERE id = %s",
                [state, eta_offset, eta_offset, job.id],
            )

    def waits_on_a_lock(self, backend_pid):
        # A fresh transaction each time: pg_stat_activity is read once per transaction.
        with self.committed() as env:
            env.cr.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                [backend_pid],
            )
            row = env.cr.fetchone()
        return bool(row) and row[0] == "Lock"

    def race(self, body=""):
        """Our runner holds a job; the jobrunner enqueues it meanwhile (its UPDATE
        waits on our row lock); our runner commits. Returns the runner's outcome, the
        job's row after both, and the notifications the jobrunner received."""
        (job,) = self.committed_jobs(1, body=body)
        errors = []

        def enqueue():
            try:
                jobrunner.set_job_enqueued(job.uuid)
            except Exception as err:  # noqa: BLE001 -- reported by the test
                errors.append(err)

        with (
            queue_job_jobrunner(get_db_name()) as jobrunner,
            self.committed() as env,
        ):
            held = env["queue.job"]._acquire_one_job()
            self.assertEqual(held.id, job.id)
            thread = threading.Thread(target=enqueue)
            thread.start()
            backend = jobrunner.conn.get_backend_pid()
            wait_for(
                lambda: self.waits_on_a_lock(backend),
                30,
                "the jobrunner's UPDATE to wait on the held job",
            )
            outcome = held._process(commit=True)
            thread.join(timeout=30)
            self.assertFalse(thread.is_alive(), "the jobrunner's UPDATE never ended")
            self.assertFalse(errors)
            jobrunner.keep_alive()  # reads what the server sent meanwhile
            notified = [notify.payload for notify in jobrunner.conn.notifies]
        return job, outcome, self.job_row(job), notified

    # ------------------------------------------------------------------ the race
    def test_jobrunner_enqueue_waiting_on_a_running_job_leaves_it_done(self):
        job, outcome, (state, date_enqueued, _future), notified = self.race()
        self.assertEqual(outcome, "done")
        self.assertEqual(state, "done", "the jobrunner's UPDATE overwrote 'done'")
        self.assertIsNone(date_enqueued)
        # The refused UPDATE sent nothing: the one notification is our commit's.
        self.assertEqual(notified.count(job.uuid), 1)
        with self.committed() as env:
            self.assertEqual([row[0] for row in self.effects(env)], [job.uuid])

    @mute_logger(JOB_LOGGER)
    def test_jobrunner_enqueue_waiting_on_a_failing_job_leaves_it_failed(self):
        _job, outcome, (state, date_enqueued, _future), _notified = self.race(
            body="raise UserError('boom')"
        )
        self.assertEqual(outcome, "failed")
        self.assertEqual(state, "failed")
        self.assertIsNone(date_enqueued)

    def test_jobrunner_enqueue_waiting_on_a_postponed_job_leaves_it_pending(self):
        _job, outcome, (state, date_enqueued, future), _notified = self.race(
            body=RETRY_LATER
        )
        self.assertEqual(outcome, "postponed")
        self.assertEqual(state, "pending", "a postponed job was enqueued to run early")
        self.assertTrue(future)
        self.assertIsNone(date_enqueued)

    # ------------------------------------------------------------------ the rule
    def test_jobrunner_enqueues_due_jobs_as_before(self):
        plain, past_eta, enqueued = self.committed_jobs(3)
        self.set_row(past_eta, "pending", "-1 minute")
        self.set_row(enqueued, "enqueued")
        with queue_job_jobrunner(get_db_name()) as jobrunner:
            for job in (plain, past_eta, enqueued):
                jobrunner.set_job_enqueued(job.uuid)
        for job in (plain, past_eta, enqueued):
            state, date_enqueued, _future = self.job_row(job)
            self.assertEqual(state, "enqueued")
            self.assertTrue(date_enqueued, "the jobrunner's UPDATE did not apply")

    def test_jobrunner_cannot_enqueue_jobs_no_longer_due(self):
        states = ["done", "failed", "cancelled", "started", "wait_dependencies"]
        jobs = self.committed_jobs(len(states) + 1)
        for job, state in zip(jobs, states, strict=False):
            self.set_row(job, state)
        self.set_row(jobs[-1], "pending", "1 hour")
        with queue_job_jobrunner(get_db_name()) as jobrunner:
            for job in jobs:
                jobrunner.set_job_enqueued(job.uuid)
        for job, state in zip(jobs, [*states, "pending"], strict=True):
            self.assertEqual(self.job_row(job)[:2], (state, None))

    def test_other_sessions_write_enqueued_as_before(self):
        """Only the jobrunner's session is guarded: queue_job's own tests, for one,
        write 'enqueued' over 'done' through the ORM."""
        job, other = self.committed_jobs(2)
        self.set_row(job, "done")
        self.set_row(other, "cancelled")
        with self.committed() as env:
            env["queue.job"].browse(job.id).state = "enqueued"
            env.cr.execute(
                "UPDATE queue_job SET state = 'enqueued' WHERE id = %s", [other.id]
            )
        self.assertEqual(self.job_row(job)[0], "enqueued")
        self.assertEqual(self.job_row(other)[0], "enqueued")

    def test_guard_is_installed_once(self):
        with self.committed() as env:
            env["queue.job"].init()  # as an upgrade does
            env.cr.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname = %s", [ENQUEUE_GUARD]
            )
            self.assertEqual(env.cr.fetchone()[0], 1)

    # ------------------------------------------------------------------ detection
    def test_a_working_jobrunner_is_seen_from_the_database(self):
        with self.committed() as env:
            self.assertFalse(queue_job_runner_attached(env.cr))
            with queue_job_jobrunner(get_db_name()):
                self.assertTrue(queue_job_runner_attached(env.cr))
                settings = env["res.config.settings"].create({})
                self.assertTrue(settings.dqj_queue_job_runner_active)
            # Its backend ends a moment after the connection is closed.
            wait_for(
                lambda: not queue_job_runner_attached(env.cr),
                30,
                "the closed jobrunner's election lock to go",
            )
            self.assertFalse(
                env["res.config.settings"].create({}).dqj_queue_job_runner_active
            )


def server_wide_modules(modules):
    """Patch the server-wide modules where engine/compat.py reads them: odoo.conf on
    18.0, the configuration option (a list) on 19.0, which has no odoo.conf."""
    if hasattr(odoo, "conf"):
        return mock.patch.object(odoo.conf, "server_wide_modules", list(modules))
    return mock.patch.dict(config.options, {"server_wide_modules": list(modules)})


@tagged("post_install", "-at_install")
class TestJobRunnerInThisServer(TransactionCase):
    """Whether this server starts queue_job's jobrunner, by queue_job's own rule."""

    def configured(self, modules=("base", "web", "queue_job"), channels="root:4"):
        return [
            server_wide_modules(modules),
            mock.patch.dict(config.options, {"stop_after_init": False}),
            mock.patch.dict(os.environ, {"ODOO_QUEUE_JOB_CHANNELS": channels}),
            mock.patch.object(odoo_server, "server", odoo_server.server or object()),
        ]

    def run_with(self, patches, func):
        for patch in patches:
            patch.start()
            self.addCleanup(patch.stop)
        return func()

    def test_not_in_tests_nor_without_queue_job_server_wide(self):
        # This test server: --stop-after-init, queue_job not server-wide.
        self.assertFalse(queue_job_runner_in_this_server())
        self.assertFalse(
            self.run_with(
                self.configured(modules=("base", "web")),
                queue_job_runner_in_this_server,
            )
        )

    def test_server_wide_queue_job_starts_its_runner_unless_root_is_0(self):
        self.assertTrue(
            self.run_with(self.configured(), queue_job_runner_in_this_server)
        )
        with mock.patch.dict(os.environ, {"ODOO_QUEUE_JOB_CHANNELS": "root:0"}):
            self.assertFalse(queue_job_runner_in_this_server())

    def test_loading_the_addon_warns_only_beside_queue_jobs_runner(self):
        with self.assertNoLogs(hooks.__name__, "WARNING"):
            hooks.post_load()
        with self.assertLogs(hooks.__name__, "WARNING") as logs:
            self.run_with(self.configured(), hooks.post_load)
        self.assertIn("queue_job's own jobrunner also runs", logs.output[0])
