# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Every SQL statement that takes or releases a lock on jobs, in one place.

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
- The acquisition never waits on a lock: rows others hold are skipped, and the
  'running' lock is tried (``pg_try_advisory_xact_lock``), not waited for, while the
  row lock is held. A pending job whose 'running' lock another session holds (a job
  allowed to commit that queue_job's Requeue put back to pending while its worker
  still runs it) is passed over like a lost race; waiting there would block the
  runner for the whole job, and deadlock with that worker when it writes its row.
- Channel capacities are advisory locks too, ``(channel key, slot number)``, held for
  the job's transaction: the number of jobs running at once in a channel never exceeds
  its capacity, across all runners and processes.
- A job allowed to commit (its job function's "Allow Commit") cannot keep a row lock
  across its own commits, nor make itself wait on one when it writes its own row. Its
  runner takes the *session* advisory lock ``(RUNNING_LOCK_NS, job id)`` and commits the
  job as 'started' (flagged ``dqj_committing``) before running it; nothing takes a
  started job. It takes its channel slots as session locks too, so that the commit
  of 'started' does not free them: the job keeps its channel's capacity, and its
  place in a sequential channel (whose head rule also waits while the channel has
  such a started job), until its outcome is committed. The session locks are
  released after the outcome is committed, or by PostgreSQL when the worker's
  connection dies. A started, flagged job whose lock nobody
  holds therefore belongs to a dead worker: :func:`requeue_dead_committing_jobs` puts it
  back to pending, once (a second sweeper finds it no longer started).
- queue_job's own jobrunner, if it also runs, must not run a job again after this
  addon took it: see engine/jobrunner_guard.py.
- All of this assumes one PostgreSQL server connection per Odoo cursor, for the
  cursor's life: the committing jobs' session lock, Asynchronous Commit's session
  setting and Odoo's own LISTEN/NOTIFY outlive a transaction. A pooler in transaction
  mode (pgbouncer ``pool_mode = transaction``) breaks that. The acquisition reads
  ``pg_backend_pid()`` with the job, free; the runner compares it with the backend of
  the run's first transaction (:func:`session_backend`) and refuses to go on when
  they differ (see engine/runner.py).
"""

import logging
import zlib
from dataclasses import dataclass, field

from psycopg2.extensions import TransactionRollbackError

from odoo.tools import SQL
from odoo.tools.sql import create_index, drop_index

from .transaction import SAVEPOINTS_ONLY

_logger = logging.getLogger(__name__)

ACQUIRE_INDEX = "deltatech_queue_job_pending_queue_order_index"
# Earlier versions of this addon ordered (priority, eta, date_created, id): a job
# postponed by a retry then ran before older jobs of its priority. Dropped on upgrade.
_OLD_ACQUIRE_INDEXES = ("deltatech_queue_job_pending_acquire_index",)

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
    """The queue order of queue_job's own runner: priority, then creation. A job's eta
    only says when it may start, not where it stands in the queue (a due job postponed
    by a retry keeps its place among the jobs created before and after it)."""
    create_index(
        cr,
        ACQUIRE_INDEX,
        "queue_job",
        ["priority", "date_created", "id"],
        where="state = 'pending'",
    )
    for name in _OLD_ACQUIRE_INDEXES:
        drop_index(cr, name, "queue_job")


def drop_acquire_index(cr):
    for name in (ACQUIRE_INDEX, *_OLD_ACQUIRE_INDEXES):
        drop_index(cr, name, "queue_job")


def _channel_excluded(channel):
    """Jobs outside ``channel`` and its subchannels (a job without one is in root)."""
    if channel == "root":
        return SQL("FALSE")
    return SQL(
        "(channel IS NULL OR (channel != %s AND channel NOT LIKE %s))",
        channel,
        channel.replace("_", r"\_").replace("%", r"\%") + ".%",
    )


def _sequence_kept(channel):
    """In a sequential channel only its first pending job in queue order may start
    (whether due or not: a later job never overtakes it), and none while the channel
    has a failed job, as in queue_job's own runner. The channel's capacity of 1 (a
    slot lock) keeps it to one job at a time across runners.

    Nor while a job allowed to commit runs in it: committed as 'started', it is no
    longer pending, so the next job would be the head. Its session slot lock (see
    hold_running_job) already keeps that one waiting; this keeps the order even if
    the channel's capacity were raised meanwhile, and keeps the channel waiting while
    a dead worker's job is started, until the sweep requeues it (it runs first
    again)."""
    return SQL(
        """(channel IS DISTINCT FROM %(c)s OR (
            id = (SELECT head.id FROM queue_job head
                  WHERE head.state = 'pending' AND head.channel = %(c)s
                  ORDER BY head.priority, head.date_created, head.id LIMIT 1)
            AND NOT EXISTS (SELECT 1 FROM queue_job held
                            WHERE held.channel = %(c)s
                              AND (held.state = 'failed'
                                   OR (held.state = 'started'
                                       AND held.dqj_committing)))))""",
        c=channel,
    )


def _compose_acquire_sql(
    job_id=None, exclude_channels=(), exclude_ids=(), sequential=(), columns=()
):
    conditions = [ELIGIBLE]
    if job_id is not None:
        conditions.append(SQL("id = %s", job_id))
    if exclude_ids:
        conditions.append(SQL("id != ALL(%s)", list(exclude_ids)))
    conditions.extend(_channel_excluded(channel) for channel in exclude_channels)
    conditions.extend(_sequence_kept(channel) for channel in sorted(sequential))
    # The CTE locks one row; the outer SELECT runs once, for that row only, and
    # *tries* the 'running' advisory lock (in the CTE's WHERE it would be tried on
    # rows scanned and then skipped, and leave them looking "running"). Tried, never
    # waited for: the row lock is held here, and the session holding the 'running'
    # lock (a committing job's worker, see the module's docstring) may be about to
    # write that row: waiting would block this runner for its whole job, or
    # deadlock. False: lock_job gives the row back and looks further. Ordered as
    # ACQUIRE_INDEX. The job function comes along for the runner's duration
    # estimate, and ``columns`` for the job's load: no second query per job.
    return SQL(
        """
        WITH next_job AS (
            SELECT * FROM queue_job
            WHERE %s
            ORDER BY priority, date_created, id
            LIMIT 1
            FOR NO KEY UPDATE SKIP LOCKED
        )
        SELECT id, channel, channel_method_name, pg_try_advisory_xact_lock(%s, id),
               now() AT TIME ZONE 'UTC', pg_backend_pid()%s
        FROM next_job
        """,
        SQL(" AND ").join(conditions),
        RUNNING_LOCK_NS,
        SQL("").join(SQL(", %s", SQL.identifier(column)) for column in columns),
    )


_ACQUIRE_NEXT_SQL = {}


def acquire_sql(
    job_id=None, exclude_channels=(), exclude_ids=(), sequential=(), columns=()
):
    """The acquisition statement; its row: id, channel, channel_method_name, whether
    the 'running' lock was taken, the transaction's start (UTC), the server
    connection's backend pid, then ``columns``."""
    columns = tuple(columns)
    if job_id is None and not exclude_channels and not exclude_ids and not sequential:
        # The hot path, composed once per list of columns.
        if columns not in _ACQUIRE_NEXT_SQL:
            _ACQUIRE_NEXT_SQL[columns] = _compose_acquire_sql(columns=columns)
        return _ACQUIRE_NEXT_SQL[columns]
    return _compose_acquire_sql(
        job_id, exclude_channels, exclude_ids, sequential, columns
    )


