# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Every SQL statement that takes or reads a lock on jobs, in one place.

Which rows, which lock, and why a job cannot run twice:

- A runner locks the row of the job it processes with ``FOR NO KEY UPDATE`` and keeps
  the lock until the job's transaction commits. The job is done (or failed, or
  postponed) in the same transaction that held the lock, so no other runner can run it
  meanwhile; a runner that dies mid-job leaves the row as it was (rolled back, still
  'pending') for the next one, with none of the job's writes.
- ``SKIP LOCKED`` makes other runners pass over locked rows instead of waiting: that is
  what lets any number of runners share one queue without blocking each other.
- ``NO KEY UPDATE`` (not ``UPDATE``) leaves rows that reference the job (mail
  messages, followers) free to be inserted meanwhile.
- The index: a partial index over pending jobs, in queue order (``ACQUIRE_INDEX``), so
  finding the next job is an index scan that stops at the first unlocked eligible row,
  whatever the size of the queue; no sort, no scan of done jobs.
- While it holds a job, a runner also holds the transaction-scoped advisory lock
  ``(RUNNING_LOCK_NS, job id)``: other sessions read "running now" from ``pg_locks``
  without a 'started' state ever being committed (a crash would strand it).
- Channel capacities are advisory locks too, ``(channel key, slot number)``, held for
  the job's transaction: the number of jobs running at once in a channel never exceeds
  its capacity, across all runners and processes.
- queue_job's own jobrunner, if it also runs, must not run a job again after this
  addon took it: the enqueue guard (``ENQUEUE_GUARD``, a trigger) turns its stale
  "enqueue" of a job that is no longer due into a no-op. See create_enqueue_guard().
