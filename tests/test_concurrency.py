# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Runners sharing one queue: real cursors, real OS processes, committed jobs."""

import collections
import itertools
import time
from unittest.mock import patch

from odoo import sql_db
from odoo.tests import tagged
from odoo.tools import config

from dqj_harness.kit import kill, wait_for

from ..engine import attempts, counts, runner
from ..engine.transaction import COMMIT_PER_JOB
from .common import (
    CommittedQueueCase,
    as_cron_thread,
    process_cron_job,
    time_limits,
)

RUNNER_SCRIPT = """
stats = env["queue.job"]._job_runner(batch_size=1000, max_seconds=300, source="manual")
env.cr.commit()
print("STATS", stats.processed, stats.done, stats.failed, stats.postponed)
"""

SLEEP = "env.cr.execute('SELECT pg_sleep(0.05)')"

# A start gate for runner processes that must run at the same time (each loads its
# registry first, which takes seconds and differs from one to the next): the test
# holds this advisory lock until all of them wait for it.
START_GATE = 0x51D7_0001
GATED_RUNNER_SCRIPT = (
    f"env.cr.execute('SELECT pg_advisory_xact_lock_shared({START_GATE})')\n"
    "env.cr.commit()\n" + RUNNER_SCRIPT
)


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

    def test_runners_learning_the_same_estimate_at_once_both_count(self):
        """REPEATABLE READ: A's snapshot predates B's committed update of the row A
        is about to update. A tries again in a fresh transaction, and succeeds."""
        function = "<dqj.test>.f"
        with self.committed() as env:
            env["queue.job.duration"]._dqj_learn({function: 1.0}, COMMIT_PER_JOB)
        with self.committed() as env_a, self.committed() as env_b:
            env_a.cr.execute("SELECT 1")  # A's snapshot starts here
            env_b["queue.job.duration"]._dqj_learn({function: 4.0}, COMMIT_PER_JOB)
            env_a["queue.job.duration"]._dqj_learn({function: 8.0}, COMMIT_PER_JOB)
            env_b.cr.execute("SELECT 1")  # B's snapshot starts here
            env_a["queue.job.duration"]._dqj_learn({function: 2.0}, COMMIT_PER_JOB)
            # In its caller's transaction, B cannot start a fresh one: it gives up
            # (its 9 s are not learnt), without failing its caller.
            env_b["queue.job.duration"]._dqj_learn({function: 9.0})
            env_b.cr.rollback()
            estimates = env_b["queue.job.duration"]._dqj_estimates()
        self.assertEqual(estimates[function], 5.0, "1, 4, 8, then 2: halfway")

    def test_plain_job_costs_at_most_three_queries(self):
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
        # The acquisition (with the load), SAVEPOINT, the outcome's UPDATE; the
        # commit releases the savepoint.
        self.assertLessEqual(per_job, 3, f"{per_job} queries per job")

    def test_plain_job_costs_one_statement_on_the_attempt_connection(self):
        """What counting a plain job's tries outside its transaction costs: one
        statement per job on the run's second connection (engine/attempts.py), and
        one at the run's end that removes the last job's row."""
        with self.committed() as env:
            self.enqueue(11, env=env)
        counted = []
        close = attempts.AttemptLog.close

        def count_then_close(log):
            if log._cr is not None:
                counted.append(log._cr.sql_log_count)
            return close(log)

        with (
            patch.object(attempts.AttemptLog, "close", count_then_close),
            self.committed() as env,
        ):
            env["queue.job"]._job_runner(batch_size=1, source="manual")
            stats = env["queue.job"]._job_runner(batch_size=10, source="manual")
        self.assertEqual(stats.done, 10)
        self.assertEqual(counted, [1, 10], "one statement per job on that connection")

    def _default_run_statements(self, env):
        start = env.cr.sql_log_count
        stats = env["queue.job"]._job_runner(source="manual")
        return stats, env.cr.sql_log_count - start

    def test_a_default_run_costs_four_statements_per_job_whatever_the_backlog(self):
        """Every statement of a run with the default settings (batch 20) counts: the
        jobs', and the run's own (count, trigger, run record, estimates). The same
        with more jobs due than an exact count reads."""
        with self.committed() as env:
            self.enqueue(45, env=env)
        with self.committed() as env:
            self._default_run_statements(env)  # warms the caches
            # The dead-job sweep (once a minute per process) is not a run's cost.
            runner._last_sweep[env.cr.dbname] = time.monotonic()
            small, small_count = self._default_run_statements(env)
            env.cr.execute(
                "INSERT INTO queue_job (uuid, user_id, company_id, name, model_name, "
                "method_name, records, args, kwargs, dependencies, state, priority, "
                "date_created, channel, job_function_id, channel_method_name, retry, "
                "max_retries) "
                "SELECT md5(random()::text || i::text), user_id, company_id, name, "
                "model_name, method_name, records, args, kwargs, dependencies, "
                "'pending', priority + 1, date_created, channel, job_function_id, "
                "channel_method_name, 0, max_retries "
                "FROM queue_job, generate_series(1, 300) i "
                "WHERE state = 'pending' ORDER BY id LIMIT %s",
                [counts.EXACT_COUNT_LIMIT + 200],
            )
            env.cr.execute("ANALYZE queue_job")
            env.cr.commit()
            large, large_count = self._default_run_statements(env)
        self.assertEqual((small.processed, small.stopped_by), (20, "batch_size"))
        self.assertEqual(small.pending_count, 5)
        self.assertFalse(small.pending_estimated)
        self.assertEqual((large.processed, large.stopped_by), (20, "batch_size"))
        self.assertTrue(large.pending_estimated)
        self.assertGreater(large.pending_count, counts.EXACT_COUNT_LIMIT)
        self.assertLess(large.pending_count, 10 * counts.EXACT_COUNT_LIMIT)
        self.assertLessEqual(small_count, 4 * 20, f"{small_count} statements")
        # The estimate is one more statement (planned, not run), and only that.
        self.assertLessEqual(large_count, small_count + 1)


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

    @staticmethod
    def waiting_at_gate(cr):
        cr.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND NOT granted AND classid = 0 AND objid = %s AND objsubid = 1",
            [START_GATE],
        )
        return cr.fetchone()[0]

    def test_channel_capacity_holds_across_processes(self):
        with self.committed() as env:
            env["ir.config_parameter"].set_param(
                "deltatech_queue_job.channels", "root:4,root.sub:1"
            )
            sub = self.enqueue_sleeping_jobs(env, 12, 0.05, channel="root.sub")
            root = self.enqueue_sleeping_jobs(env, 12, 0.2)
        # Without the gate, the first process to be ready could run every job
        # before the others start: the parallelism asserted below would be luck.
        with self.committed() as gate:
            gate.cr.execute("SELECT pg_advisory_xact_lock(%s)", [START_GATE])
            procs = [self.start_runner_process(GATED_RUNNER_SCRIPT) for _i in range(3)]
            wait_for(
                lambda: self.waiting_at_gate(gate.cr) == len(procs),
                180,
                "the runner processes at the start gate",
            )
            gate.cr.commit()  # opens the gate
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
            slow = self.enqueue_sleeping_jobs(env, 1, 3, priority=1)
        proc = self.start_runner_process(RUNNER_SCRIPT)
        with self.committed() as observer:
            record = observer["queue.job"].browse(slow.id)

            def running():
                record.invalidate_recordset()
                return record.dqj_running

            wait_for(running, 60, "the job to start")
        kill(proc)
        with self.committed() as env:
            # PostgreSQL notices the dead client when the statement in flight ends,
            # and rolls its transaction back.
            def released():
                env.cr.rollback()
                return not env["queue.job"].browse(slow.id).dqj_running

            wait_for(released, 60, "the killed worker's lock")
            job = env["queue.job"].browse(slow.id)
            self.assertEqual(job.state, "pending")
            self.assertEqual(self.effects(env), [], "the killed job wrote nothing")
            # The next runner takes it and runs it once.
            stats = env["queue.job"]._job_runner(source="manual")
            self.assertEqual(stats.done, 1)
            self.assertEqual(len(self.effects(env)), 1)

    def _attempts_started(self, env, job_id):
        env.cr.execute("SELECT tries FROM dqj_job_attempt WHERE job_id = %s", [job_id])
        row = env.cr.fetchone()
        return row and row[0]

    def test_job_killing_its_worker_fails_after_max_retries_and_the_queue_goes_on(
        self,
    ):
        """A job whose worker dies while it runs (the test SIGKILLs the runner
        process, as the OOM killer would) counts a try at each death, although its
        transaction, retry included, is rolled back; after max_retries tries it
        fails without running again, and the job behind it runs."""
        with self.committed() as env:
            poison = self.enqueue_sleeping_jobs(env, 1, 4, priority=1, max_retries=2)
            neighbour = self.enqueue_effect_jobs(env, 1, priority=5)
            neighbour_uuid = neighbour.uuid
        for death in (1, 2):
            proc = self.start_runner_process(RUNNER_SCRIPT)
            with self.committed() as env:
                record = env["queue.job"].browse(poison.id)

                def running(record=record, env=env):
                    env.cr.rollback()
                    record.invalidate_recordset()
                    return record.dqj_running

                wait_for(running, 90, f"the poison job's try {death}")
            kill(proc)
            with self.committed() as env:

                def released(env=env):
                    env.cr.rollback()
                    return not env["queue.job"].browse(poison.id).dqj_running

                wait_for(released, 60, "the killed worker's lock")
                job = env["queue.job"].browse(poison.id)
                # Everything the try did is rolled back, retry included; the
                # attempt, recorded outside its transaction, is not.
                self.assertEqual((job.state, job.retry), ("pending", 0))
                self.assertEqual(self._attempts_started(env, poison.id), death)
        proc = self.start_runner_process(RUNNER_SCRIPT)
        out, _err = finish(proc)
        self.assertEqual(proc.returncode, 0)
        # The third runner fails the job without running it, and stops there.
        self.assertIn("STATS 1 0 1 0", out)
        with self.committed() as env:
            job = env["queue.job"].browse(poison.id)
            self.assertEqual(job.state, "failed")
            self.assertEqual(job.exc_name, "WorkerDied")
            self.assertIn("died 2 time(s)", job.exc_message)
            self.assertEqual(job.retry, 2, "exactly max_retries tries")
            run = env["queue.job.run"].search([], limit=1, order="id desc")
            self.assertEqual(run.stopped_by, "worker_died")
            # The next run takes the job behind it.
            stats = env["queue.job"]._job_runner(source="manual")
            self.assertEqual((stats.done, stats.failed), (1, 0))
            self.assertEqual(env["queue.job"].browse(neighbour.id).state, "done")
            self.assertEqual(
                [row[0] for row in self.effects(env)],
                [neighbour_uuid],
                "the poison job never ran to its end",
            )
            self.assertFalse(self._attempts_started(env, poison.id))


