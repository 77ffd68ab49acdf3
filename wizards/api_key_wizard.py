# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import api, fields, models


class QueueJobApiKeyWizard(models.TransientModel):
    """Shows a freshly generated API key once.

    The key comes in the dialog's context (``default_api_key``) and is never written
    to this table: the database only keeps its hash (see api_key.py).
    """

    _name = "queue.job.api.key.wizard"
    _description = "Queue Job API Key (shown once)"

    api_key = fields.Char(string="API Key", readonly=True)

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            # explicit False: the context default must not fill it in either
            vals["api_key"] = False
        return super().create(vals_list)

    def action_done(self):
        """Close the dialog and reload the settings, which now say a key is set."""
        return {"type": "ir.actions.client", "tag": "reload"}
