# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Runners sharing one queue: real cursors, real OS processes, committed jobs."""

import collections
import itertools
import os
import signal
import time

from odoo import sql_db
from odoo.tests import tagged
from odoo.tools import config

from .common import CommittedQueueCase, wait_for

RUNNER_SCRIPT = """
stats = env["queue.job"]._job_runner(batch_size=1000, max_seconds=300, source="manual")
env.cr.commit()
print("STATS", stats.processed, stats.done, stats.failed, stats.postponed)
"""

SLEEP = "env.cr.execute('SELECT pg_sleep(0.05)')"


def finish(proc, timeout=240):
    return proc.communicate(timeout=timeout)


@tagged("post_install", "-at_install")
class TestTwoCursors(CommittedQueueCase):
    def test_locked_job_is_skipped_by_second_worker(self):
        with self.committed() as env:
            jobs = self.enqueue(3, env=env)
        first, second, third = jobs.ids
        with self.committed() as env_a, self.committed() as env_b:
            job_a = env_a["queue.job"]._acquire_one_job()
            self.assertEqual(job_a.id, first)
            job_b = env_b["queue.job"]._acquire_one_job()
            self.assertEqual(job_b.id, second, "the locked job is skipped")
            self.assertFalse(
                env_b["queue.job"]._acquire_specific_job(first),
                "a specific job locked elsewhere is not returned",
            )
            # A finishes its job and commits: its lock is gone, the job is done.
            job_a._process(commit=True)
            env_b.cr.commit()  # B releases its job unprocessed
            self.assertFalse(env_b["queue.job"]._acquire_specific_job(first))
            self.assertEqual(env_b["queue.job"]._acquire_one_job().id, second)
            env_b.cr.rollback()
            self.assertEqual(env_a["queue.job"]._acquire_one_job().id, second)
            self.assertEqual(env_b["queue.job"]._acquire_one_job().id, third)

    def test_running_job_is_visible_without_committing_a_started_state(self):
        with self.committed() as env:
            job = self.enqueue(1, env=env)
        with self.committed() as env_a, self.committed() as observer:
            self.assertFalse(observer["queue.job"].browse(job.id).dqj_running)
            env_a["queue.job"]._acquire_one_job()
            record = observer["queue.job"].browse(job.id)
            record.invalidate_recordset()
            self.assertTrue(record.dqj_running)
            self.assertEqual(record.state, "pending")
            self.assertEqual(
                observer["queue.job"].search([("dqj_running", "=", True)]), record
            )
            env_a["queue.job"].browse(job.id)._process(commit=True)
            observer.cr.rollback()  # a fresh snapshot
            self.assertFalse(record.dqj_running)
            self.assertEqual(record.state, "done")

    def test_race_with_a_committed_runner_is_skip_and_look_again(self):
        """B's snapshot predates A's commit of the job it is about to lock: PostgreSQL
        raises a serialization failure, which the acquisition absorbs."""
        with self.committed() as env:
            jobs = self.enqueue(2, env=env)
        with self.committed() as env_a, self.committed() as env_b:
            env_b.cr.execute("SELECT 1")  # B's REPEATABLE READ snapshot starts here
            env_a["queue.job"]._acquire_one_job()._process(commit=True)
            job = env_b["queue.job"]._acquire_one_job()
            self.assertEqual(job.id, jobs.ids[1])

    def test_plain_job_costs_at_most_five_queries(self):
        with self.committed() as env:
            self.enqueue(12, env=env)
        with self.committed() as env:
            model = env["queue.job"]
            model._job_runner(batch_size=1, source="manual")  # warms the caches
            start = env.cr.sql_log_count
            model._job_runner(batch_size=1, source="manual")
            one = env.cr.sql_log_count - start
            start = env.cr.sql_log_count
            stats = model._job_runner(batch_size=10, source="manual")
            eleven = env.cr.sql_log_count - start
        self.assertEqual(stats.done, 10)
        per_job = (eleven - one) / 9
        self.assertLessEqual(per_job, 5, f"{per_job} queries per job")


