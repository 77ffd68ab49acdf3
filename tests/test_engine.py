# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The engine in one transaction: outcomes, budgets, triggers, housekeeping."""

from datetime import timedelta

from odoo import fields
from odoo.tests import tagged
from odoo.tools import SQL, mute_logger

from odoo.addons.queue_job.delay import chain

from ..engine import job_locks
from ..engine.scopes import TRIGGERED_KEY
from .common import JOB_LOGGER, QueueJobCase, second_cursor


@tagged("post_install", "-at_install")
class TestOutcomes(QueueJobCase):
    def test_runner_processes_pending_jobs(self):
        jobs = self.enqueue(3)
        stats = self.run_runner()
        self.assertEqual((stats.processed, stats.done, stats.failed), (3, 3, 0))
        self.assertEqual(set(jobs.mapped("state")), {"done"})
        self.assertTrue(all(job.date_done and job.date_started for job in jobs))
        self.assertEqual(stats.stopped_by, "empty")
        self.assertEqual(stats.pending_count, 0)

    @mute_logger(JOB_LOGGER, "odoo.sql_db")
    def test_failing_job_rolls_back_only_its_own_writes(self):
        partner = self.env["res.partner"].create({"name": "before"})
        first = self.enqueue(1, priority=1)
        failing = self.enqueue_code(
            f"env['res.partner'].browse({partner.id}).write({{'name': 'half-written'}})"
            "\nraise UserError('boom')",
            priority=2,
        )
        last = self.enqueue(1, priority=3)
        stats = self.run_runner()
        self.assertEqual((stats.processed, stats.done, stats.failed), (3, 2, 1))
        self.assertEqual(first.state, "done")
        self.assertEqual(last.state, "done")
        self.assertEqual(failing.state, "failed")
        self.assertIn("boom", failing.exc_info)
        self.assertIn("UserError", failing.exc_name)
        self.assertEqual(failing.exc_message, "boom")
        partner.invalidate_recordset()
        self.assertEqual(partner.name, "before")

    @mute_logger(JOB_LOGGER)
    def test_job_whose_method_is_gone_fails_alone(self):
        gone = self.enqueue(1, priority=1)
        self.env.cr.execute(
            "UPDATE queue_job SET method_name = 'dqj_method_removed' WHERE id = %s",
            [gone.id],
        )
        gone.invalidate_recordset()
        other = self.enqueue(1, priority=2)
        stats = self.run_runner()
        self.assertEqual((stats.processed, stats.done, stats.failed), (2, 1, 1))
        self.assertEqual(gone.state, "failed")
        self.assertIn("dqj_method_removed", gone.exc_info)
        self.assertEqual(other.state, "done")

    @mute_logger(JOB_LOGGER, "odoo.sql_db")
    def test_lock_not_available_requeues_the_job(self):
        """A PostgreSQL concurrency error is no failure: back to pending, later."""
        partner = self.env.ref("base.partner_admin")
        with second_cursor(self.env.cr.dbname) as other:
            other.cr.execute(
                "SELECT id FROM res_partner WHERE id = %s FOR UPDATE", [partner.id]
            )
            job = self.enqueue_code(
                "env.cr.execute('SELECT id FROM res_partner WHERE id = %s "
                f"FOR UPDATE NOWAIT', [{partner.id}])"
            )
            stats = self.run_runner()
            other.cr.rollback()
        self.assertEqual((stats.processed, stats.postponed, stats.failed), (1, 1, 0))
        self.assertEqual(job.state, "pending")
        self.assertEqual(job.retry, 0, "a concurrency error does not use a retry")
        self.assertGreater(job.eta, fields.Datetime.now())
        self.assertIn("lock", job.result)

    @mute_logger(JOB_LOGGER, "odoo.sql_db")
    def test_statement_timeout_requeues_the_job_using_a_retry(self):
        code = "env.cr.execute(\"SET LOCAL statement_timeout = '50ms'\")\n"
        code += "env.cr.execute('SELECT pg_sleep(1)')"
        job = self.enqueue_code(code, max_retries=2)
        stats = self.run_runner()
        self.assertEqual((stats.postponed, stats.failed), (1, 0))
        self.assertEqual((job.state, job.retry), ("pending", 1))
        self.assertIn("statement timeout", job.result)
        self.env.cr.execute("SHOW statement_timeout")
        self.assertEqual(self.env.cr.fetchone()[0], "0", "the SET LOCAL was undone")
        job.write({"eta": False})
        stats = self.run_runner()
        self.assertEqual(stats.failed, 1, "retries exhausted: failed")
        self.assertEqual(job.state, "failed")

    @mute_logger(JOB_LOGGER, "odoo.sql_db")
    def test_serialization_failure_requeues_the_job(self):
        """REPEATABLE READ: a row changed and committed by another transaction after
        this one's snapshot cannot be updated: the job is requeued, not failed."""
        partner = self.env.ref("base.partner_admin")
        job = self.enqueue_code(
            "env.cr.execute('UPDATE res_partner SET write_date = write_date "
            f"WHERE id = {partner.id}')"
        )
        with second_cursor(self.env.cr.dbname) as other:
            other.cr.execute(
                "UPDATE res_partner SET write_date = write_date WHERE id = %s",
                [partner.id],
            )
            other.cr.commit()
        stats = self.run_runner()
        self.assertEqual((stats.postponed, stats.failed), (1, 0))
        self.assertEqual(job.state, "pending")
        self.assertIn("serialize", job.result)

    def _retryable_job(self, max_retries):
        """A job raising RetryableJobError at each try."""
        model = self.env["test.queue.job"].with_delay(max_retries=max_retries)
        return self.jobs_of([model.testing_method(raise_retry=True)])

    def test_retryable_error_postpones_with_retry_pattern(self):
        jobs = self._retryable_job(max_retries=3)
        stats = self.run_runner()
        self.assertEqual(stats.postponed, 1)
        self.assertEqual(jobs.state, "pending")
        self.assertEqual(jobs.retry, 1)
        self.assertGreater(jobs.eta, fields.Datetime.now() + timedelta(seconds=60))
        self.assertEqual(jobs.result, "Must be retried later")

    @mute_logger(JOB_LOGGER, "odoo.sql_db")
    def test_retryable_error_fails_after_max_retries(self):
        jobs = self._retryable_job(max_retries=1)
        stats = self.run_runner()
        self.assertEqual(stats.failed, 1)
        self.assertEqual(jobs.state, "failed")
        self.assertIn("Max. retries (1) reached", jobs.exc_info)

    def test_nothing_to_do_job_is_done_with_its_message(self):
        partner = self.env["res.partner"].create({"name": "before"})
        job = self.enqueue_code(
            f"env['res.partner'].browse({partner.id}).write({{'name': 'checked'}})\n"
            "raise NothingToDoJob('already up to date')"
        )
        stats = self.run_runner()
        self.assertEqual((stats.done, stats.failed), (1, 0))
        self.assertEqual(job.state, "done")
        self.assertEqual(job.result, "already up to date")
        partner.invalidate_recordset()
        self.assertEqual(partner.name, "checked", "its writes are kept")

    def test_dependent_jobs_are_enqueued_and_run(self):
        model = self.env["test.queue.job"]
        first = model.delayable().testing_method(1)
        second = model.delayable().testing_method(2)
        chain(first, second).delay()
        parent, child = self.jobs_of([first]), self.jobs_of([second])
        self.assertEqual((parent.state, child.state), ("pending", "wait_dependencies"))
        stats = self.run_runner()
        self.assertEqual(stats.done, 2)
        self.assertEqual(stats.job_ids, (parent | child).ids)
        self.assertEqual((parent.state, child.state), ("done", "done"))

    def test_job_not_due_is_not_taken(self):
        later = self.enqueue(1, eta=3600)
        stats = self.run_runner()
        self.assertEqual(stats.processed, 0)
        self.assertEqual(later.state, "pending")

    def test_queue_order_is_priority_then_creation(self):
        low = self.enqueue(1, priority=20)
        high = self.enqueue(1, priority=1)
        stats = self.run_runner(batch_size=1)
        self.assertEqual(stats.job_ids, high.ids)
        self.assertEqual(low.state, "pending")

    def test_a_due_eta_does_not_jump_the_queue(self):
        """queue_job's order: a job postponed by a retry (a past eta) keeps its place
        behind older jobs of its priority."""
        older = self.enqueue(1)
        newer = self.enqueue(1)
        newer.write({"eta": fields.Datetime.now() - timedelta(minutes=1)})
        self.env.cr.execute(
            "UPDATE queue_job SET date_created = date_created + interval '1 second' "
            "WHERE id = %s",
            [newer.id],
        )
        stats = self.run_runner()
        self.assertEqual(stats.job_ids, (older | newer).ids)

    def test_specific_job_is_acquired_only_when_eligible(self):
        job = self.enqueue(1)
        later = self.enqueue(1, eta=3600)
        self.assertEqual(job._acquire_specific_job(commit=False), job)
        self.assertFalse(later._acquire_specific_job(commit=False))
        job._process()
        self.assertFalse(job._acquire_specific_job(commit=False), "not pending")


