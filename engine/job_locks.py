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
"""

import logging
import zlib
from typing import NamedTuple

from psycopg2.extensions import TransactionRollbackError

from odoo.tools import SQL, index_exists

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
    # the 'running' advisory lock. Ordered as ACQUIRE_INDEX. The job function comes
    # along for the runner's duration estimate (no second query per job).
    return SQL(
        """
        WITH next_job AS (
            SELECT id, channel, channel_method_name FROM queue_job
            WHERE %s
            ORDER BY priority, eta, date_created, id
            LIMIT 1
            FOR NO KEY UPDATE SKIP LOCKED
        )
        SELECT id, channel, channel_method_name, pg_advisory_xact_lock(%s, id)
        FROM next_job
        """,
        SQL(" AND ").join(conditions),
        RUNNING_LOCK_NS,
    )


_ACQUIRE_NEXT_SQL = _compose_acquire_sql()


def acquire_sql(job_id=None, exclude_channels=()):
    if job_id is None and not exclude_channels:
        return _ACQUIRE_NEXT_SQL  # the hot path, composed once
    return _compose_acquire_sql(job_id, exclude_channels)


class LockedJob(NamedTuple):
    id: int
    function: str  # queue_job's channel_method_name, e.g. "<res.partner>.write"


def lock_job(cr, job_id=None, commit=True, capacities=None):
    """Lock the next eligible job (or job ``job_id``); return a :class:`LockedJob`
    (its id and job function) or None.

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
        return LockedJob(row[0], row[2]) if row else None
    _logger.info("no job acquired after %s attempts", ACQUIRE_RETRIES)
    return None


def release_job(cr, commit):
    """Give back a job locked by :func:`lock_job`, untouched.

    With ``commit`` the transaction holds nothing but that acquisition (the previous
    job was committed): rolling it back releases the row lock, the 'running' lock and
    the channel slots, and another runner may take the job at once. Without, they
    last until the caller's transaction ends. The job stays pending either way.
    """
    if commit:
        cr.rollback()


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
