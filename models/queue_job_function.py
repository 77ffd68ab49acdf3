# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import api, fields, models, tools

from odoo.addons.queue_job.models.queue_job_function import (
    QueueJobFunction as UpstreamQueueJobFunction,
)

ALLOW_COMMIT_HELP = (
    "Allows the job to commit transactions during execution. deltatech_queue_job's "
    "runner then commits the job as 'started' under a lock of its worker's session "
    "and runs it outside the runner's transaction: the job may commit, and write its "
    "own job record, without waiting on itself. It runs once, unless its worker dies "
    "mid-job: the job is then requeued (what it committed stays). Without this "
    "option a job's commit or rollback fails that job alone."
)


class QueueJobFunction(models.Model):
    _inherit = "queue.job.function"

    # queue_job 18.0.3 introduced "Allow Commit"; on earlier releases this addon
    # provides the same field, so that a site upgrading queue_job keeps its choices.
    if not hasattr(UpstreamQueueJobFunction, "allow_commit"):
        allow_commit = fields.Boolean(help=ALLOW_COMMIT_HELP)

    @api.model
    @tools.ormcache("name")
    def _dqj_allow_commit(self, name):
        """ "Allow Commit" of job function ``name`` (queue_job clears the cache when a
        job function changes)."""
        return bool(self.sudo().search([("name", "=", name)], limit=1).allow_commit)

    @api.model
    def _get_view(self, view_id=None, view_type="form", **options):
        # queue_job's own form shows the field from 18.0.3 on; before, this addon does.
        arch, view = super()._get_view(view_id, view_type, **options)
        if view_type == "form" and not arch.xpath("//field[@name='allow_commit']"):
            anchor = arch.xpath("//field[@name='edit_retry_pattern']")
            if anchor:
                node = arch.makeelement("field", {"name": "allow_commit"})
                anchor[0].addprevious(node)
        return arch, view
