# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

import logging

from psycopg2.extensions import TransactionRollbackError

from odoo import api, fields, models
from odoo.tools import SQL

from ..engine import transaction

_logger = logging.getLogger(__name__)

# Upserts tried, each in a fresh transaction, when other runners keep updating the
# same estimates (see _dqj_learn).
LEARN_ATTEMPTS = 3


class QueueJobDuration(models.Model):
    """How long a job of each job function takes, as the runners saw it.

    The runner reads every estimate once per run and does not start a job that would
    not end before its deadline (under the cron: before Odoo's watchdog kills the
    worker); it writes them back once per run, in one statement. Kept apart from
    ``queue.job.function``, which only holds the functions someone configured.
    """

    _name = "queue.job.duration"
    _description = "Queue Job Duration Estimate"
    _order = "name"
    _log_access = False

    name = fields.Char(
        string="Job Function",
        required=True,
        readonly=True,
        help="The job function, as queue_job names it (<model>.method).",
    )
    seconds = fields.Float(
        string="Estimated Seconds",
        readonly=True,
        help="The longest run of a job of this function in the latest runner "
        "execution that ran one, or halfway down to it from the previous estimate "
        "when that was longer.",
    )

    def init(self):
        """One estimate per job function: the upsert of _dqj_learn() relies on it
        (ON CONFLICT (name)). A unique index rather than a declared constraint:
        18.0 declares those in ``_sql_constraints``, which 19.0 ignores (with a
        warning) for ``models.Constraint``, which 18.0 lacks; nothing writes the
        table but that upsert, so no user ever sees a constraint's message. Named as
        18.0 named the constraint (whose index it is), so that databases that have
        it keep it."""
        res = super().init()
        self.env.cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS queue_job_duration_name_uniq "
            "ON queue_job_duration (name)"
        )
        return res

    @api.model
    def _dqj_estimates(self):
        """``{job function: seconds}``, in one query."""
        records = self.sudo().search_fetch([], ["name", "seconds"])
        return {record.name: record.seconds for record in records}

    @api.model
    def _dqj_learn(self, durations, policy=transaction.SAVEPOINTS_ONLY):
        """Fold a run's longest duration per job function into the estimates.

        An estimate follows a longer duration at once (a slow job must not be
        started late again) and comes down halfway to a shorter one, so that one
        slow run does not hold a function back forever. One statement: an upsert,
        since runners in other transactions may learn the same function at the same
        moment; rows in name order, so two runners never wait on each other in turn.

        Odoo cursors run at REPEATABLE READ: a row another runner updated after this
        transaction's snapshot cannot be updated, PostgreSQL raises a serialization
        failure. Under a ``policy`` that commits (the caller committed its work: this
        transaction holds nothing else) the upsert is tried again in a fresh
        transaction, and committed; in a savepoint of the caller's transaction, this
        run's durations are not learnt (the next run's are). Returns whether they
        were learnt.
        """
        # A job stored without its function (raw SQL) has nothing to learn about.
        known = sorted((name, seconds) for name, seconds in durations.items() if name)
        if not known:
            return True
        rows = SQL(", ").join(
            SQL("(%s, %s)", name, round(seconds, 3)) for name, seconds in known
        )
        upsert = SQL(
            "INSERT INTO queue_job_duration AS known (name, seconds) VALUES %s "
            "ON CONFLICT (name) DO UPDATE SET seconds = "
            "GREATEST(EXCLUDED.seconds, (known.seconds + EXCLUDED.seconds) / 2)",
            rows,
        )
        # In the caller's snapshot, a lost race is lost again: one try.
        for _attempt in range(LEARN_ATTEMPTS if policy.renews_snapshot else 1):
            try:
                # Committing, the transaction holds nothing else: a failure rolls it
                # back whole (a fresh snapshot for the next try), no savepoint needed.
                with policy.attempt(self.env.cr, TransactionRollbackError):
                    self.env.cr.execute(upsert, log_exceptions=False)
            except TransactionRollbackError:
                continue
            policy.commit(self.env.cr)
            self.invalidate_model(["name", "seconds"])
            return True
        _logger.info("job durations of this run not learnt: %s", dict(known))
        return False
