# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import fields, models


class IrCron(models.Model):
    _inherit = "ir.cron"

    dqj_queue_runner = fields.Boolean(
        string="Queue Job Runner",
        help="This cron runs deltatech_queue_job's budgeted runner. Creating a job "
        "triggers every active runner cron; Odoo runs each cron once at a time, so "
        "N runner crons are N runners sharing the queue.",
    )
