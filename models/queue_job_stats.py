# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import api, models
from odoo.tools import SQL

from odoo.addons.queue_job.job import FAILED, STATES

from ..engine import counts

# "Failed lately" for an uptime monitor: jobs whose last attempt started this long ago
# or less and failed.
FAILED_RECENTLY_SECONDS = 3600

RUN_FIELDS = (
    "source",
    "duration",
    "processed",
    "done",
    "failed",
    "postponed",
    "pending_count",
    "stopped_by",
)


class QueueJob(models.Model):
    _inherit = "queue.job"

    @api.model
    def _dqj_queue_stats(self):
        """What an uptime monitor needs to know about the queue; processes nothing.

        Cheap whatever the backlog: every count is exact up to
        counts.EXACT_COUNT_LIMIT and PostgreSQL's estimate above, listed in
        ``estimated`` (see counts.bounded_count). ``oldest_pending_age`` is the
        number of seconds since the longest-waiting job due now became due (its eta,
        or its creation when it has none; see counts.oldest_eligible_age),
        ``None`` when no job is waiting; ``last_run`` is the latest runner execution
        kept in ``queue.job.run`` (runs that found an empty queue are not kept).
        """
        self.flush_model()
        cr = self.env.cr
        by_state = {}
        estimated = []
        for state, _label in STATES:
            by_state[state], guessed = counts.bounded_count(
                cr, SQL("SELECT 1 FROM queue_job WHERE state = %s", state)
            )
            if guessed:
                estimated.append(state)
        eligible, guessed = counts.count_eligible(cr)
        if guessed:
            estimated.append("pending_count")
        failed_recently, guessed = counts.bounded_count(
            cr,
            SQL(
                "SELECT 1 FROM queue_job WHERE state = %s "
                "AND date_started >= (now() AT TIME ZONE 'UTC') - %s * interval '1s'",
                FAILED,
                FAILED_RECENTLY_SECONDS,
            ),
        )
        if guessed:
            estimated.append("failed_last_hour")
        oldest_age = counts.oldest_eligible_age(cr)
        return {
            "counts": by_state,
            "pending_count": eligible,
            "running": len(counts.running_job_ids(cr)),
            "oldest_pending_age": (
                None if oldest_age is None else max(0, round(float(oldest_age), 1))
            ),
            "failed_last_hour": failed_recently,
            "estimated": estimated,
            "last_run": self._dqj_last_run_stats(),
        }

    @api.model
    def _dqj_last_run_stats(self):
        run = self.env["queue.job.run"].sudo().search([], limit=1)
        if not run:
            return None
        values = {name: run[name] for name in RUN_FIELDS}
        values["date_start"] = run.date_start.strftime("%Y-%m-%d %H:%M:%S")
        return values