def _first_eligible_id(cr, job_id, exclude_channels, exclude_ids, sequential):
    """The job the acquisition would lock, read without locking (this snapshot)."""
    conditions = SQL(" AND ").join(
        [ELIGIBLE]
        + ([SQL("id = %s", job_id)] if job_id is not None else [])
        + ([SQL("id != ALL(%s)", list(exclude_ids))] if exclude_ids else [])
        + [_channel_excluded(channel) for channel in exclude_channels]
        + [_sequence_kept(channel) for channel in sorted(sequential)]
    )
    cr.execute(
        SQL(
            "SELECT id FROM queue_job WHERE %s "
            "ORDER BY priority, date_created, id LIMIT 1",
            conditions,
        )
    )
    row = cr.fetchone()
    return row[0] if row else None


@dataclass(slots=True)
class Acquired:
    """What an acquisition got: ``job_id`` (None when nothing was locked) and
    ``contended``: True when it gave up on jobs that other runners were taking at that
    moment, so "nothing locked" does not mean "nothing left"."""

    job_id: int | None = None
    contended: bool = False
    # queue_job's channel_method_name (e.g. "<res.partner>.write"), read with the
    # lock for the runner's duration estimate: no second query per job.
    function: str | None = None
    # {column: value} of the columns asked for, read with the lock too.
    values: dict = field(default_factory=dict)
    # The start of the transaction that holds the lock, database clock, UTC.
    at: object = None
    # pg_backend_pid() of that transaction: the server connection it ran on.
    backend: int | None = None