@tagged("post_install", "-at_install")
class TestProcesses(CommittedQueueCase):
    def test_runner_processes_share_the_queue_exactly_once(self):
        with self.committed() as env:
            jobs = self.enqueue_effect_jobs(env, 1000)
        procs = [self.start_runner_process(RUNNER_SCRIPT) for _i in range(3)]
        outputs = [finish(proc) for proc in procs]
        processed = 0
        for proc, (out, err) in zip(procs, outputs, strict=True):
            self.assertEqual(proc.returncode, 0, err)
            self.assertNotIn("Traceback", err)
            line = next(line for line in out.splitlines() if line.startswith("STATS"))
            processed += int(line.split()[1])
        with self.committed() as env:
            effects = self.effects(env)
            runs = collections.Counter(uuid for uuid, *_rest in effects)
            states = collections.Counter(
                env["queue.job"].browse(jobs.ids).mapped("state")
            )
        self.assertEqual(processed, 1000)
        self.assertEqual(len(runs), 1000, "every job ran")
        self.assertEqual(max(runs.values()), 1, "no job ran twice")
        self.assertEqual(states, {"done": 1000})

    def test_channel_capacity_holds_across_processes(self):
        with self.committed() as env:
            env["ir.config_parameter"].set_param(
                "deltatech_queue_job.channels", "root:4,root.sub:1"
            )
            sub = self.enqueue_effect_jobs(
                env,
                12,
                body="env.cr.execute('SELECT pg_sleep(0.05)')",
                channel="root.sub",
            )
            root = self.enqueue_effect_jobs(
                env, 12, body="env.cr.execute('SELECT pg_sleep(0.05)')"
            )
        procs = [self.start_runner_process(RUNNER_SCRIPT) for _i in range(3)]
        for proc in procs:
            _out, err = finish(proc)
            self.assertEqual(proc.returncode, 0, err)
        with self.committed() as env:
            effects = self.effects(env)
            states = set(env["queue.job"].browse((sub | root).ids).mapped("state"))
        self.assertEqual(states, {"done"})
        intervals = sorted(
            (s, f) for _u, channel, s, f in effects if channel == "root.sub"
        )
        self.assertEqual(len(intervals), 12)
        for (_s1, end), (start, _f2) in itertools.pairwise(intervals):
            self.assertLessEqual(end, start, "two root.sub jobs ran at once")
        # the capacity of root.sub does not serialize the other channels
        root_intervals = sorted(
            (s, f) for _u, channel, s, f in effects if channel == "root"
        )
        overlaps = sum(
            1
            for (_s1, end), (start, _f2) in itertools.pairwise(root_intervals)
            if start < end
        )
        self.assertGreater(overlaps, 0, "root jobs ran in parallel")

    def test_worker_killed_mid_job_leaves_it_pending_and_unwritten(self):
        with self.committed() as env:
            slow = self.enqueue_effect_jobs(
                env, 1, body="env.cr.execute('SELECT pg_sleep(3)')", priority=1
            )
        proc = self.start_runner_process(RUNNER_SCRIPT)
        try:
            with self.committed() as observer:
                record = observer["queue.job"].browse(slow.id)

                def running():
                    record.invalidate_recordset()
                    return record.dqj_running

                wait_for(running, timeout=60, message="the job to start")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        with self.committed() as env:
            # PostgreSQL notices the dead client when the statement in flight ends,
            # and rolls its transaction back.
            def released():
                env.cr.rollback()
                return not env["queue.job"].browse(slow.id).dqj_running

            wait_for(released, timeout=60, message="the killed worker's lock")
            job = env["queue.job"].browse(slow.id)
            self.assertEqual(job.state, "pending")
            self.assertEqual(self.effects(env), [], "the killed job wrote nothing")
            # The next runner takes it and runs it once.
            stats = env["queue.job"]._job_runner(source="manual")
            self.assertEqual(stats.done, 1)
            self.assertEqual(len(self.effects(env)), 1)


