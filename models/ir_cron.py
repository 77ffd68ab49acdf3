# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import api, fields, models

from ..engine.names import MODULE
from ..engine.settings import check_int, read_settings

# The first runner cron (data/ir_cron.xml): the model of the copies.
RUNNER_TEMPLATE_XMLID = f"{MODULE}.cron_queue_job_runner"
# Copies made by the settings get XML ids in this module (noupdate), so that
# uninstalling the addon removes them with the crons of data/ir_cron.xml instead of
# leaving crons that call a method which no longer exists.
RUNNER_XMLID_PATTERN = "cron_queue_job_runner_{}"


class IrCron(models.Model):
    _inherit = "ir.cron"

    dqj_queue_runner = fields.Boolean(
        string="Budgeted Queue Runner",
        help="This cron runs deltatech_queue_job's budgeted runner. Creating a job "
        "triggers every active runner cron; Odoo runs each cron once at a time, so "
        "N runner crons are N runners sharing the queue when the server has N cron "
        "threads (--max-cron-threads); with fewer, they run one after the other.",
    )

    @api.model
    def _dqj_sync_runner_crons(self, count):
        """Keep exactly ``count`` runner crons active (the 'parallel runners' setting).

        The oldest runner crons stay active, archived ones are reactivated before new
        ones are made, the surplus is archived (not deleted: a cron may be running, and
        its history stays readable). Returns the active runner crons.
        """
        count = check_int("runner_count", count)
        crons = (
            self.sudo()
            .with_context(active_test=False)
            .search([("dqj_queue_runner", "=", True)], order="id")
        )
        keep, surplus = crons[:count], crons[count:]
        if surplus.filtered("active"):
            surplus.filtered("active").write({"active": False})
        if keep.filtered(lambda cron: not cron.active):
            keep.filtered(lambda cron: not cron.active).write({"active": True})
        missing = count - len(keep)
        if missing > 0:
            keep |= self._dqj_create_runner_crons(
                len(keep), missing, template=crons[:1]
            )
        return keep

    @api.model
    def _dqj_create_runner_crons(self, existing, missing, template):
        template = template or self.sudo().env.ref(RUNNER_TEMPLATE_XMLID)
        data = []
        number = existing
        for _i in range(missing):
            number += 1
            while self.env.ref(
                f"{MODULE}.{RUNNER_XMLID_PATTERN.format(number)}",
                raise_if_not_found=False,
            ):
                number += 1
            data.append(
                {
                    "xml_id": f"{MODULE}.{RUNNER_XMLID_PATTERN.format(number)}",
                    "noupdate": True,
                    "values": {
                        "name": f"Queue Job: budgeted runner ({number})",
                        "model_id": template.model_id.id,
                        "state": "code",
                        "code": template.code,
                        "dqj_queue_runner": True,
                        "user_id": template.user_id.id,
                        "interval_number": template.interval_number,
                        "interval_type": template.interval_type,
                        "priority": template.priority,
                        "active": True,
                    },
                }
            )
        return self.sudo()._load_records(data)

    @api.model
    def _dqj_reactivate_runner_crons(self):
        """Re-activate the runner crons the 'parallel runners' setting wants active
        but that are archived -- Odoo archives a cron that keeps failing, and an
        archived runner cron ignores its triggers. Creates none and archives none
        (saving the settings does). Returns the re-activated crons."""
        count = read_settings(self.env).runner_count
        crons = (
            self.sudo()
            .with_context(active_test=False)
            .search([("dqj_queue_runner", "=", True)], order="id")
        )
        archived = crons[:count].filtered(lambda cron: not cron.active)
        if archived:
            archived.write({"active": True})
        return archived