def lock_job(
    cr, job_id=None, policy=SAVEPOINTS_ONLY, capacities=None, rules=None, columns=()
):
    """Lock the next eligible job (or job ``job_id``); return an :class:`Acquired`
    with the values of its ``columns``, read by the same statement.

    Odoo cursors run at REPEATABLE READ: when another runner committed a change to the
    row after this transaction's snapshot (it just finished that job), the lock attempt
    raises a serialization failure instead of skipping. That only means "taken": look
    again, a bounded number of times.

    Each attempt runs in the scope the transaction ``policy`` gives it. Committing
    after each job, a runner has nothing pending in the transaction here, so a failed
    attempt rolls it back, and the next attempt sees a fresh snapshot. For a caller
    that owns the transaction, a savepoint keeps the caller's work and the snapshot
    stays: the row that lost the race is looked up (without a lock) and passed over.
    Either way, rolling back is what releases the row lock when a channel is full, or
    when another session holds the job's 'running' lock (that job is then passed over
    like a lost race).

    ``rules`` (a ChannelRules): its paused channels are never taken from, its
    sequential ones keep their order; its capacities are used when ``capacities`` is
    not given.
    """
    paused = sorted(rules.paused) if rules else []
    sequential = rules.sequential if rules else ()
    if capacities is None and rules is not None:
        capacities = rules.capacities
    blocked = []
    lost = []
    for _attempt in range(ACQUIRE_RETRIES):
        try:
            with policy.attempt(cr, _NOT_TAKEN):
                # A lost race is expected here: not worth an ERROR in the log.
                sql = acquire_sql(job_id, paused + blocked, lost, sequential, columns)
                cr.execute(sql, log_exceptions=False)
                row = cr.fetchone()
                if row and not row[3]:
                    raise _RunningElsewhere(row[0])
                if row and capacities:
                    full = take_channel_slots(cr, row[1], capacities)
                    if full:
                        raise _ChannelFull(full)
        except _ChannelFull as full:
            if job_id is not None:
                return Acquired(contended=True)
            blocked.append(full.channel)
            continue
        except _RunningElsewhere as running:
            if job_id is not None:
                return Acquired(contended=True)
            lost.append(running.job_id)
            continue
        except TransactionRollbackError:
            _logger.debug("job acquisition lost a race, looking again")
            if not policy.renews_snapshot:
                taken = _first_eligible_id(
                    cr, job_id, paused + blocked, lost, sequential
                )
                if taken is None:
                    return Acquired(contended=True)
                lost.append(taken)
            continue
        if row:
            return Acquired(
                row[0],
                function=row[2],
                values=dict(zip(columns, row[6:], strict=True)),
                at=row[4],
                backend=row[5],
            )
        return Acquired(contended=bool(lost or blocked))
    _logger.info("no job acquired after %s attempts", ACQUIRE_RETRIES)
    return Acquired(contended=True)


