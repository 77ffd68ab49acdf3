# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""queue_job's own jobrunner beside this addon's runners: whether it works this
database, and the enqueue guard that keeps it from running again a job this addon
took (see :func:`create_enqueue_guard`)."""

from odoo.tools import SQL

from odoo.addons.queue_job.jobrunner.runner import PG_ADVISORY_LOCK_ID

# queue_job's jobrunner elects one master per database with this session-level
# advisory lock, and enqueues jobs on the very connection that holds it (every 18.0
# release, 1.7 to 4.1). In pg_locks a bigint key reads as two oids, objsubid 1.
QUEUE_JOB_RUNNER_LOCK = (
    (PG_ADVISORY_LOCK_ID >> 32) & 0xFFFFFFFF,
    PG_ADVISORY_LOCK_ID & 0xFFFFFFFF,
)
ENQUEUE_GUARD = "deltatech_queue_job_enqueue_guard"


def _holds_queue_job_runner_lock(holder):
    """SQL: some session matching ``holder`` (SQL on pg_locks) holds the lock."""
    return SQL(
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND objsubid = 1 AND classid::bigint = %s AND objid::bigint = %s AND %s)",
        *QUEUE_JOB_RUNNER_LOCK,
        holder,
    )


def create_enqueue_guard(cr):
    """Make the jobrunner's enqueue of a job that is no longer due a no-op.

    queue_job's jobrunner keeps the jobs it was notified about in memory and enqueues
    one with ``UPDATE queue_job SET state = 'enqueued' ... WHERE uuid = %s``: no
    condition on the state. While a runner of this addon holds that job (row locked,
    still 'pending'), the UPDATE waits; once the runner commits the job done (or
    failed, or postponed), the UPDATE would overwrite that with 'enqueued' and
    ``/queue_job/runjob`` would run the job a second time.

    The trigger refuses (RETURN NULL: the row is left as it is) an 'enqueued' written
    by the jobrunner's session (the one holding its election lock) over a job that is
    not pending, or pending with an eta still in the future (postponed meanwhile: it
    would run early). ``runjob`` then finds the job not 'enqueued' and runs nothing.
    Nothing else changes: queue_job's own enqueue of a due pending job, an 'enqueued'
    written again over 'enqueued', and every other session's writes (the ORM,
    queue_job's tests writing any state) pass untouched.

    A refused UPDATE fires no AFTER trigger, so queue_job_notify sends nothing; the
    jobrunner is not left believing the job runs: the commit that moved the job away
    from 'pending' (or postponed it) notified it, and it re-reads the row then.
    """
    cr.execute(
        SQL(
            """
            CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF OLD.state = 'pending' AND (
                    OLD.eta IS NULL
                    OR OLD.eta <= (clock_timestamp() AT TIME ZONE 'UTC')
                ) THEN
                    RETURN NEW;
                END IF;
                IF %s THEN
                    RETURN NULL;
                END IF;
                RETURN NEW;
            END;
            $$
            """,
            SQL.identifier(ENQUEUE_GUARD),
            _holds_queue_job_runner_lock(SQL("pid = pg_backend_pid()")),
        )
    )
    cr.execute(
        "SELECT 1 FROM pg_trigger "
        "WHERE tgname = %s AND tgrelid = 'queue_job'::regclass",
        [ENQUEUE_GUARD],
    )
    if not cr.fetchone():
        # Only updates that move a job to 'enqueued' call the function at all.
        cr.execute(
            SQL(
                "CREATE TRIGGER %s BEFORE UPDATE OF state ON queue_job FOR EACH ROW "
                "WHEN (NEW.state = 'enqueued' AND OLD.state <> 'enqueued') "
                "EXECUTE FUNCTION %s()",
                SQL.identifier(ENQUEUE_GUARD),
                SQL.identifier(ENQUEUE_GUARD),
            )
        )


def drop_enqueue_guard(cr):
    cr.execute(
        SQL(
            "DROP TRIGGER IF EXISTS %s ON queue_job",
            SQL.identifier(ENQUEUE_GUARD),
        )
    )
    cr.execute(SQL("DROP FUNCTION IF EXISTS %s()", SQL.identifier(ENQUEUE_GUARD)))


def queue_job_runner_attached(cr):
    """True while queue_job's jobrunner works this database, from any server: its
    master holds the election lock on a connection to it."""
    cr.execute(
        SQL(
            "SELECT %s",
            _holds_queue_job_runner_lock(
                SQL(
                    "database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                )
            ),
        )
    )
    return cr.fetchone()[0]
