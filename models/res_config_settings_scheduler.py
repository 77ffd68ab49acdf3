# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The settings page's help for an external scheduler (cron-job.org): this server's
URLs, read from ``web.base.url``."""

from odoo import api, fields, models

from ..engine.names import PROCESS_ROUTE, STATS_ROUTE


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    # Filled by get_values(): a compute is not evaluated for the form's new record.
    dqj_process_url = fields.Char(string="Process URL", readonly=True)
    dqj_stats_url = fields.Char(string="Statistics URL", readonly=True)

    @api.model
    def get_values(self):
        res = super().get_values()
        base_url = self.env["ir.config_parameter"].sudo().get_param("web.base.url")
        base_url = (base_url or "").rstrip("/")
        res["dqj_process_url"] = base_url + PROCESS_ROUTE
        res["dqj_stats_url"] = base_url + STATS_ROUTE
        return res
