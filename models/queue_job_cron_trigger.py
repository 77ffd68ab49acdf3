# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The cron triggers that jobs need, on queue.job under the names that
queue_job_cron_jobrunner and the original deltatech_queue_job gave them (their
callers use them); the runner crons and their triggers are ir.cron's
(models/ir_cron.py)."""

from datetime import timedelta

from odoo import api, fields, models

from odoo.addons.queue_job.job import PENDING

from ..engine.scopes import TRIGGERED_KEY


class QueueJob(models.Model):
    _inherit = "queue.job"

    @api.model
    def _cron_trigger(self, at=None):
        """Trigger every active runner cron, now or at the moment(s) ``at``; returns
        ``"triggered"``, ``"exists"`` or ``"nothing"`` (see
        ir.cron._dqj_trigger_runners)."""
        return self.env["ir.cron"]._dqj_trigger_runners(at)

    def _ensure_cron_trigger(self):
        """Create the cron triggers these jobs need, at most one per moment per
        transaction: immediate for jobs due now, at the eta (rounded up to the minute,
        the precision of cron triggers) for delayed ones."""
        pending = self.filtered(lambda job: job.state == PENDING)
        if not pending:
            return
        now = fields.Datetime.now()
        moments = set()
        for job in pending:
            if not job.eta or job.eta <= now:
                moments.add(None)
            else:
                eta = job.eta
                rounded = eta.replace(second=0, microsecond=0)
                if rounded < eta:
                    rounded += timedelta(minutes=1)
                moments.add(rounded)
        self._dqj_trigger_once(moments)

    @api.model
    def _dqj_trigger_now(self):
        """Trigger the runner crons now, once per transaction (for jobs made
        pending by SQL, which the ORM's write would have triggered)."""
        self._dqj_trigger_once({None})

    @api.model
    def _dqj_trigger_once(self, moments):
        """Trigger the runner crons at ``moments`` (None: now) not yet triggered in
        this transaction (the set is kept in ``cr.postcommit.data``, see
        engine/scopes.py)."""
        done = self.env.cr.postcommit.data.setdefault(TRIGGERED_KEY, set())
        todo = moments - done
        if not todo:
            return
        done |= todo
        if None in todo:
            self._cron_trigger()
            todo.discard(None)
        if todo:
            self._cron_trigger(at=sorted(todo))
