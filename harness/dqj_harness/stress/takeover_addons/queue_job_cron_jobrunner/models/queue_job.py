# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
from odoo import api, models

from odoo.addons.queue_job.job import Job


class QueueJob(models.Model):
    _inherit = "queue.job"

    @api.model
    def _job_runner(self, commit=True):
        """Run the due pending jobs one at a time, in place of any runner below this
        one (no ``super()``), as queue_job_cron_jobrunner's runner does."""
        cr = self.env.cr
        while True:
            cr.execute(
                "SELECT uuid FROM queue_job WHERE state = 'pending' "
                "AND (eta IS NULL OR eta <= now() AT TIME ZONE 'UTC') "
                "ORDER BY priority, date_created LIMIT 1 "
                "FOR NO KEY UPDATE SKIP LOCKED"
            )
            row = cr.fetchone()
            if not row:
                return
            job = Job.load(self.env, row[0])
            job.set_started()
            job.store()
            job.perform()
            job.set_done()
            job.store()
            if commit:
                cr.commit()  # pylint: disable=invalid-commit
