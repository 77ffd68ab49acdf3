# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import _, models
from odoo.exceptions import UserError

from ..engine.names import CRON_JOBRUNNER, MODULE


class IrModuleModule(models.Model):
    _inherit = "ir.module.module"

    def button_install(self):
        """queue_job_cron_jobrunner overrides the same queue.job methods as this addon,
        without calling them: installing it beside this addon is refused. (This addon
        installed beside it takes its place instead, see takeover.py; the manifest
        has no ``excludes``, which would refuse that too.)"""
        res = super().button_install()
        if self.search_count(
            [("name", "=", CRON_JOBRUNNER), ("state", "=", "to install")]
        ):
            raise UserError(
                _(
                    'Modules "%(module)s" and "%(other)s" are incompatible: '
                    "%(module)s already runs the job queue (it replaced %(other)s).",
                    module=MODULE,
                    other=CRON_JOBRUNNER,
                )
            )
        return res