def session_backend(cr):
    """The backend pid of the server connection this transaction runs on.

    Behind a pooler in transaction mode, two transactions of one cursor may run on
    different server connections: then the session state the engine relies on (the
    committing jobs' session lock, Asynchronous Commit's setting) is left on a
    connection that other clients get. The runner reads it once per run and compares
    it with each acquisition's (read by the acquisition itself, free).
    """
    cr.execute("SELECT pg_backend_pid()")
    return cr.fetchone()[0]


def hold_running_job(cr, job_id, channel=None):
    """Take the session-level 'running' lock of a job about to commit mid-run, and its
    channel slots as session locks too; return those slots (``[[key, slot], ...]``)
    for :func:`release_running_job`.

    Unlike the transaction-level ones taken at acquisition, they survive the job's
    commits: the job keeps its place in its channels (capacity, sequence) until its
    outcome is committed. PostgreSQL releases them when the connection ends, however
    it ends: a dead worker holds no slot. The slots are the ones this transaction
    took for the job (``pg_locks`` of this backend, for the keys of the job's channel
    and its parents; in a runner that commits, the transaction holds nothing else).
    No statement here waits: this session already holds each of these locks at
    transaction level, and advisory locks are re-entrant across levels.
    """
    keys = [channel_lock_key(name) for name in channel_chain(channel)]
    cr.execute(
        """
        SELECT pg_advisory_lock(%s, %s), ARRAY(
            SELECT ARRAY[held.key, held.slot]
            FROM (SELECT DISTINCT classid::integer AS key, objid::integer AS slot
                  FROM pg_locks
                  WHERE locktype = 'advisory' AND granted AND objsubid = 2
                    AND pid = pg_backend_pid()
                    AND classid::integer = ANY(%s)) held
            CROSS JOIN LATERAL pg_advisory_lock(held.key, held.slot)
            ORDER BY held.key, held.slot)
        """,
        (RUNNING_LOCK_NS, job_id, keys),
    )
    return cr.fetchone()[1]


def release_running_job(cr, job_id, slots=()):
    """Release what :func:`hold_running_job` took (call it after the outcome's
    commit: from then on another runner may take the channel's slot)."""
    cr.execute(
        """
        SELECT pg_advisory_unlock(%s, %s), ARRAY(
            SELECT pg_advisory_unlock(held.key, held.slot)
            FROM unnest(%s::integer[], %s::integer[]) AS held(key, slot))
        """,
        (
            RUNNING_LOCK_NS,
            job_id,
            [key for key, _slot in slots],
            [slot for _key, slot in slots],
        ),
    )


def requeue_dead_committing_jobs(cr, message):
    """Put back to pending the committing jobs of dead workers; return their uuids.

    A 'started' job flagged ``dqj_committing`` is held by the session lock of the
    worker running it (see :func:`hold_running_job`): when ``pg_try_advisory_xact_lock``
    gets that lock, its worker is gone. Rows another sweeper is updating are skipped
    (``SKIP LOCKED``), and the one that updates a row commits it as pending: each dead
    job is requeued once. The death counts as a try: past ``max_retries`` the job fails.
    Must not run while this session holds a committing job (advisory locks are
    re-entrant); the runner sweeps before its first job.
    """
    try:
        with cr.savepoint(flush=False):
            params = (message, RUNNING_LOCK_NS)
            cr.execute(_REQUEUE_DEAD_SQL, params, log_exceptions=False)
            return [row[0] for row in cr.fetchall()]
    except TransactionRollbackError:
        # Another sweeper changed one of those rows since this snapshot: it requeued
        # them (or its worker finished them); nothing to do here.
        return []


_REQUEUE_DEAD_SQL = """
        UPDATE queue_job SET
            state = CASE WHEN max_retries > 0 AND retry + 1 >= max_retries
                         THEN 'failed' ELSE 'pending' END,
            retry = retry + 1,
            dqj_committing = false,
            date_started = NULL,
            worker_pid = NULL,
            exc_name = CASE WHEN max_retries > 0 AND retry + 1 >= max_retries
                            THEN 'WorkerDied' ELSE exc_name END,
            exc_message = %s
        WHERE id IN (
            SELECT id FROM queue_job
            WHERE state = 'started' AND dqj_committing
            FOR NO KEY UPDATE SKIP LOCKED
        ) AND pg_try_advisory_xact_lock(%s, id)
        RETURNING uuid
"""


