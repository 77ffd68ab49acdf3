# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import release
from odoo.exceptions import UserError
from odoo.tests import TransactionCase, tagged
from odoo.tools.parse_version import parse_version

from .common import ensure_cron_jobrunner_record

# The original deltatech_queue_job's newest release on each series.
ORIGINAL_NEWEST = {"18.0": "18.0.1.3.0", "19.0": "19.0.1.4.3"}


@tagged("post_install", "-at_install")
class TestModule(TransactionCase):
    def test_installed_with_queue_job(self):
        module = self.env["ir.module.module"].search(
            [("name", "=", "deltatech_queue_job")]
        )
        self.assertEqual(module.state, "installed")
        self.assertIn("queue_job", module.dependencies_id.mapped("name"))

    def test_runner_crons_exist(self):
        crons = self.env["ir.cron"]._dqj_runner_crons()
        self.assertEqual(len(crons.filtered("active")), 2)
        self.assertTrue(all(c.code == "model._job_runner()" for c in crons))

    def test_version_is_above_the_original(self):
        """The original's newest release of this series (18.0.1.3.0, 19.0.1.4.3):
        this version, which Odoo prefixes with the running series, must be above it,
        or its migration scripts would never run on the original's databases."""
        module = self.env["ir.module.module"].search(
            [("name", "=", "deltatech_queue_job")]
        )
        self.assertTrue(module.latest_version.startswith(release.series + "."))
        self.assertGreater(
            parse_version(module.latest_version),
            parse_version(ORIGINAL_NEWEST[release.series]),
        )

    def test_cron_jobrunner_is_refused_beside_it(self):
        """queue_job_cron_jobrunner overrides the same queue.job methods without
        calling them: installing it beside this addon is refused with a clear message.
        The manifest has no ``excludes`` (this addon installed beside it takes its
        place, see takeover.py)."""
        other = ensure_cron_jobrunner_record(self.env)
        module = self.env["ir.module.module"].search(
            [("name", "=", "deltatech_queue_job")]
        )
        self.assertFalse(module.exclusion_ids)
        with self.assertRaisesRegex(UserError, "incompatible"):
            other.button_install()
