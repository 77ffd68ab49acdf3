# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo.exceptions import UserError
from odoo.tests import TransactionCase, tagged


@tagged("post_install", "-at_install")
class TestModule(TransactionCase):
    def test_installed_with_queue_job(self):
        module = self.env["ir.module.module"].search(
            [("name", "=", "deltatech_queue_job")]
        )
        self.assertEqual(module.state, "installed")
        self.assertIn("queue_job", module.dependencies_id.mapped("name"))

    def test_runner_crons_exist(self):
        crons = self.env["queue.job"]._runner_crons()
        self.assertEqual(len(crons.filtered("active")), 2)
        self.assertTrue(all(c.code == "model._job_runner()" for c in crons))

    def test_cron_jobrunner_is_refused(self):
        """Both addons override the same queue.job methods: installing OCA's
        queue_job_cron_jobrunner beside this one is refused with a clear message."""
        other = self.env["ir.module.module"].search(
            [("name", "=", "queue_job_cron_jobrunner")]
        )
        if not other:
            self.env["ir.module.module"].update_list()
            other = self.env["ir.module.module"].search(
                [("name", "=", "queue_job_cron_jobrunner")]
            )
        self.assertTrue(other, "queue_job_cron_jobrunner must be on the addons path")
        module = self.env["ir.module.module"].search(
            [("name", "=", "deltatech_queue_job")]
        )
        self.assertIn("queue_job_cron_jobrunner", module.exclusion_ids.mapped("name"))
        with self.assertRaisesRegex(UserError, "incompatible"):
            other.button_install()