@tagged("post_install", "-at_install")
class TestCronIntegration(CommittedQueueCase):
    """The runner under Odoo 18's own cron machinery (ir.cron._process_job), in a
    thread marked as the threaded server marks its cron threads: its ``start_time``,
    set before each pass, is the heartbeat Odoo's watchdog counts from."""

    LIMIT = 8  # limit_time_real_cron: runs must end 5 s (the margin) before, at 3 s

    def _run_cron_once(self, cron_id, since_heartbeat=0.0):
        """One cron run, ``since_heartbeat`` seconds into the thread's pass; returns
        its duration."""
        ir_cron = self.registry["ir.cron"]
        db = sql_db.db_connect(self.registry.db_name)
        with (
            time_limits(self.LIMIT, config["limit_time_real"]),
            as_cron_thread(time.time() - since_heartbeat),
            db.cursor() as cron_cr,
        ):
            job = ir_cron._acquire_one_job(cron_cr, cron_id)
            self.assertTrue(job, "the runner cron is ready (triggered)")
            start = time.monotonic()
            process_cron_job(ir_cron, db, cron_cr, job)
            return time.monotonic() - start

    def _cron_state(self, cron_id):
        with self.committed() as env:
            cron = env["ir.cron"].browse(cron_id)
            progress = env["ir.cron.progress"].search(
                [("cron_id", "=", cron_id)], order="id"
            )
            env.cr.execute(
                "SELECT count(*) FROM ir_cron_trigger WHERE cron_id = %s "
                "AND call_at <= now() AT TIME ZONE 'UTC'",
                [cron_id],
            )
            ready_triggers = env.cr.fetchone()[0]
            return {
                "done": len(self.effects(env)),
                "failure_count": cron.failure_count,
                "active": cron.active,
                "batches": len(progress),
                "last_remaining": progress[-1:].remaining,
                "timed_out": max(progress.mapped("timed_out_counter"), default=0),
                "ready_triggers": ready_triggers,
            }

    def _enqueue(self, count, seconds, batch_size=2):
        """The runner cron's id and the jobs' ids."""
        with self.committed() as env:
            env["ir.config_parameter"].set_param(
                "deltatech_queue_job.batch_size", str(batch_size)
            )
            jobs = self.enqueue_sleeping_jobs(env, count, seconds)
            return env.ref("deltatech_queue_job.cron_queue_job_runner").id, jobs.ids

    def assertHealthy(self, state):
        self.assertEqual(state["failure_count"], 0)
        self.assertEqual(state["timed_out"], 0)
        self.assertTrue(state["active"])
        self.assertGreater(state["ready_triggers"], 0, "a trigger continues at once")

    def test_cron_chain_ends_before_the_watchdog_and_leaves_a_trigger(self):
        cron_id, _jobs = self._enqueue(30, 0.3)
        elapsed = self._run_cron_once(cron_id)
        state = self._cron_state(cron_id)
        # Odoo called the runner again while it reported remaining work (batches of
        # 2), and the chain stopped at the heartbeat's deadline (3 s), not after
        # Odoo's 10 batches.
        self.assertGreater(state["batches"], 1)
        self.assertLess(state["done"], 20)
        self.assertGreaterEqual(state["done"], 4)
        self.assertLess(elapsed, 3 + 0.3 + 2, "the chain overran the watchdog")
        self.assertEqual(state["last_remaining"], 0, "the last batch said: no more")
        self.assertHealthy(state)

    def test_time_spent_before_the_runner_in_the_pass_counts(self):
        cron_id, _jobs = self._enqueue(30, 0.3, batch_size=100)
        # Other crons of the pass took 2 s of the 3: one second is left.
        elapsed = self._run_cron_once(cron_id, since_heartbeat=2)
        state = self._cron_state(cron_id)
        self.assertLess(elapsed, 1 + 0.3 + 1, "the runner counted from its own start")
        self.assertLessEqual(state["done"], 5)
        self.assertHealthy(state)

    def test_no_time_left_starts_no_job_and_the_continuation_survives(self):
        cron_id, job_ids = self._enqueue(3, 0.1)
        with self.committed() as env:
            # The job-creation triggers: the continuation alone must remain.
            env.cr.execute("DELETE FROM ir_cron_trigger WHERE cron_id = %s", [cron_id])
            env.cr.execute(
                "UPDATE ir_cron SET nextcall = now() AT TIME ZONE 'UTC' WHERE id = %s",
                [cron_id],
            )
        elapsed = self._run_cron_once(cron_id, since_heartbeat=3)
        state = self._cron_state(cron_id)
        self.assertEqual(state["done"], 0)
        self.assertLess(elapsed, 2)
        with self.committed() as env:
            pending = env["queue.job"].search_count(
                [("id", "in", job_ids), ("state", "=", "pending")]
            )
            run = env["queue.job.run"].search([("source", "=", "cron")], limit=1)
            run = (run.processed, run.stopped_by)
        self.assertEqual(pending, 3, "untouched")
        self.assertEqual(run, (0, "time"))
        # Odoo deleted the cron's triggers older than its run's start (fully done);
        # the runner's continuation is younger, and ready now.
        self.assertHealthy(state)
        # The fresh pass it starts has the whole budget: every job is done.
        self._run_cron_once(cron_id)
        self.assertEqual(self._cron_state(cron_id)["done"], 3)

    def test_next_job_longer_than_the_time_left_is_released_untouched(self):
        cron_id, job_ids = self._enqueue(3, 0.1, batch_size=100)
        with self.committed() as env:
            function = env["queue.job"].browse(job_ids[0]).channel_method_name
            env["queue.job.duration"]._dqj_learn({function: 2.0})
        # 1.5 s left: not enough for a job estimated at 2 s.
        elapsed = self._run_cron_once(cron_id, since_heartbeat=1.5)
        state = self._cron_state(cron_id)
        self.assertEqual(state["done"], 0)
        self.assertLess(elapsed, 1.5)
        self.assertHealthy(state)
        with self.committed() as env:
            # Released at once, not held until some commit: another runner takes it.
            job = env["queue.job"]._acquire_one_job()
            self.assertEqual(job.id, job_ids[0])
            env.cr.rollback()
        self._run_cron_once(cron_id)
        state = self._cron_state(cron_id)
        self.assertEqual(state["done"], 3, "a fresh pass has the time: 3 s")
        with self.committed() as env:
            estimate = env["queue.job.duration"]._dqj_estimates()[function]
        self.assertLess(estimate, 1.5, "halfway down to the jobs' real duration")

    def test_a_pass_failing_a_poison_job_ends_as_a_success(self):
        """Odoo archives a cron after 5 failed passes in a row (over a week); a
        worker that dies makes it count a timeout, and 3 of them a failed pass. The
        pass that fails a poison job for its deaths stops there, even with another
        poison job next, so that it ends as a success and Odoo's count starts
        again: poison jobs never get a runner cron archived."""
        cron_id, _jobs = self._enqueue(0, 0)
        with self.committed() as env:
            poisons = self.enqueue_sleeping_jobs(env, 2, 0.1, priority=1, max_retries=2)
            self.enqueue_effect_jobs(env, 1, priority=5)
            # What two workers killed while running each poison job leave: two
            # attempts started, none ended.
            for job in poisons:
                env.cr.execute(
                    "INSERT INTO dqj_job_attempt (job_id, tries) VALUES (%s, 2)",
                    [job.id],
                )
            # Earlier failed passes, the first of them more than a week ago: one
            # more failure archives the cron.
            env.cr.execute(
                "UPDATE ir_cron SET failure_count = 4, first_failure_date = "
                "(now() AT TIME ZONE 'UTC') - interval '8 days' WHERE id = %s",
                [cron_id],
            )
        self._run_cron_once(cron_id)
        state = self._cron_state(cron_id)
        self.assertHealthy(state)
        self.assertEqual(state["done"], 0)
        with self.committed() as env:
            first, second = env["queue.job"].browse(poisons.ids)
            self.assertEqual((first.state, first.exc_name), ("failed", "WorkerDied"))
            self.assertEqual(second.state, "pending", "left to the next pass")
            run = env["queue.job.run"].search([("source", "=", "cron")], limit=1)
            self.assertEqual((run.processed, run.stopped_by), (1, "worker_died"))
        self._run_cron_once(cron_id)
        state = self._cron_state(cron_id)
        self.assertHealthy(state)
        self.assertEqual(state["done"], 0)
        self._run_cron_once(cron_id)
        self.assertEqual(self._cron_state(cron_id)["done"], 1, "the job behind them")


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