"""

import logging
import zlib

from psycopg2.extensions import TransactionRollbackError

from odoo.tools import SQL, index_exists

from odoo.addons.queue_job.jobrunner.runner import PG_ADVISORY_LOCK_ID

_logger = logging.getLogger(__name__)

ACQUIRE_INDEX = "deltatech_queue_job_pending_acquire_index"

# Arbitrary but constant: changing it makes running servers disagree on what "running"
# means.
RUNNING_LOCK_NS = 0x51D7

# How often an acquisition that loses a REPEATABLE READ race (or finds a channel full)
# looks again before giving up for this batch.
ACQUIRE_RETRIES = 10

ELIGIBLE = SQL(
    "state = 'pending' AND (eta IS NULL OR eta <= (now() AT TIME ZONE 'UTC'))"
)


def create_acquire_index(cr):
    if not index_exists(cr, ACQUIRE_INDEX):
        cr.execute(
            SQL(
                "CREATE INDEX %s ON queue_job (priority, eta, date_created, id) "
                "WHERE state = 'pending'",
                SQL.identifier(ACQUIRE_INDEX),
            )
        )


def drop_acquire_index(cr):
    cr.execute(SQL("DROP INDEX IF EXISTS %s", SQL.identifier(ACQUIRE_INDEX)))


def _compose_acquire_sql(job_id=None, exclude_channels=()):
    conditions = [ELIGIBLE]
    if job_id is not None:
        conditions.append(SQL("id = %s", job_id))
    for channel in exclude_channels:
        conditions.append(
            SQL(
                "(channel IS NULL OR (channel != %s AND channel NOT LIKE %s))",
                channel,
                channel.replace("_", r"\_").replace("%", r"\%") + ".%",
            )
        )
    # The CTE locks one row; the outer SELECT runs once, for that row only, and takes
    # the 'running' advisory lock. Ordered as ACQUIRE_INDEX.
    return SQL(
        """
        WITH next_job AS (
            SELECT id, channel FROM queue_job
            WHERE %s
            ORDER BY priority, eta, date_created, id
            LIMIT 1
            FOR NO KEY UPDATE SKIP LOCKED
        )
        SELECT id, channel, pg_advisory_xact_lock(%s, id) FROM next_job
        """,
        SQL(" AND ").join(conditions),
        RUNNING_LOCK_NS,
    )


_ACQUIRE_NEXT_SQL = _compose_acquire_sql()


def acquire_sql(job_id=None, exclude_channels=()):
    if job_id is None and not exclude_channels:
        return _ACQUIRE_NEXT_SQL  # the hot path, composed once
    return _compose_acquire_sql(job_id, exclude_channels)


def lock_job(cr, job_id=None, commit=True, capacities=None):
    """Lock the next eligible job (or job ``job_id``); return its id or None.

    Odoo cursors run at REPEATABLE READ: when another runner committed a change to the
    row after this transaction's snapshot (it just finished that job), the lock attempt
    raises a serialization failure instead of skipping. That only means "taken": start
    a fresh snapshot and look again, a bounded number of times.

    With ``commit`` (a real runner, which commits after each job) nothing is pending in
    the transaction here, so a failed attempt rolls it back. Without, a savepoint keeps
    the caller's work. Either way, rolling back is what releases the row lock when the
    job's channel turns out to be full.
    """
    blocked = []
    for _attempt in range(ACQUIRE_RETRIES):
        try:
            with _Attempt(cr, commit):
                # A lost race is expected here: not worth an ERROR in the log.
                cr.execute(acquire_sql(job_id, blocked), log_exceptions=False)
                row = cr.fetchone()
                if row and capacities:
                    full = take_channel_slots(cr, row[1], capacities)
                    if full:
                        raise _ChannelFull(full)
        except _ChannelFull as full:
            if job_id is not None:
                return None
            blocked.append(full.channel)
            continue
        except TransactionRollbackError:
            _logger.debug("job acquisition lost a race, looking again")
            continue
        return row[0] if row else None
    _logger.info("no job acquired after %s attempts", ACQUIRE_RETRIES)
    return None


def channel_chain(channel):
    """``root.a.b`` -> ``["root", "root.a", "root.a.b"]`` (parents first)."""
    parts = (channel or "root").split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def channel_lock_key(channel):
    # A 31-bit key; a collision only makes two channels share slots (stricter, never
    # looser). Kept clear of RUNNING_LOCK_NS.
    key = zlib.crc32(f"deltatech_queue_job:{channel}".encode()) & 0x7FFFFFFF
    return key if key != RUNNING_LOCK_NS else key + 1


def take_channel_slots(cr, channel, capacities):
    """Take one slot in the job's channel and in each parent that has a capacity.

    Returns the first channel without a free slot, or None when every slot was taken.
    Slots this transaction already holds are taken again (advisory locks are
    re-entrant), so a runner never competes with itself.
    """
    for name in channel_chain(channel):
        capacity = capacities.get(name)
        if capacity is None:
            continue
        cr.execute(
            SQL(
                "SELECT slot FROM generate_series(0, %s) AS slot "
                "WHERE pg_try_advisory_xact_lock(%s, slot) LIMIT 1",
                capacity - 1,
                channel_lock_key(name),
            )
        )
        if not cr.fetchone():
            return name
    return None


def running_job_ids(cr):
    """Ids of the jobs some runner holds right now."""
    cr.execute(
        """
        SELECT objid::integer FROM pg_locks
        WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2 AND granted
          AND database = (SELECT oid FROM pg_database
                          WHERE datname = current_database())
        """,
        (RUNNING_LOCK_NS,),
    )
    return {row[0] for row in cr.fetchall()}


def count_eligible(cr):
    """Pending jobs due now, locked ones included."""
    cr.execute(SQL("SELECT count(*) FROM queue_job WHERE %s", ELIGIBLE))
    return cr.fetchone()[0]


# ---------------------------------------------------------------- queue_job's jobrunner
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


class _ChannelFull(Exception):
    def __init__(self, channel):
        super().__init__(channel)
        self.channel = channel


class _Attempt:
    """The scope of one acquisition attempt (see lock_job)."""

    def __init__(self, cr, commit):
        self.cr = cr
        self.commit = commit
        self.savepoint = None

    def __enter__(self):
        if not self.commit:
            self.savepoint = self.cr.savepoint(flush=False)
            self.savepoint.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.savepoint is not None:
            # Released on success (the lock stays), rolled back on failure.
            return self.savepoint.__exit__(exc_type, exc, tb)
        if exc_type is not None and issubclass(
            exc_type, TransactionRollbackError | _ChannelFull
        ):
            self.cr.rollback()
        return False
