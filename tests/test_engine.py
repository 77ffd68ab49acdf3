# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo.tests import tagged

from .common import QueueJobCase


@tagged("post_install", "-at_install")
class TestEngineSmoke(QueueJobCase):
    def test_runner_processes_pending_jobs(self):
        jobs = self.enqueue(3)
        stats = self.run_runner()
        self.assertEqual(stats.processed, 3)
        self.assertEqual(stats.done, 3)
        self.assertEqual(set(jobs.mapped("state")), {"done"})