def release_waiting_children(cr):
    """Set to pending the jobs waiting on parents that are all done; return their ids.

    A finished parent releases its children itself (queue_job's ``enqueue_waiting``),
    after its outcome is committed, in a fresh transaction: under REPEATABLE READ a
    parent releasing in its own uncommitted transaction sees a sibling finished by
    another runner at the same moment still pending, and the sibling sees it pending
    too, so neither releases the child and no concurrency error says so. Releasing
    after the commit, the parent that commits last sees them all done. This sweep is
    the safety net for what that cannot cover (a worker that died between its commit
    and the release, a release that kept failing) and heals databases that hold
    children lost before that fix: the runner runs it with its dead-job sweep.

    The same rule as ``enqueue_waiting``: a child in ``wait_dependencies`` whose
    ``depends_on`` parents found in its graph are all ``done``. Children another
    session is updating are skipped (``SKIP LOCKED``): that session is releasing (or
    cancelling) them; one changed since this snapshot raises a serialization failure,
    absorbed here: the next sweep looks again.
    """
    try:
        with cr.savepoint(flush=False):
            cr.execute(_RELEASE_WAITING_SQL, log_exceptions=False)
            return [row[0] for row in cr.fetchall()]
    except TransactionRollbackError:
        return []


_RELEASE_WAITING_SQL = """
        UPDATE queue_job SET state = 'pending'
        FROM (
            SELECT child.id, array_agg(parent.state) AS parent_states
            FROM queue_job child
            JOIN LATERAL json_array_elements_text(
                child.dependencies::json->'depends_on'
            ) parent_uuid ON true
            JOIN queue_job parent
              ON parent.graph_uuid = child.graph_uuid AND parent.uuid = parent_uuid
            WHERE child.id IN (
                SELECT id FROM queue_job WHERE state = 'wait_dependencies'
                FOR NO KEY UPDATE SKIP LOCKED
            )
            GROUP BY child.id
        ) waiting
        WHERE queue_job.id = waiting.id
          AND 'done' = ALL(waiting.parent_states)
          AND queue_job.state = 'wait_dependencies'
        RETURNING queue_job.id
"""


def store_failure(cr, job_id, failure):
    """The last resort when a job's failure cannot be stored through the ORM (a
    ``_job_store_values`` hook or queue_job's failure message that raises, a value
    PostgreSQL refuses): the row, still locked by this runner, says 'failed' with the
    error, so that the job is not run again and again. Plain columns, strings without
    NUL characters (the one value a text column refuses): it cannot fail."""
    values = {
        key: (failure.get(key) or "").replace("\x00", "")
        for key in ("exc_name", "exc_message", "exc_info")
    }
    cr.execute(
        """
        UPDATE queue_job SET state = 'failed', dqj_committing = false,
            exc_name = %(exc_name)s, exc_message = %(exc_message)s,
            exc_info = %(exc_info)s
        WHERE id = %(id)s
        """,
        dict(values, id=job_id),
    )


def release_job(cr, policy):
    """Give back a job locked by :func:`lock_job`, untouched, as the transaction
    ``policy`` does.

    Committing after each job, the transaction holds nothing but that acquisition
    (the previous job was committed): rolling it back releases the row lock, the
    'running' lock and the channel slots, and another runner may take the job at
    once. In a caller's transaction they last until the caller ends it. The job stays
    pending either way.
    """
    policy.rollback(cr)


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


class _ChannelFull(Exception):
    def __init__(self, channel):
        super().__init__(channel)
        self.channel = channel


class _RunningElsewhere(Exception):
    """The locked row's 'running' lock is held by another session."""

    def __init__(self, job_id):
        super().__init__(job_id)
        self.job_id = job_id


# What makes an acquisition attempt take nothing; the policy's scope of the attempt
# undoes it (see lock_job).
_NOT_TAKEN = (TransactionRollbackError, _ChannelFull, _RunningElsewhere)
