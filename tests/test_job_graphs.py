# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Job graphs: a child runs once all its parents are done, whatever the runners."""

import collections

from odoo.tests import tagged
from odoo.tools import mute_logger

from odoo.addons.queue_job.delay import group

from dqj_harness.kit import wait_for

from ..engine import runner
from .common import JOB_LOGGER, CommittedQueueCase

RUNNER_SCRIPT = """
stats = env["queue.job"]._job_runner(batch_size=1000, max_seconds=300, source="manual")
env.cr.commit()
print("STATS", stats.processed, stats.done, stats.failed, stats.postponed)
"""

# The parents wait on this advisory lock, which the test holds until both runners
# run one: they then finish at the same moment.
PARENT_GATE = 0x51D7_0002
WAIT_AT_GATE = (
    "env.cr.execute(\"SET LOCAL lock_timeout = '120s'\")\n"
    f"env.cr.execute('SELECT pg_advisory_xact_lock_shared({PARENT_GATE})')"
)


@tagged("post_install", "-at_install")
class TestJobGraphs(CommittedQueueCase):
    def _effect_action(self, env, body=""):
        return env["ir.actions.server"].create(
            {
                "name": "deltatech_queue_job test job",
                "model_id": env.ref("base.model_res_partner").id,
                "state": "code",
                "code": self.EFFECT_CODE.format(channel="root", body=body),
            }
        )

    def _parents_and_child(self, env, parent_body):
        """``group(a, b).on_done(c)``: a and b run ``parent_body``; each records its
        run in dqj_test_effect."""
        parents = [
            self._effect_action(env, parent_body).delayable(priority=1).run()
            for _i in range(2)
        ]
        child = self._effect_action(env).delayable(priority=5).run()
        group(*parents).on_done(child).delay()
        return self.jobs_of(parents, env), self.jobs_of([child], env)

    @staticmethod
    def _waiting_at_parent_gate(cr):
        cr.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND NOT granted AND classid = 0 AND objid = %s AND objsubid = 1",
            [PARENT_GATE],
        )
        return cr.fetchone()[0]

    def _run_parents_together(self, parent_body):
        with self.committed() as env:
            parents, child = self._parents_and_child(env, parent_body)
            self.assertEqual(child.state, "wait_dependencies")
        with self.committed() as gate:
            gate.cr.execute("SELECT pg_advisory_xact_lock(%s)", [PARENT_GATE])
            procs = [self.start_runner_process(RUNNER_SCRIPT) for _i in range(2)]
            # Each runner holds one parent, waiting at the gate: they overlap.
            wait_for(
                lambda: self._waiting_at_parent_gate(gate.cr) == 2,
                180,
                "both parents running, each in its own runner",
            )
            gate.cr.commit()  # opens the gate: both parents end at once
        processed = 0
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            self.assertEqual(proc.returncode, 0, err)
            self.assertNotIn("Traceback", err)
            line = next(line for line in out.splitlines() if line.startswith("STATS"))
            processed += int(line.split()[1])
        with self.committed() as env:
            runs = collections.Counter(uuid for uuid, *_rest in self.effects(env))
            states = env["queue.job"].browse((parents | child).ids).mapped("state")
            child_uuid = env["queue.job"].browse(child.id).uuid
        self.assertEqual(states[:2], ["done", "done"])
        self.assertEqual(states[2], "done", "the child ran after its two parents")
        self.assertEqual(runs[child_uuid], 1, "once")
        self.assertEqual(max(runs.values()), 1, "no job ran twice")
        self.assertEqual(processed, 3)

    def test_child_of_parents_finishing_at_once_in_two_runners_runs(self):
        self._run_parents_together(WAIT_AT_GATE)

    def test_child_of_committing_parents_finishing_at_once_runs(self):
        self.allow_commit_of_server_actions()
        self._run_parents_together("env.cr.commit()\n" + WAIT_AT_GATE)

    def test_sweep_releases_children_whose_parents_are_all_done(self):
        """A database that lost children before the fix: parents done, the child
        still waiting. The runner's sweep releases it, and the run runs it."""
        with self.committed() as env:
            parents, child = self._parents_and_child(env, "")
            half_parents, half_child = self._parents_and_child(env, "")
            env.cr.execute(
                "UPDATE queue_job SET state = 'done' WHERE id IN %s",
                [tuple(parents.ids + half_parents[:1].ids)],
            )
            env.cr.execute(
                "UPDATE queue_job SET state = 'pending' WHERE id IN %s",
                [tuple(half_parents[1:].ids)],
            )
            # Only the other test jobs: the half-done graph's parent waits.
            env.cr.execute(
                "UPDATE queue_job SET eta = now() + interval '1 hour' WHERE id = %s",
                [half_parents[1].id],
            )
            env.cr.execute(
                "DELETE FROM ir_cron_trigger WHERE cron_id IN "
                "(SELECT id FROM ir_cron WHERE dqj_queue_runner)"
            )
        with self.committed() as env:
            with mute_logger(JOB_LOGGER):
                released = env["queue.job"]._dqj_release_waiting_jobs()
            self.assertEqual(released, child.ids)
            self.assertEqual(env["queue.job"].browse(child.id).state, "pending")
            self.assertEqual(
                env["queue.job"].browse(half_child.id).state, "wait_dependencies"
            )
            self.assertTrue(
                env["ir.cron.trigger"].search_count(
                    [("cron_id", "in", env["ir.cron"]._dqj_runner_crons().ids)]
                ),
                "the released child gets a cron trigger",
            )
            env.cr.rollback()  # as the database was: the runner's sweep heals it
            runner._last_sweep.pop(env.cr.dbname, None)
            self.addCleanup(runner._last_sweep.pop, env.cr.dbname, None)
            with mute_logger(JOB_LOGGER):
                stats = env["queue.job"]._job_runner(source="manual")
            self.assertEqual(stats.job_ids, child.ids)
            self.assertEqual(env["queue.job"].browse(child.id).state, "done")
            self.assertEqual(
                env["queue.job"].browse(half_child.id).state, "wait_dependencies"
            )
            self.assertEqual(env["queue.job"]._dqj_release_waiting_jobs(), [])
