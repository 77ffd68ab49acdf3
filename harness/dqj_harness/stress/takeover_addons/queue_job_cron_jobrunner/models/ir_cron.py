# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
from odoo import fields, models


class IrCron(models.Model):
    _inherit = "ir.cron"

    queue_job_runner = fields.Boolean(
        help="A cron that runs queue jobs (queue_job_cron_jobrunner's flag)."
    )
