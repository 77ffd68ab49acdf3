# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from datetime import datetime, timedelta

from odoo import api, fields, models

from ..engine.settings import read_settings

SOURCES = [
    ("cron", "Cron"),
    ("api", "External API"),
    ("button", "Process button"),
    ("thread", "Background thread"),
    ("manual", "Code"),
    ("test", "Test"),
]


class QueueJobRun(models.Model):
    """One execution of the budgeted runner, whatever started it."""

    _name = "queue.job.run"
    _description = "Queue Job Runner Execution"
    _order = "date_start desc, id desc"
    _log_access = False

    source = fields.Selection(SOURCES, required=True, readonly=True, index=True)
    date_start = fields.Datetime(string="Started", required=True, readonly=True)
    duration = fields.Float(string="Duration (s)", readonly=True, aggregator="avg")
    processed = fields.Integer(readonly=True)
    done = fields.Integer(readonly=True)
    failed = fields.Integer(readonly=True)
    postponed = fields.Integer(readonly=True)
    pending_count = fields.Integer(
        string="Pending After",
        readonly=True,
        aggregator="max",
        help="Jobs due now when the run ended: exact up to 1,000, PostgreSQL's "
        "estimate above (see Pending Estimated).",
    )
    pending_estimated = fields.Boolean(
        readonly=True,
        help="Over 1,000 jobs were due: Pending After is PostgreSQL's estimate, not "
        "a count (counting a large backlog at every run would slow every run down).",
    )
    stopped_by = fields.Selection(
        [
            ("empty", "Queue empty"),
            ("batch_size", "Batch size"),
            ("time", "Time budget"),
            ("contention", "Other runners"),
            ("worker_died", "Job failed: its worker died"),
            ("error", "Error"),
            ("pooler", "Transaction pooler"),
        ],
        readonly=True,
    )

    @api.model
    def _dqj_record_run(self, stats):
        """Log a runner execution (a RunStats). Runs that found nothing are not kept:
        a cron firing every minute on an idle queue would only add noise."""
        if not stats.processed and not stats.pending_count:
            return self.browse()
        # To the microsecond (fields.Datetime.now() drops them): the run's start is
        # when it began, not up to a second before, which would misplace it among
        # the runs and the jobs of the same second.
        started = datetime.now() - timedelta(seconds=stats.time_elapsed)
        return self.create(
            {
                "source": stats.source,
                "date_start": started,
                "duration": round(stats.time_elapsed, 3),
                "processed": stats.processed,
                "done": stats.done,
                "failed": stats.failed,
                "postponed": stats.postponed,
                "pending_count": stats.pending_count,
                "pending_estimated": stats.pending_estimated,
                "stopped_by": stats.stopped_by,
            }
        )

    @api.model
    def _gc_runs(self):
        """Cron: remove executions older than the history retention setting.

        Not ``_dqj_``-named: the code of that cron (data/queue_job_run_data.xml,
        noupdate) calls this name in every installed database."""
        days = read_settings(self.env).history_days
        limit = fields.Datetime.now() - timedelta(days=days)
        self.search([("date_start", "<", limit)]).unlink()
        return True
