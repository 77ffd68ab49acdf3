# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Real jobs: commits inside jobs, queue_job's store path and hooks, edge cases of
the acquisition and of the run."""

import functools
import itertools
import os
import threading
import time
from datetime import timedelta
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import config, mute_logger

from odoo.addons.queue_job import exception as queue_job_exception
from odoo.addons.queue_job.job import Job

from dqj_harness.kit import kill, wait_for

from ..engine import job_locks, runner
from ..engine.scopes import TRIGGERED_KEY
from ..engine.settings import ChannelRules, http_time_cap, parse_channel_rules
from ..engine.transaction import COMMIT_PER_JOB, SAVEPOINTS_ONLY
from ..models import queue_job_actions
from . import test_concurrency
from .common import JOB_LOGGER, CommittedQueueCase, QueueJobCase
from .test_concurrency import START_GATE, finish

COMMIT = "env.cr.commit()"
PARTNER_WRITE = "env['res.partner'].browse({pid}).write({{'comment': 'touched'}})\n"


@tagged("post_install", "-at_install")
class TestCommitGuard(QueueJobCase):
    def setUp(self):
        super().setUp()
        self.partner = self.env["res.partner"].create({"name": "guarded"})

    def _run_between_neighbours(self, body):
        first = self.enqueue(1)
        bad = self.enqueue_code(PARTNER_WRITE.format(pid=self.partner.id) + body)
        last = self.enqueue(1)
        with mute_logger(JOB_LOGGER, "odoo.sql_db"):
            stats = self.run_runner()
        self.assertEqual((stats.done, stats.failed), (2, 1))
        self.assertEqual((first.state, last.state), ("done", "done"))
        self.assertEqual(bad.state, "failed")
        self.partner.invalidate_recordset()
        self.assertFalse(self.partner.comment, "the failed job's writes are undone")
        return bad

    def test_commit_in_a_job_fails_that_job_alone(self):
        bad = self._run_between_neighbours(COMMIT)
        self.assertIn("Commit is forbidden in queue jobs", bad.exc_info)
        self.assertIn("Allow Commit", bad.exc_info)

    def test_rollback_in_a_job_fails_that_job_alone(self):
        bad = self._run_between_neighbours("env.cr.rollback()")
        self.assertIn("a rollback would end", bad.exc_info)

    def test_a_swallowed_commit_still_fails_the_job(self):
        bad = self._run_between_neighbours(
            "try:\n    env.cr.commit()\nexcept Exception:\n    pass\n"
        )
        self.assertIn("Commit is forbidden in queue jobs", bad.exc_info)

    def test_the_cursor_is_given_back_its_commit_after_the_job(self):
        commit, rollback = self.env.cr.commit, self.env.cr.rollback
        self._run_between_neighbours(COMMIT)
        self.assertEqual(self.env.cr.commit, commit, "the guard is removed")
        self.assertEqual(self.env.cr.rollback, rollback)


@tagged("post_install", "-at_install")
class TestQueueJobContract(QueueJobCase):
    def test_outcomes_go_through_the_store_values_hooks(self):
        model = self.env["test.queue.job"]
        done = self.jobs_of([model.with_delay().testing_method(1)])
        failed = self.jobs_of(
            [model.with_delay(max_retries=1).testing_method(raise_retry=True)]
        )
        with mute_logger(JOB_LOGGER):
            self.run_runner()
        self.assertEqual(done.additional_info, "JUST_TESTING")
        self.assertEqual(failed.state, "failed")
        self.assertEqual(failed.additional_info, "JUST_TESTING_BUT_FAILED")

    def test_no_queue_job_lock_row_is_written(self):
        """queue_job 18.0.2+'s set_started() inserts the row its own runner locks;
        this runner has its own locks and does not pay that statement."""
        job = self.enqueue(1)
        self.run_runner()
        self.assertEqual(job.state, "done")
        self.assertEqual(job.worker_pid, os.getpid())
        self.assertTrue(job.date_started)
        self.env.cr.execute("SELECT to_regclass('queue_job_lock')")
        if self.env.cr.fetchone()[0]:
            self.env.cr.execute(
                "SELECT count(*) FROM queue_job_lock WHERE queue_job_id = %s", [job.id]
            )
            self.assertEqual(self.env.cr.fetchone()[0], 0)
        else:
            self.assertFalse(hasattr(Job, "add_lock_record"))

    def test_queue_jobs_own_nothing_to_do_is_done(self):
        upstream = getattr(queue_job_exception, "NothingToDoJob", None)
        job = self.enqueue(1)
        if upstream is None:
            # queue_job 18.0.1.7 has none: this addon's class is the only one.
            self.assertFalse(hasattr(queue_job_exception, "NothingToDoJob"))
            return
        with patch.object(Job, "perform", side_effect=upstream("nothing to do")):
            stats = self.run_runner()
        self.assertEqual((stats.done, stats.failed), (1, 0))
        self.assertEqual(job.result, "nothing to do")

    def test_failure_values_are_built_as_queue_job_does(self):
        job = self.enqueue_code("raise UserError('broken')")
        with mute_logger(JOB_LOGGER):
            stats = self.run_runner()
        self.assertEqual(stats.failed, 1)
        self.assertEqual(job.state, "failed")
        self.assertEqual(job.exc_message, "broken")
        self.assertEqual(job.exc_name, "odoo.exceptions.UserError")


@tagged("post_install", "-at_install")
class TestRunEdges(QueueJobCase):
    def test_trigger_deduplication_survives_flushing_savepoints(self):
        before = self.env["ir.cron.trigger"].search([])
        self.env.cr.postcommit.data.pop(TRIGGERED_KEY, None)
        self.enqueue(1)
        with self.env.cr.savepoint():
            self.env["res.partner"].create({"name": "flushed"})
        self.enqueue(1)
        new = self.env["ir.cron.trigger"].search([]) - before
        self.assertEqual(len(new), len(self.env["ir.cron"]._dqj_runner_crons()))

    def test_run_blocked_by_full_channels_leaves_a_trigger(self):
        self.enqueue(2, channel="root.narrow")
        self.env.cr.execute("DELETE FROM ir_cron_trigger")  # the enqueue's
        blocker = job_locks.channel_lock_key("root.narrow")
        with self.env.registry.cursor() as other:
            other.execute("SELECT pg_advisory_xact_lock(%s, 0)", [blocker])
            before = self.env["ir.cron.trigger"].search([])
            self.env["ir.config_parameter"].set_param(
                "deltatech_queue_job.channels", "root.narrow:1"
            )
            stats = self.run_runner()
            other.rollback()
        self.assertEqual(stats.processed, 0)
        self.assertEqual(stats.stopped_by, "contention")
        new = self.env["ir.cron.trigger"].search([]) - before
        self.assertEqual(new.cron_id, self.env["ir.cron"]._dqj_runner_crons())
        # ... for a few seconds later: while the channel is held, its runner cron
        # does not rerun back to back (the holder's runner continues at once).
        self.env.cr.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'")
        now = self.env.cr.fetchone()[0]
        delay = timedelta(seconds=runner.CONTENTION_RETRY_SECONDS - 1)
        for trigger in new:
            self.assertGreater(trigger.call_at, now + delay, "no trigger due now")

    def test_a_due_trigger_planned_for_later_does_not_replace_a_continuation(self):
        """A trigger planned for later sent no NOTIFY: due now, it still waits for
        its cron worker's next wake-up. A run that processed jobs and leaves work
        (the one that frees a held channel) wakes the runner crons anyway."""
        self.enqueue(2)
        self.env.cr.execute("DELETE FROM ir_cron_trigger")
        crons = self.env["ir.cron"]._dqj_runner_crons()
        # What a run that met a full channel left 6 s ago, planned 5 s later.
        self.env.cr.execute(
            "INSERT INTO ir_cron_trigger (cron_id, call_at, create_date) "
            "SELECT id, (now() AT TIME ZONE 'UTC') - interval '1 second', "
            "(now() AT TIME ZONE 'UTC') - interval '6 seconds' "
            "FROM ir_cron WHERE id = ANY(%s)",
            [crons.ids],
        )
        stats = self.run_runner(batch_size=1)
        self.assertEqual((stats.processed, stats.pending_count), (1, 1))
        self.env.cr.execute(
            "SELECT cron_id FROM ir_cron_trigger WHERE call_at >= %s "
            "AND call_at <= clock_timestamp() AT TIME ZONE 'UTC'",
            [stats.started_at],
        )
        self.assertEqual({row[0] for row in self.env.cr.fetchall()}, set(crons.ids))

    def test_default_acquisition_keeps_the_callers_work(self):
        self.enqueue(1, channel="root.narrow")
        partner = self.env["res.partner"].create({"name": "caller's work"})
        blocker = job_locks.channel_lock_key("root.narrow")
        with self.env.registry.cursor() as other:
            other.execute("SELECT pg_advisory_xact_lock(%s, 0)", [blocker])
            job = self.queue_job._acquire_one_job(capacities={"root.narrow": 1})
            other.rollback()
        self.assertFalse(job)
        self.assertTrue(partner.exists(), "nothing was rolled back")

    def test_a_run_that_raises_is_recorded(self):
        self.enqueue(3)
        calls = []
        original = type(self.queue_job)._dqj_acquire

        def acquire_then_break(model, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("engine broke")
            return original(model, *args, **kwargs)

        runs = self.env["queue.job.run"].search([])
        with (
            patch.object(type(self.queue_job), "_dqj_acquire", acquire_then_break),
            self.assertRaisesRegex(RuntimeError, "engine broke"),
        ):
            self.run_runner()
        run = self.env["queue.job.run"].search([]) - runs
        self.assertEqual(run.stopped_by, "error")
        self.assertEqual(run.processed, 1)

    def test_background_thread_stays_within_the_http_time_limit(self):
        self.enqueue(1)
        with patch.dict(config.options, {"limit_time_real": 30}):
            thread = None
            with patch.object(threading.Thread, "start"):
                self.queue_job.sudo().action_process_in_background()
                thread = self.queue_job._dqj_background_thread()
                budget = thread._args[2]
            self.assertLessEqual(budget, http_time_cap())
        queue_job_actions._background_threads.pop(self.env.cr.dbname, None)


@tagged("post_install", "-at_install")
class TestAcquisitionRaces(CommittedQueueCase):
    def test_savepoint_mode_passes_over_a_lost_race(self):
        with self.committed() as env:
            jobs = self.enqueue(3, env=env)
        with self.committed() as env_a, self.committed() as env_b:
            env_b.cr.execute("SELECT 1")  # B's snapshot starts here
            env_a["queue.job"]._acquire_one_job(commit=True)._process(commit=True)
            job = env_b["queue.job"]._acquire_one_job()  # savepoint mode
            self.assertEqual(job.id, jobs.ids[1])

    def test_a_job_running_elsewhere_is_passed_over_without_waiting(self):
        """A pending job whose 'running' lock another session holds (queue_job's
        Requeue put a committing job back to pending while its worker runs it):
        the acquisition neither waits for it nor takes it."""
        with self.committed() as env:
            held, free = self.enqueue(2, env=env).ids
        with self.committed() as worker, self.committed() as env:
            worker.cr.execute(
                "SELECT pg_advisory_lock(%s, %s)", [job_locks.RUNNING_LOCK_NS, held]
            )
            # Waiting would fail here instead of hanging the test.
            env.cr.execute("SET lock_timeout = '2s'")
            env.cr.commit()
            try:
                for policy in (COMMIT_PER_JOB, SAVEPOINTS_ONLY):
                    start = time.monotonic()
                    job, acquired = env["queue.job"]._dqj_acquire(policy=policy)
                    self.assertLess(time.monotonic() - start, 1.5, "it did not wait")
                    self.assertEqual(job.id, free, policy)
                    env.cr.rollback()
                    job, acquired = env["queue.job"]._dqj_acquire(held, policy)
                    self.assertFalse(job)
                    self.assertTrue(acquired.contended, "it may be pending later")
                    env.cr.rollback()
                stats = env["queue.job"]._job_runner(source="manual")
                self.assertEqual(stats.job_ids, [free])
                self.assertEqual(stats.stopped_by, "contention")
            finally:
                env.cr.rollback()
                env.cr.execute("RESET lock_timeout")
                env.cr.commit()
                worker.cr.execute(
                    "SELECT pg_advisory_unlock(%s, %s)",
                    [job_locks.RUNNING_LOCK_NS, held],
                )


RUNNER_SCRIPT = """
stats = env["queue.job"]._job_runner(batch_size=1000, max_seconds=300, source="manual")
env.cr.commit()
print("STATS", stats.processed, stats.done, stats.failed, stats.postponed)
"""


# A scheduler calling a runner of one job over and over, until the channel is empty
# (bounded): with several of them, each job of the channel meets runners trying to
# start the next one while it runs.
POLLING_RUNNER_SCRIPT = (
    f"env.cr.execute('SELECT pg_advisory_xact_lock_shared({START_GATE})')\n"
    "env.cr.commit()\n"
    """