@tagged("post_install", "-at_install")
class TestBudget(QueueJobCase):
    def _waiting_triggers(self, since):
        """Triggers of the runner crons due now and planned at or after ``since``."""
        self.env.cr.execute(
            "SELECT cron_id FROM ir_cron_trigger WHERE call_at >= %s "
            "AND call_at <= clock_timestamp() AT TIME ZONE 'UTC'",
            [since],
        )
        return {row[0] for row in self.env.cr.fetchall()}

    def test_stops_at_batch_size_and_leaves_a_trigger(self):
        self.enqueue(5)
        self.env.cr.execute("DELETE FROM ir_cron_trigger")
        stats = self.run_runner(batch_size=2)
        self.assertEqual((stats.processed, stats.stopped_by), (2, "batch_size"))
        self.assertEqual(stats.pending_count, 3)
        self.assertFalse(stats.pending_estimated)
        crons = self.env["ir.cron"]._dqj_runner_crons()
        self.assertEqual(self._waiting_triggers(stats.started_at), set(crons.ids))
        new = self.env["ir.cron.trigger"].search([])
        # Now, to the microsecond (see ir.cron._dqj_continue_runners).
        self.assertTrue(any(t.call_at.microsecond for t in new))

    def test_the_running_cron_needs_a_trigger_younger_than_its_run(self):
        """A trigger planned before the run may die with the cron run that runs it;
        for the other runner crons, any trigger due now wakes them."""
        own, other = self.env["ir.cron"]._dqj_runner_crons()[:2]
        self.env.cr.execute("DELETE FROM ir_cron_trigger")
        self.env.cr.execute("SELECT now() AT TIME ZONE 'UTC'")
        since = self.env.cr.fetchone()[0]
        for cron in own | other:
            cron._trigger(at=since - timedelta(seconds=5))
        as_own = self.env["ir.cron"].with_context(cron_id=own.id)
        self.assertEqual(as_own._dqj_continue_runners(since=since), own)
        self.assertFalse(as_own._dqj_continue_runners(since=since), "now it waits")
        self.assertEqual(
            as_own._dqj_continue_runners(since=None),
            own,
            "no run start known",
        )
        self.assertFalse(
            self.env["ir.cron"]._dqj_continue_runners(since=since), "not in a cron"
        )

    def test_a_waiting_trigger_is_not_doubled(self):
        self.enqueue(6)
        self.env.cr.execute("DELETE FROM ir_cron_trigger")
        first = self.run_runner(batch_size=2)
        self.env.cr.execute("SELECT count(*) FROM ir_cron_trigger")
        triggers = self.env.cr.fetchone()[0]
        self.assertEqual(triggers, len(self.env["ir.cron"]._dqj_runner_crons()))
        second = self.run_runner(batch_size=2)
        self.assertEqual(second.stopped_by, "batch_size")
        self.assertGreaterEqual(second.started_at, first.started_at)
        self.env.cr.execute("SELECT count(*) FROM ir_cron_trigger")
        self.assertEqual(self.env.cr.fetchone()[0], triggers, "the first one waits")

    def test_no_trigger_when_queue_is_drained(self):
        self.enqueue(2)
        triggers = self.env["ir.cron.trigger"].search([])
        stats = self.run_runner(batch_size=5)
        self.assertEqual(stats.stopped_by, "empty")
        self.assertFalse(self.env["ir.cron.trigger"].search([]) - triggers)

    def test_stops_before_the_time_budget_would_be_exceeded(self):
        for _i in range(6):
            self.enqueue_code("env.cr.execute('SELECT pg_sleep(0.4)')")
        stats = self.run_runner(max_seconds=1)
        self.assertEqual(stats.stopped_by, "time")
        # Jobs of 0.4 s at least in a 1 s budget: after two (0.8 s at least) a third
        # would end past it, so it is never taken. Whether the second is taken
        # depends on how long the first took on this machine (more than 0.5 s: no).
        self.assertIn(stats.processed, (1, 2))
        self.assertEqual(stats.pending_count, 6 - stats.processed)

    def test_defaults_come_from_the_settings(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("deltatech_queue_job.batch_size", "3")
        self.enqueue(5)
        stats = self.run_runner()
        self.assertEqual(stats.processed, 3)

    def test_invalid_parameters_are_refused(self):
        for kwargs in ({"batch_size": 0}, {"max_seconds": -1}, {"batch_size": "x"}):
            with self.subTest(**kwargs), self.assertRaises(ValueError):
                self.run_runner(**kwargs)

    def test_cron_run_reports_progress(self):
        cron = self.env.ref("deltatech_queue_job.cron_queue_job_runner")
        cron_with_progress, progress = cron._add_progress()
        self.enqueue(3)
        runner_env = self.env(
            context=dict(cron_with_progress.env.context, cron_id=cron.id)
        )
        stats = self.run_runner(env=runner_env, batch_size=2, source="cron")
        self.assertEqual(stats.processed, 2)
        self.assertEqual(progress.done, 2)
        # Stopped by its size with time left: Odoo may call the runner again at once.
        self.assertEqual(progress.remaining, 1)
        stats = self.run_runner(env=runner_env, batch_size=2, source="cron")
        self.assertEqual((progress.done, progress.remaining), (1, 0))


@tagged("post_install", "-at_install")
class TestTriggers(QueueJobCase):
    def _new_triggers(self, before):
        return self.env["ir.cron.trigger"].search([]) - before

    def test_creating_a_job_triggers_every_runner_cron_now(self):
        before = self.env["ir.cron.trigger"].search([])
        self.enqueue(1)
        new = self._new_triggers(before)
        self.assertEqual(new.mapped("cron_id"), self.env["ir.cron"]._dqj_runner_crons())
        self.assertTrue(all(t.call_at <= fields.Datetime.now() for t in new))

    def test_delayed_job_triggers_at_its_eta(self):
        before = self.env["ir.cron.trigger"].search([])
        job = self.enqueue(1, eta=timedelta(hours=2))
        new = self._new_triggers(before)
        self.assertEqual(len(new), 2)
        for trigger in new:
            self.assertGreaterEqual(trigger.call_at, job.eta)
            self.assertLess(trigger.call_at - job.eta, timedelta(minutes=1))

    def test_many_jobs_in_one_transaction_make_a_handful_of_triggers(self):
        before = self.env["ir.cron.trigger"].search([])
        self.enqueue(300)
        self.enqueue(300, eta=timedelta(hours=1))
        new = self._new_triggers(before)
        # one immediate and at most two rounded etas, for each of the two crons
        self.assertLessEqual(len(new), 6)

    def test_writing_eta_or_requeueing_creates_a_trigger(self):
        job = self.enqueue(1)
        self.env.cr.postcommit.data.pop(TRIGGERED_KEY, None)
        before = self.env["ir.cron.trigger"].search([])
        eta = fields.Datetime.now() + timedelta(hours=3)
        job.write({"eta": eta})
        new = self._new_triggers(before)
        self.assertEqual(len(new), 2)
        self.assertTrue(all(t.call_at >= eta for t in new))
        job._process()
        self.env.cr.postcommit.data.pop(TRIGGERED_KEY, None)
        job.write({"eta": False})
        before = self.env["ir.cron.trigger"].search([])
        job.requeue()
        self.assertEqual(len(self._new_triggers(before)), 2)

    def test_done_job_write_creates_no_trigger(self):
        job = self.enqueue(1)
        self.env.cr.postcommit.data.pop(TRIGGERED_KEY, None)
        before = self.env["ir.cron.trigger"].search([])
        job._process()
        self.assertEqual(job.state, "done")
        self.assertFalse(self._new_triggers(before))


@tagged("post_install", "-at_install")
class TestHousekeeping(QueueJobCase):
    @mute_logger(JOB_LOGGER, "odoo.sql_db")
    def test_new_job_with_identity_key_cancels_older_failed_ones(self):
        old = self.enqueue_code("raise UserError('x')", identity_key="same-key")
        self.run_runner()
        self.assertEqual(old.state, "failed")
        new = self.enqueue_code("log('ok')", identity_key="same-key")
        self.assertEqual(old.state, "cancelled")
        self.assertTrue(old.date_cancelled)
        self.assertEqual(new.state, "pending")

    def test_jobs_cancelled_with_their_chain_get_a_cancellation_date(self):
        model = self.env["test.queue.job"]
        first = model.delayable().testing_method(1)
        second = model.delayable().testing_method(2)
        chain(first, second).delay()
        jobs = self.jobs_of([first, second])
        self.jobs_of([first]).button_cancelled()
        jobs.invalidate_recordset()
        self.assertEqual(jobs.mapped("state"), ["cancelled", "cancelled"])
        self.assertTrue(all(jobs.mapped("date_cancelled")))

    def test_autovacuum_removes_old_cancelled_jobs(self):
        job = self.enqueue(1)
        job.button_cancelled()
        old = fields.Datetime.now() - timedelta(days=400)
        self.env.cr.execute(
            "UPDATE queue_job SET date_cancelled = NULL, date_created = %s "
            "WHERE id = %s",
            [old, job.id],
        )
        # queue_job's garbage collector: its cron's autovacuum() on 18.0, the
        # autovacuum method _gc_old_jobs() on 19.0 (which has no such cron).
        cron = self.env.ref(
            "queue_job.ir_cron_autovacuum_queue_jobs", raise_if_not_found=False
        )
        if cron:
            cron.ir_actions_server_id.run()
        else:
            self.queue_job._gc_old_jobs()
        self.assertFalse(job.exists())

    def test_acquire_query_uses_the_partial_index(self):
        self.env.cr.execute(
            """
            INSERT INTO queue_job (uuid, state, priority, date_created, channel)
            SELECT md5(i::text), CASE WHEN i % 10 = 0 THEN 'pending' ELSE 'done' END,
                   10, now() - i * interval '1 second', 'root'
            FROM generate_series(1, 20000) AS i
            """
        )
        self.env.cr.execute("ANALYZE queue_job")
        self.env.cr.execute(SQL("EXPLAIN %s", job_locks.acquire_sql()))
        plan = "\n".join(row[0] for row in self.env.cr.fetchall())
        self.assertIn(job_locks.ACQUIRE_INDEX, plan)
        self.assertNotIn("Sort", plan)
