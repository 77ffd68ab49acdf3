# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Tries of plain jobs whose worker died: counted outside the job's transaction.

A plain job runs in its runner's transaction, row locked and still 'pending'. When
the job kills its own process (the OOM killer, the prefork watchdog's SIGKILL,
``limit_time_cpu``'s SIGXCPU), PostgreSQL rolls everything back, its ``retry``
included: no try would ever be counted, and every run would take that job first
again, for ever, and never reach the jobs behind it.

So, right before a plain job is performed, its runner records the attempt in
``ATTEMPT_TABLE`` on a second connection, autocommitted: that row survives the
job's rollback. An attempt that ends (whatever the outcome the runner stores) has its
row deleted by the runner's next attempt, in the same statement, or at the end of the
run; :func:`sweep` removes the rows of jobs no longer pending (their runner died
after the job's commit). A job whose row counts earlier attempts therefore died with
its worker that many times.

One statement per plain job, on the side connection: the runner's own cursor keeps
its three. It commits asynchronously (``SET LOCAL synchronous_commit``, nothing that
outlives its transaction): the row is visible to every session at once, and the
synchronous commit of the job (or of the batch) flushes it to disk anyway.

The row also keeps the ``eta`` the job had when the attempt started: a postponed job
gets a new eta, so a row left by a runner that died between storing an outcome and its
next statement is not taken for a death.

Jobs allowed to commit are not recorded here: they are committed 'started' and the
dead-job sweep (job_locks.requeue_dead_committing_jobs) counts their worker's death.
"""

import logging

from psycopg2.errors import ForeignKeyViolation
from psycopg2.extensions import TransactionRollbackError

from odoo import sql_db
from odoo.tools import SQL

_logger = logging.getLogger(__name__)

ATTEMPT_TABLE = "dqj_job_attempt"

# Deaths in a row after which a job fails without running, whatever its max_retries
# (when max_retries is 0, unlimited, this is the only bound): a job that killed its
# worker that many times in a row will do it again. Kept below Odoo's cron
# thresholds: see queue.job._dqj_fail_after_deaths.
WORKER_DEATHS_LIMIT = 5


def create_table(cr):
    cr.execute(
        SQL(
            "CREATE TABLE IF NOT EXISTS %s ("
            " job_id integer PRIMARY KEY REFERENCES queue_job (id) ON DELETE CASCADE,"
            " tries integer NOT NULL,"
            " eta timestamp,"
            " owner integer)",
            SQL.identifier(ATTEMPT_TABLE),
        )
    )


def drop_table(cr):
    cr.execute(SQL("DROP TABLE IF EXISTS %s", SQL.identifier(ATTEMPT_TABLE)))


def sweep(cr):
    """Remove the rows of jobs that are no longer pending (their last attempt ended,
    or their runner died after committing it). Returns how many."""
    try:
        with cr.savepoint(flush=False):
            cr.execute(
                SQL(
                    "DELETE FROM %s attempt USING queue_job job "
                    "WHERE job.id = attempt.job_id AND job.state <> 'pending'",
                    SQL.identifier(ATTEMPT_TABLE),
                ),
                log_exceptions=False,
            )
            return cr.rowcount
    except TransactionRollbackError:
        # A runner removed or counted one of them since this snapshot (REPEATABLE
        # READ): the next sweep will do.
        return 0


# The attempt of %(job)s starts; the previous job of this log (%(previous)s) ended.
# The CTE's set_config is evaluated (it is read by the INSERT) and lasts until this
# statement's own commit, which is asynchronous; the DELETE always runs.
# Only a row this connection wrote (``owner``) is deleted: a postponed job that is due
# again may already be another runner's attempt.
_START_SQL = """
    WITH ended AS (
        DELETE FROM {table}
        WHERE job_id = %(previous)s AND job_id <> %(job)s
          AND owner = pg_backend_pid()
    ), asynchronous AS (
        SELECT set_config('synchronous_commit', 'off', true) AS setting
    )
    INSERT INTO {table} AS attempt (job_id, tries, eta, owner)
    SELECT %(job)s, 1, %(eta)s::timestamp, pg_backend_pid() FROM asynchronous
    ON CONFLICT (job_id) DO UPDATE SET
        tries = CASE
            WHEN attempt.job_id = %(previous)s
                 OR attempt.eta IS DISTINCT FROM EXCLUDED.eta THEN 1
            ELSE attempt.tries + 1 END,
        eta = EXCLUDED.eta,
        owner = EXCLUDED.owner
    RETURNING tries
"""


class AttemptLog:
    """The attempts of one run's plain jobs, on a connection borrowed from Odoo's
    pool at the run's first plain job and given back by :meth:`close`.

    The connection is in autocommit while borrowed (one round trip per attempt) and
    given back as the pool lends them; the only setting it changes is local to each
    statement's transaction.
    """

    def __init__(self, dbname):
        self.dbname = dbname
        self._cr = None
        self._previous = None  # the job of the last attempt started, ended since
        # Set by queue.job._dqj_fail_after_deaths: a job was failed for its deaths,
        # the run stops there (runner.STOP_WORKER_DIED).
        self.worker_died = False
        self._sql = _START_SQL.format(table=ATTEMPT_TABLE)

    def start(self, job_id, eta):
        """Record that the attempt of job ``job_id`` (stored ``eta``) starts; return
        how many attempts before it died with their worker."""
        if self._cr is None:
            self._cr = sql_db.db_connect(self.dbname).cursor()
            self._cr.connection.autocommit = True
        try:
            self._cr.execute(
                self._sql,
                {"job": job_id, "previous": self._previous, "eta": eta},
                log_exceptions=False,
            )
        except ForeignKeyViolation:
            # Other connections do not see the job: it was created in the runner's
            # own transaction, not committed yet (a caller that owns its transaction,
            # a test's cursor, whose commits are savepoints). Its attempt cannot
            # outlive it: a death takes the job itself along. Nothing to record.
            return 0
        tries = self._cr.fetchone()[0]
        self._previous = job_id
        return tries - 1

    def close(self):
        """The run ends: its last attempt has ended (its outcome is committed, or the
        caller is going down), its row goes; the connection goes back to the pool."""
        cr, self._cr = self._cr, None
        if cr is None:
            return
        try:
            if self._previous is not None:
                cr.execute(
                    SQL(
                        "DELETE FROM %s WHERE job_id = %s AND owner = pg_backend_pid()",
                        SQL.identifier(ATTEMPT_TABLE),
                        self._previous,
                    )
                )
        except Exception:
            # Left for the sweep; the run's outcome does not depend on it.
            _logger.warning("the run's last attempt row was not removed", exc_info=True)
        finally:
            self._previous = None
            cr.connection.autocommit = False
            cr.close()
