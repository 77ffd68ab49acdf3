# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import tagged

from ..engine.api_key import api_key_configured
from ..engine.settings import PARAM_API_KEY_HASH
from .common import QueueJobCase


@tagged("post_install", "-at_install")
class TestNeutralize(QueueJobCase):
    def test_a_neutralized_copy_revokes_the_key_and_cancels_waiting_jobs(self):
        """Odoo's neutralization (``odoo neutralize``, Odoo.sh staging builds) runs
        data/neutralize.sql of every installed module."""
        self.env["ir.config_parameter"].sudo().set_param(
            PARAM_API_KEY_HASH, "pbkdf2_sha256$1$salt$hash"
        )
        waiting = self.enqueue(2)
        later = self.enqueue(1, eta=3600)
        failed = self.enqueue(1)
        failed.write({"state": "failed", "exc_info": "kept"})
        done = self.enqueue(1)
        done.write({"state": "done"})
        self.env.flush_all()
        queries = list(get_neutralization_queries(["deltatech_queue_job"]))
        self.assertEqual(len(queries), 1, "Odoo finds data/neutralize.sql")
        self.env.cr.execute(queries[0])
        self.env.invalidate_all()
        self.env.registry.clear_cache()
        self.assertEqual(set((waiting | later).mapped("state")), {"cancelled"})
        self.assertTrue(all((waiting | later).mapped("date_cancelled")))
        self.assertEqual((failed.state, failed.exc_info), ("failed", "kept"))
        self.assertEqual(done.state, "done")
        self.assertFalse(api_key_configured(self.env))