@tagged("post_install", "-at_install")
class TestCronIntegration(CommittedQueueCase):
    """The runner under Odoo 18's own cron machinery (ir.cron._process_job)."""

    def _run_cron_once(self, cron_id):
        ir_cron = self.registry["ir.cron"]
        db = sql_db.db_connect(self.registry.db_name)
        with db.cursor() as cron_cr:
            job = ir_cron._acquire_one_job(cron_cr, cron_id)
            self.assertTrue(job, "the runner cron is ready (triggered)")
            start = time.monotonic()
            ir_cron._process_job(db, cron_cr, job)
            return time.monotonic() - start

    def test_cron_chain_stays_under_the_time_limit_and_leaves_a_trigger(self):
        with self.committed() as env:
            env["ir.config_parameter"].set_param("deltatech_queue_job.batch_size", "2")
            self.enqueue_effect_jobs(
                env, 30, body="env.cr.execute('SELECT pg_sleep(0.3)')"
            )
            cron = env.ref("deltatech_queue_job.cron_queue_job_runner")
            cron_id = cron.id
        saved = config["limit_time_real_cron"]
        config["limit_time_real_cron"] = 8  # cap: 8 - 5 s of margin = 3 s
        try:
            elapsed = self._run_cron_once(cron_id)
        finally:
            config["limit_time_real_cron"] = saved
        with self.committed() as env:
            done = len(self.effects(env))
            cron = env["ir.cron"].browse(cron_id)
            failure_count, active = cron.failure_count, cron.active
            progress = env["ir.cron.progress"].search(
                [("cron_id", "=", cron_id)], order="id"
            )
            batches, last_remaining = len(progress), progress[-1:].remaining
            env.cr.execute(
                "SELECT count(*) FROM ir_cron_trigger WHERE cron_id = %s "
                "AND call_at <= now() AT TIME ZONE 'UTC'",
                [cron_id],
            )
            ready_triggers = env.cr.fetchone()[0]
        # Odoo called the runner again while it reported remaining work (batches of
        # 2), and the chain stopped at the cap, not after Odoo's 10 batches.
        self.assertGreater(batches, 1)
        self.assertLess(done, 20)
        self.assertGreaterEqual(done, 4)
        self.assertLess(elapsed, 3 + 0.3 + 2, "the chain overran the cron time cap")
        self.assertEqual(last_remaining, 0, "the last batch reported no work left")
        self.assertEqual(failure_count, 0)
        self.assertTrue(active)
        self.assertGreater(ready_triggers, 0, "a trigger continues the work at once")


@tagged("post_install", "-at_install")
class TestAsyncCommit(CommittedQueueCase):
    SHOW = (
        "env.cr.execute('SHOW synchronous_commit')\n"
        "raise NothingToDoJob(env.cr.fetchone()[0])"
    )

    def test_jobs_commit_asynchronously_only_when_asked(self):
        with self.committed() as env:
            default = self.enqueue_code(self.SHOW, env=env)
        with self.committed() as env:
            env["queue.job"]._job_runner(source="manual")
            self.assertEqual(env["queue.job"].browse(default.id).result, "on")
            env["ir.config_parameter"].set_param(
                "deltatech_queue_job.async_commit", "True"
            )
            fast = self.enqueue_code(self.SHOW, env=env)
        with self.committed() as env:
            stats = env["queue.job"]._job_runner(source="manual")
            self.assertEqual(stats.done, 1)
            self.assertEqual(env["queue.job"].browse(fast.id).result, "off")
            env.cr.execute("SHOW synchronous_commit")
            self.assertEqual(env.cr.fetchone()[0], "on", "restored after the batch")
