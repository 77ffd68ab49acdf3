# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import models
from odoo.exceptions import UserError

from odoo.addons.queue_job.exception import RetryableJobError

from ..exception import NothingToDoJob


# safe_eval wraps every exception of the evaluated code in a ValueError, except
# UserError (and a few others): these variants pass through it unchanged and are still
# caught by the runner as the queue_job outcomes they are.
class ActionNothingToDoJob(NothingToDoJob, UserError):
    pass


class ActionRetryableJobError(RetryableJobError, UserError):
    pass


class IrActionsServer(models.Model):
    _inherit = "ir.actions.server"

    def _get_eval_context(self, action=None):
        """Server actions run as jobs (``action.with_delay().run()``) can say how
        their run ended, like job methods written in Python: raise
        ``NothingToDoJob("…")`` (done, nothing needed) or
        ``RetryableJobError("…", seconds=60)`` (try again later)."""
        eval_context = super()._get_eval_context(action=action)
        eval_context.update(
            NothingToDoJob=ActionNothingToDoJob,
            RetryableJobError=ActionRetryableJobError,
        )
        return eval_context