import time
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    env["queue.job"]._job_runner(batch_size=1, max_seconds=300, source="manual")
    env.cr.commit()
    env.cr.execute(
        "SELECT count(*) FROM queue_job WHERE channel = 'root.hardseq' "
        "AND state IN ('pending', 'started')"
    )
    if not env.cr.fetchone()[0]:
        break
    env.cr.commit()
    time.sleep(0.1)
"""
)


@tagged("post_install", "-at_install")
class TestCommittingJobs(CommittedQueueCase):
    def setUp(self):
        super().setUp()
        self.allow_commit_of_server_actions()

    def test_committing_job_runs_once_and_writes_its_own_row(self):
        body = (
            "env.cr.commit()\n"
            "env.cr.execute(\"SET LOCAL lock_timeout = '3s'\")\n"
            "env.cr.execute(\"UPDATE queue_job SET exc_message = 'progress 50%%' "
            "WHERE uuid = %s\", [env.context['job_uuid']])\n"
            "env.cr.commit()"
        )
        with self.committed() as env:
            jobs = self.enqueue_effect_jobs(env, 2, body=body)
            plain = self.enqueue(1, env=env)
            job_uuids = jobs.mapped("uuid")
        with self.committed() as env:
            stats = env["queue.job"]._job_runner(source="manual")
            self.assertEqual((stats.done, stats.failed, stats.postponed), (3, 0, 0))
        with self.committed() as env:
            states = env["queue.job"].browse((jobs | plain).ids).mapped("state")
            self.assertEqual(states, ["done"] * 3)
            self.assertFalse(
                any(env["queue.job"].browse(jobs.ids).mapped("dqj_committing"))
            )
            uuids = [uuid for uuid, *_rest in self.effects(env)]
            self.assertCountEqual(uuids, job_uuids, "each ran once")

    def test_committing_job_that_raises_fails_alone(self):
        with self.committed() as env:
            jobs = self.enqueue_effect_jobs(env, 1, body="env.cr.commit()\n1 / 0")
            plain = self.enqueue(1, env=env)
        with self.committed() as env, mute_logger(JOB_LOGGER):
            stats = env["queue.job"]._job_runner(source="manual")
        self.assertEqual((stats.done, stats.failed), (1, 1))
        with self.committed() as env:
            job = env["queue.job"].browse(jobs.id)
            self.assertEqual(job.state, "failed")
            self.assertIn("ZeroDivisionError", job.exc_info)
            self.assertEqual(env["queue.job"].browse(plain.id).state, "done")
            self.assertEqual(len(self.effects(env)), 1, "its commit is kept")

    def _start_gated_runners(self, count, script):
        """``count`` processes running ``script``, started together once all are
        ready."""
        with self.committed() as gate:
            gate.cr.execute("SELECT pg_advisory_xact_lock(%s)", [START_GATE])
            procs = [self.start_runner_process(script) for _i in range(count)]
            wait_for(
                lambda: (
                    test_concurrency.TestProcesses.waiting_at_gate(gate.cr) == count
                ),
                180,
                "the runner processes at the start gate",
            )
        return procs

    def test_sequential_channel_of_committing_jobs_runs_one_at_a_time(self):
        """Committed as 'started', a job is no longer pending: it still holds its
        sequential channel until its outcome is committed."""
        with self.committed() as env:
            env["ir.config_parameter"].set_param(
                "deltatech_queue_job.channels", "root.hardseq:1:sequential"
            )
            jobs = self.enqueue_effect_jobs(
                env,
                3,
                body="env.cr.commit()\nenv.cr.execute('SELECT pg_sleep(1.5)')",
                channel="root.hardseq",
            )
            order = jobs.mapped("uuid")
        for proc in self._start_gated_runners(3, POLLING_RUNNER_SCRIPT):
            _out, err = finish(proc)
            self.assertEqual(proc.returncode, 0, err)
        with self.committed() as env:
            effects = sorted(self.effects(env), key=lambda effect: effect[2])
            states = env["queue.job"].browse(jobs.ids).mapped("state")
        self.assertEqual(states, ["done"] * 3)
        self.assertEqual([uuid for uuid, *_rest in effects], order, "in queue order")
        for (_u1, _c1, _s1, end), (_u2, _c2, start, _f2) in itertools.pairwise(effects):
            self.assertLessEqual(end, start, "two jobs of the channel ran at once")

    def test_committing_job_holds_its_channel_slot_until_its_outcome(self):
        gate = 0x51D7_0002
        with self.committed() as env:
            env["ir.config_parameter"].set_param(
                "deltatech_queue_job.channels", "root.busy:1"
            )
            holder = self.enqueue_effect_jobs(
                env,
                1,
                body=f"env.cr.commit()\n"
                f"env.cr.execute('SELECT pg_advisory_xact_lock_shared({gate})')",
                channel="root.busy",
            )
            other = self.enqueue_effect_jobs(env, 1, channel="root.busy")
            holder_uuid, other_uuid = holder.uuid, other.uuid
        with self.committed() as blocker:
            blocker.cr.execute("SELECT pg_advisory_xact_lock(%s)", [gate])
            blocker.cr.execute("SELECT 1")  # held until the block ends
            proc = self.start_runner_process(RUNNER_SCRIPT)
            with self.committed() as env:

                def holder_started():
                    env.cr.rollback()
                    return self.effects(env)

                wait_for(holder_started, 180, "the committing job's first commit")
                self.assertEqual(env["queue.job"].browse(holder.id).state, "started")
                env.cr.execute("SELECT coalesce(max(id), 0) FROM ir_cron_trigger")
                last_trigger = env.cr.fetchone()[0]
                stats = env["queue.job"]._job_runner(source="manual")
                self.assertEqual(stats.processed, 0, "the channel's slot is held")
                self.assertEqual(stats.stopped_by, "contention")
                self.assertEqual(env["queue.job"].browse(other.id).state, "pending")
                env.cr.execute(
                    "SELECT count(*) FROM ir_cron_trigger WHERE id > %s "
                    "AND call_at <= clock_timestamp() AT TIME ZONE 'UTC'",
                    [last_trigger],
                )
                self.assertEqual(env.cr.fetchone()[0], 0, "no trigger due now")
                env.cr.commit()
        # The gate opens: the holder ends, and its runner takes the other job.
        out, err = finish(proc)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("STATS 2 2 0 0", out)
        with self.committed() as env:
            effects = {uuid: (start, end) for uuid, _c, start, end in self.effects(env)}
        self.assertLessEqual(effects[holder_uuid][1], effects[other_uuid][0])

    @staticmethod
    def _slot_taken(cr, channel):
        """Whether some session holds a slot of ``channel``."""
        cr.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 2 AND classid = %s",
            [job_locks.channel_lock_key(channel)],
        )
        return bool(cr.fetchone()[0])

    def test_killed_worker_requeues_its_committing_job_once(self):
        body = "env.cr.commit()\nenv.cr.execute('SELECT pg_sleep(30)')"
        with self.committed() as env:
            env["ir.config_parameter"].set_param(
                "deltatech_queue_job.channels", "root.dying:1"
            )
            job = self.enqueue_effect_jobs(env, 1, body=body, channel="root.dying")
            job_uuid = job.uuid
        proc = self.start_runner_process(RUNNER_SCRIPT)
        with self.committed() as observer:
            record = observer["queue.job"].browse(job.id)

            def committed_effect():
                observer.cr.rollback()
                return self.effects(observer)

            wait_for(committed_effect, 90, "the job's first commit")
            record.invalidate_recordset()
            self.assertEqual(record.state, "started")
            self.assertTrue(record.dqj_running)
            self.assertTrue(self._slot_taken(observer.cr, "root.dying"))
            self.assertEqual(
                observer["queue.job"]._dqj_requeue_dead_jobs(),
                [],
                "a live worker's job is left alone",
            )
            observer.cr.commit()
        kill(proc)
        with self.committed() as env:

            def requeued():
                env.cr.rollback()
                return env["queue.job"]._dqj_requeue_dead_jobs()

            with mute_logger(JOB_LOGGER):
                uuids = wait_for(requeued, 60, "the dead job's lock")
            self.assertEqual(uuids, [job_uuid])
            self.assertFalse(
                self._slot_taken(env.cr, "root.dying"), "its slot went with it"
            )
            env.cr.commit()
            self.assertEqual(env["queue.job"]._dqj_requeue_dead_jobs(), [], "once")
            record = env["queue.job"].browse(job.id)
            self.assertEqual(record.state, "pending")
            self.assertFalse(record.dqj_committing)
            self.assertEqual(record.retry, 1, "the death counts as a try")


@tagged("post_install", "-at_install")
class TestChannelRules(QueueJobCase):
    def _set_channels(self, text):
        self.env["ir.config_parameter"].set_param("deltatech_queue_job.channels", text)

    def test_options_are_read_in_queue_jobs_syntax(self):
        rules = parse_channel_rules("root:4,mail:2:sequential,root.sync:3:paused")
        self.assertEqual(rules.capacities, {"root": 4, "root.mail": 1, "root.sync": 3})
        self.assertEqual(rules.sequential, {"root.mail"})
        self.assertEqual(rules.paused, {"root.sync"})

    def test_paused_channel_and_its_subchannels_never_start(self):
        held = self.enqueue(1, channel="root.hold") | self.enqueue(
            1, channel="root.hold.sub"
        )
        free = self.enqueue(1, channel="root.holdout")
        self._set_channels("root.hold:2:paused")
        stats = self.run_runner()
        self.assertEqual(stats.job_ids, free.ids)
        self.assertEqual(set(held.mapped("state")), {"pending"})

    def test_sequential_channel_waits_for_its_head(self):
        self._set_channels("root.seq:1:sequential")
        head = self.enqueue(1, channel="root.seq", eta=3600)
        later = self.enqueue(2, channel="root.seq")
        other = self.enqueue(1, channel="root.other")
        stats = self.run_runner()
        self.assertEqual(stats.job_ids, other.ids, "nothing overtakes the head")
        head.write({"eta": False})
        stats = self.run_runner()
        self.assertEqual(stats.job_ids, (head | later).ids, "then in queue order")

    def test_sequential_channel_stops_at_a_failed_job(self):
        self._set_channels("root.seq:1:sequential")
        broken = self.enqueue(1, channel="root.seq")
        waiting = self.enqueue(1, channel="root.seq")
        broken.write({"state": "failed"})
        stats = self.run_runner()
        self.assertEqual(stats.processed, 0)
        self.assertEqual(waiting.state, "pending")
        broken.requeue()
        stats = self.run_runner()
        self.assertEqual(stats.job_ids, (broken | waiting).ids)

    def test_channel_records_options_count_with_the_settings(self):
        channel_model = self.env["queue.job.channel"]
        if "paused" not in channel_model._fields:
            # queue_job before 18.0.4: channel records have no runner options.
            self.assertEqual(channel_model._dqj_channel_rules(), ChannelRules())
            return
        root = self.env.ref("queue_job.channel_root")
        channel_model.create({"name": "recorded", "parent_id": root.id, "paused": True})
        self._set_channels("root.capped:1")
        rules = self.queue_job._dqj_channel_rules()
        self.assertIn("root.recorded", rules.paused)
        self.assertEqual(rules.capacities.get("root.capped"), 1)
        held = self.enqueue(1, channel="root.recorded")
        stats = self.run_runner()
        self.assertNotIn(held.id, stats.job_ids)


@tagged("post_install", "-at_install")
class TestOnFail(QueueJobCase):
    def test_on_fail_is_called_after_the_final_failure_only(self):
        model = self.env["test.queue.job"]
        function_model = self.env["queue.job.function"]
        if "on_fail_method" not in function_model._fields:
            # queue_job before 18.0.3 has no on_fail: nothing to call.
            self.assertFalse(hasattr(Job, "on_fail"))
            return
        function = function_model.search(
            [("name", "=", "<test.queue.job>.testing_method")]
        ) or function_model.create(
            {
                "model_id": self.env.ref("test_queue_job.model_test_queue_job").id,
                "method": "testing_method",
            }
        )
        function.on_fail_method = "testing_method"
        job = self.jobs_of(
            [model.with_delay(max_retries=2).testing_method(raise_retry=True)]
        )
        calls = []
        original = type(model).testing_method

        # wraps: queue_job 19.0 takes the job's method name from the method itself.
        @functools.wraps(original)
        def spy(records, *args, **kwargs):
            if "exc_name" in kwargs:
                calls.append(kwargs)
            return original(records, *args, **kwargs)

        with patch.object(type(model), "testing_method", spy), mute_logger(JOB_LOGGER):
            self.run_runner()
            self.assertEqual(job.state, "pending", "postponed by its first retry")
            self.assertEqual(calls, [], "not called after a postponement")
            job.write({"eta": False})
            self.run_runner()
        self.assertEqual(job.state, "failed")
        self.assertEqual(len(calls), 1)
        self.assertIn("Max. retries (2) reached", calls[0]["exc_message"])
