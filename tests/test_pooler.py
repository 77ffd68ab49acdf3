# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The runner behind a real pgbouncer (Debian's package): session mode works, a
transaction-mode pooler is refused, loudly, before any job starts."""

import os
import tempfile

from odoo import SUPERUSER_ID, api, sql_db
from odoo.tests import get_db_name, tagged

from dqj_harness.kit import PgBouncer

from .common import CommittedQueueCase

RUNNER_LOGGER = "odoo.addons.deltatech_queue_job.engine.runner"


@tagged("post_install", "-at_install")
class TestPooler(CommittedQueueCase):
    def _pgbouncer(self, mode):
        """A pgbouncer in ``mode`` in front of the test database, with two idle
        server connections it hands out in turn (as a busy pool does)."""
        log_dir = tempfile.mkdtemp(prefix="dqj-test-pgbouncer-")
        bouncer = PgBouncer(get_db_name(), mode, os.path.join(log_dir, "pgbouncer.log"))
        bouncer.start()
        self.addCleanup(bouncer.stop)
        bouncer.open_server_connections(2)
        return bouncer

    def _run_behind(self, bouncer):
        """One default run of the runner on an Odoo cursor connected through
        ``bouncer``: its stats, and its queue.job.run record."""
        with self.committed() as env:
            env.cr.execute("SELECT coalesce(max(id), 0) FROM queue_job_run")
            last_run = env.cr.fetchone()[0]
        connection = sql_db.db_connect(bouncer.uri(), allow_uri=True)
        with connection.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            stats = env["queue.job"]._job_runner(batch_size=10, source="manual")
        with self.committed() as env:
            env.cr.execute(
                "SELECT stopped_by FROM queue_job_run WHERE id > %s", [last_run]
            )
            return stats, [row[0] for row in env.cr.fetchall()]

    def _states(self, jobs):
        with self.committed() as env:
            env.cr.execute(
                "SELECT state, count(*) FROM queue_job WHERE id = ANY(%s) "
                "GROUP BY state",
                [jobs.ids],
            )
            return dict(env.cr.fetchall()), len(self.effects(env))

    def test_session_pooler_works_and_transaction_pooler_is_refused(self):
        # Session mode: one server connection per Odoo cursor, as without a pooler.
        with self.committed() as env:
            jobs = self.enqueue_effect_jobs(env, 3)
        session = self._pgbouncer("session")
        stats, runs = self._run_behind(session)
        self.assertEqual((stats.processed, stats.stopped_by), (3, "empty"))
        self.assertEqual(self._states(jobs), ({"done": 3}, 3))
        self.assertGreater(session.stats()["total_xact_count"], 3)
        self.assertEqual(runs, ["empty"])

        # Transaction mode: the run's transactions land on different server
        # connections; the run stops before its first job, says why at ERROR, and
        # is recorded as stopped by the pooler.
        with self.committed() as env:
            jobs = self.enqueue_effect_jobs(env, 3)
            env.cr.execute("SELECT count(*) FROM ir_cron_trigger")
            triggers = env.cr.fetchone()[0]
        transaction = self._pgbouncer("transaction")
        with self.assertLogs(RUNNER_LOGGER, "ERROR") as logs:
            stats, runs = self._run_behind(transaction)
        self.assertEqual((stats.processed, stats.stopped_by), (0, "pooler"))
        self.assertEqual(len(logs.output), 1, logs.output)
        self.assertIn("pooler in transaction mode", logs.output[0])
        self.assertIn("pool_mode = session", logs.output[0])
        self.assertEqual(runs, ["pooler"])
        self.assertEqual(self._states(jobs), ({"pending": 3}, 3))
        with self.committed() as env:
            env.cr.execute("SELECT count(*) FROM ir_cron_trigger")
            self.assertEqual(env.cr.fetchone()[0], triggers, "a trigger was left")
