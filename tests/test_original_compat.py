# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The original deltatech_queue_job's method names: thin aliases onto the one runner,
returning what the original returned."""

from datetime import timedelta

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..engine.api_key import verify_api_key
from ..engine.settings import PARAM_RUNNER_COUNT, SettingsError
from ..engine.transaction import CALLER_OWNS_TRANSACTION
from .common import (
    JOB_LOGGER,
    QueueJobCase,
    enter_registry_test_mode,
    holding_test_lock,
    letting_threads_open_cursors,
)
from .test_ui import FAILING_CODE, notification


@tagged("post_install", "-at_install")
class TestOriginalRunnerNames(QueueJobCase):
    def test_api_job_runner_returns_the_original_counters(self):
        """processed, done, failed, postponed, time_elapsed, pending_remaining --
        following the stored outcome of each job, through the one runner."""
        done = self.enqueue(2)
        failing = self.enqueue_code(FAILING_CODE)
        retried = self.jobs_of(
            [self.env["test.queue.job"].with_delay().testing_method(raise_retry=True)]
        )
        left = self.enqueue(1)
        with mute_logger(JOB_LOGGER):
            result = self.queue_job._api_job_runner(batch_size=4, max_seconds=30)
        self.assertEqual(
            set(result),
            {
                "processed",
                "done",
                "failed",
                "postponed",
                "time_elapsed",
                "pending_remaining",
            },
        )
        self.assertEqual(
            (
                result["processed"],
                result["done"],
                result["failed"],
                result["postponed"],
                result["pending_remaining"],
            ),
            (4, 2, 1, 1, 1),
        )
        self.assertIsInstance(result["time_elapsed"], float)
        self.assertEqual(set(done.mapped("state")), {"done"})
        self.assertEqual((failing.state, retried.state), ("failed", "pending"))
        self.assertEqual(left.state, "pending")
        run = self.env["queue.job.run"].search([], limit=1)
        self.assertEqual((run.source, run.processed), ("manual", 4))

    def test_api_job_runner_checks_its_bounds(self):
        jobs = self.enqueue(1)
        for kwargs in ({"batch_size": 0}, {"max_seconds": 601}):
            with self.subTest(**kwargs), self.assertRaises(SettingsError):
                self.queue_job._api_job_runner(**kwargs)
        self.assertEqual(jobs.state, "pending")

    def test_process_api_in_thread_runs_on_a_cursor_of_its_own(self):
        """Called synchronously here: the body of the original's thread opens its own
        cursor (in test mode, one on the test transaction) and runs one budgeted
        run, recorded as a thread run."""
        jobs = self.enqueue(2)
        self.env.flush_all()
        enter_registry_test_mode(self)
        result = self.queue_job._process_api_in_thread(
            self.cr.dbname, self.env.uid, {CALLER_OWNS_TRANSACTION: True}
        )
        self.assertIsNone(result)
        self.env.invalidate_all()
        self.assertEqual(set(jobs.mapped("state")), {"done"})
        run = self.env["queue.job.run"].search([("source", "=", "thread")])
        self.assertEqual(run.processed, 2)

    def test_process_api_in_thread_logs_its_failure(self):
        with (
            self.assertLogs(
                "odoo.addons.deltatech_queue_job.models.original_compat", "ERROR"
            ) as logs,
            mute_logger("odoo.modules.registry", "odoo.sql_db"),
        ):
            self.queue_job._process_api_in_thread("dqj_no_such_database", 1, {})
        self.assertIn("dqj_no_such_database", logs.output[0])

    def test_remove_failed_duplicates_cancels_superseded_failures(self):
        new = self.enqueue(1, identity_key="dqj-compat-key")
        old = self.enqueue(1, identity_key="dqj-other-key")
        old.write({"identity_key": "dqj-compat-key", "state": "failed"})
        new._remove_failed_duplicates()
        self.assertEqual(old.state, "cancelled")
        self.assertEqual(new.state, "pending")


@tagged("post_install", "-at_install")
class TestOriginalButtons(QueueJobCase):
    def triggers(self):
        crons = self.env["ir.cron"]._dqj_runner_crons()
        return self.env["ir.cron.trigger"].sudo().search([("cron_id", "in", crons.ids)])

    def test_process_jobs_processes_the_selection(self):
        jobs = self.enqueue(2)
        params = notification(jobs[:1].process_jobs())
        self.assertEqual(jobs.mapped("state"), ["done", "pending"])
        self.assertIn("1 processed: 1 done", params["message"])

    def test_start_cron_trigger_wakes_the_runner_crons(self):
        before = self.triggers()
        params = notification(self.queue_job.start_cron_trigger())
        self.assertEqual(params["type"], "success")
        new = self.triggers() - before
        self.assertEqual(
            new.cron_id, self.env["ir.cron"]._dqj_runner_crons().filtered("active")
        )

    def test_cron_trigger_reactivates_archived_runner_crons_and_says_so(self):
        """Odoo archives a cron that keeps failing; an archived cron ignores its
        triggers, so Cron Trigger re-activates the ones the settings want."""
        crons = self.env["ir.cron"]._dqj_runner_crons()
        crons[:1].write({"active": False})
        params = notification(self.queue_job.action_dqj_cron_trigger())
        self.assertTrue(crons[:1].active)
        self.assertEqual(params["type"], "warning")
        self.assertIn("1 archived runner cron(s) re-activated", params["message"])
        self.assertIn(crons[0].name, params["message"])
        self.assertIn("started in the background", params["message"])

    def test_cron_trigger_leaves_surplus_runner_crons_archived(self):
        self.env["ir.config_parameter"].sudo().set_param(PARAM_RUNNER_COUNT, "1")
        crons = self.env["ir.cron"]._dqj_runner_crons()
        self.env["ir.cron"]._dqj_sync_runner_crons(1)
        self.assertEqual(crons.mapped("active"), [True, False])
        params = notification(self.queue_job.action_dqj_cron_trigger())
        self.assertEqual(crons.mapped("active"), [True, False])
        self.assertEqual(params["type"], "success")

    def test_cron_trigger_never_reports_success_without_a_runner_cron(self):
        crons = self.env["ir.cron"]._dqj_runner_crons()
        crons.write({"dqj_queue_runner": False})
        before = self.env["ir.cron.trigger"].sudo().search_count([])
        params = notification(self.queue_job.action_dqj_cron_trigger())
        self.assertEqual(params["type"], "danger")
        self.assertIn("No runner cron is active", params["message"])
        self.assertEqual(self.env["ir.cron.trigger"].sudo().search_count([]), before)

    def test_action_process_api_thread_starts_the_background_runner(self):
        self.env.flush_all()
        enter_registry_test_mode(self)
        with holding_test_lock(self):
            params = notification(self.queue_job.action_process_api_thread())
            thread = self.queue_job._dqj_background_thread()
        with letting_threads_open_cursors():
            thread.join(timeout=60)
        self.assertFalse(thread.is_alive())
        self.assertEqual(params["type"], "success")

    def test_generate_key_under_the_original_name(self):
        settings = self.env["res.config.settings"].create({})
        action = settings.action_generate_queue_job_processor_api_key()
        self.assertEqual(action["res_model"], "queue.job.api.key.wizard")
        key = action["context"]["default_api_key"]
        self.assertTrue(verify_api_key(self.env, key))


@tagged("post_install", "-at_install")
class TestCronTriggerOutcome(QueueJobCase):
    """``_cron_trigger()`` returns "triggered", "exists" or "nothing", as the
    original's did; the engine's own callers ignore the value."""

    def test_now_is_always_triggered(self):
        crons = self.env["ir.cron"]._dqj_runner_crons().filtered("active")
        Trigger = self.env["ir.cron.trigger"].sudo()
        before = Trigger.search_count([("cron_id", "in", crons.ids)])
        self.assertEqual(self.queue_job._cron_trigger(), "triggered")
        self.assertEqual(self.queue_job._cron_trigger(), "triggered")
        after = Trigger.search_count([("cron_id", "in", crons.ids)])
        self.assertEqual(after - before, 2 * len(crons))

    def test_a_later_moment_already_planned_exists(self):
        crons = self.env["ir.cron"]._dqj_runner_crons().filtered("active")
        Trigger = self.env["ir.cron.trigger"].sudo()
        at = fields.Datetime.now().replace(second=0) + timedelta(hours=2)
        self.assertEqual(self.queue_job._cron_trigger(at=[at]), "triggered")
        self.assertEqual(self.queue_job._cron_trigger(at=[at]), "exists")
        self.assertEqual(
            Trigger.search_count([("cron_id", "in", crons.ids), ("call_at", "=", at)]),
            len(crons),
            "one trigger per cron, not two",
        )
        later = at + timedelta(minutes=1)
        self.assertEqual(self.queue_job._cron_trigger(at=[at, later]), "triggered")

    def test_nothing_without_an_active_runner_cron(self):
        self.env["ir.cron"]._dqj_runner_crons().write({"active": False})
        self.assertEqual(self.queue_job._cron_trigger(), "nothing")
        # Enqueuing still works; the jobs wait for a runner.
        self.assertEqual(self.enqueue(1).state, "pending")
