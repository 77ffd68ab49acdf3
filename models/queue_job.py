# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

import logging
import os
import traceback
import zlib
from datetime import timedelta

from psycopg2 import OperationalError
from psycopg2.extensions import TransactionRollbackError

from odoo import api, fields, models
from odoo.service.model import PG_CONCURRENCY_ERRORS_TO_RETRY
from odoo.tools import SQL, index_exists

from odoo.addons.queue_job.exception import FailedJobError, RetryableJobError
from odoo.addons.queue_job.job import CANCELLED, DONE, FAILED, PENDING, Job

from ..exception import NothingToDoJob
from ..runner import POSTPONED, STOP_BATCH, BudgetedRunner
from .runner_settings import cron_time_cap, read_settings

_logger = logging.getLogger(__name__)

# Seconds before a job that hit a PostgreSQL concurrency error is tried again.
PG_RETRY = 5

# How often an acquisition that loses a REPEATABLE READ race is tried again before the
# runner gives up for this batch (each retry starts a fresh snapshot).
ACQUIRE_RETRIES = 10

# First key of the transaction-scoped advisory locks this addon takes. A job being
# processed holds (RUNNING_LOCK_NS, job id), which is how other sessions can see it is
# running without a committed 'started' state; a channel slot holds
# (hash of the channel, slot number) -- see _acquire_channel_slots().
RUNNING_LOCK_NS = 0x51D7  # arbitrary, constant: changing it breaks running servers

ACQUIRE_INDEX = "deltatech_queue_job_pending_acquire_index"

# What Job._load_from_db_record() reads, fetched in one query.
LOAD_FIELDS = [
    "uuid",
    "graph_uuid",
    "user_id",
    "company_id",
    "name",
    "model_name",
    "method_name",
    "records",
    "dependencies",
    "args",
    "kwargs",
    "state",
    "priority",
    "result",
    "exc_info",
    "date_created",
    "date_started",
    "date_enqueued",
    "date_done",
    "date_cancelled",
    "eta",
    "retry",
    "max_retries",
    "channel",
    "identity_key",
    "worker_pid",
]


def _channel_chain(channel):
    """``root.a.b`` -> ``["root", "root.a", "root.a.b"]`` (parents first)."""
    parts = (channel or "root").split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _channel_lock_key(channel):
    # A signed 32-bit key; collisions only make two channels share slots (stricter,
    # never looser), and keep clear of RUNNING_LOCK_NS.
    key = zlib.crc32(f"deltatech_queue_job:{channel}".encode()) & 0x7FFFFFFF
    return key if key != RUNNING_LOCK_NS else key + 1


class QueueJob(models.Model):
    _inherit = "queue.job"

    dqj_running = fields.Boolean(
        string="Running Now",
        compute="_compute_dqj_running",
        search="_search_dqj_running",
        help="Pending job that a runner is processing at this moment: its row is "
        "locked by a worker's open transaction. Nothing is committed while it runs, "
        "so a crashed worker never leaves a job stuck in 'started'.",
    )

    # ------------------------------------------------------------------ indexes
    def init(self):
        res = super().init()
        if not index_exists(self.env.cr, ACQUIRE_INDEX):
            # Serves _acquire_one_job(): a partial index over pending jobs in queue
            # order, so the first unlocked eligible job is found by an index scan that
            # stops at the first hit, whatever the size of the queue (no sort, no
            # sequential scan of done jobs).
            self.env.cr.execute(
                SQL(
                    "CREATE INDEX %s ON queue_job (priority, eta, date_created, id) "
                    "WHERE state = 'pending'",
                    SQL.identifier(ACQUIRE_INDEX),
                )
            )
        return res

    # ------------------------------------------------------------------ locks
    # All SQL that takes a lock on jobs lives in this section.
    #
    # A runner locks the row of the job it processes with FOR NO KEY UPDATE and keeps
    # the lock until the job's transaction commits: the job is done (or failed, or
    # postponed) in the same transaction that held the lock, so no other runner can
    # run it meanwhile, and a runner that dies mid-job leaves the row untouched
    # (rolled back, still 'pending') for the next one. SKIP LOCKED makes other runners
    # pass over locked rows instead of waiting, which is what lets any number of
    # runners share one queue. NO KEY UPDATE (not UPDATE) leaves foreign keys pointing
    # to the job (mail messages, followers) free to be inserted meanwhile.

    _ELIGIBLE = SQL(
        "state = 'pending' AND (eta IS NULL OR eta <= (now() AT TIME ZONE 'UTC'))"
    )

    def _acquire_sql(self, job_id=None, exclude_channels=()):
        conditions = [self._ELIGIBLE]
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
        # The CTE locks one row; the outer SELECT runs once, for that row only, and
        # takes the 'running' advisory lock that _compute_dqj_running() reads from
        # pg_locks. Ordered as the partial index ACQUIRE_INDEX.
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

    def _acquire(self, job_id=None, commit=True, capacities=None):
        """Lock and return the next eligible job (or job ``job_id``) or an empty set.

        Odoo cursors run at REPEATABLE READ: when another runner commits a change to
        the row after this transaction's snapshot (it just finished that job), the
        lock attempt raises a serialization failure instead of skipping. That only
        means "taken": start a fresh snapshot and look again, a bounded number of times.
        """
        if capacities is None:
            capacities = read_settings(self.env).channel_capacities
        blocked = []
        for _attempt in range(ACQUIRE_RETRIES):
            try:
                with self._acquire_guard(commit):
                    row = self._fetch_locked_row(job_id, blocked)
                    if row and capacities:
                        full = self._acquire_channel_slots(row[1], capacities)
                        if full:
                            # Undo the row lock (the savepoint) and look past the
                            # saturated channel.
                            raise _ChannelFull(full)
            except _ChannelFull as full:
                if job_id is not None:
                    return self.browse()
                blocked.append(full.channel)
                continue
            except TransactionRollbackError:
                _logger.debug("job acquisition lost a race, looking again")
                continue
            return self.browse(row[0]) if row else self.browse()
        _logger.info("no job acquired after %s attempts", ACQUIRE_RETRIES)
        return self.browse()

    def _fetch_locked_row(self, job_id, blocked):
        # A lost race is expected here (see _acquire): not worth an ERROR in the log.
        self.env.cr.execute(self._acquire_sql(job_id, blocked), log_exceptions=False)
        return self.env.cr.fetchone()

    def _acquire_guard(self, commit):
        """Scope of one acquisition attempt.

        With ``commit`` (a real runner) nothing is pending in the transaction at this
        point, so a failed attempt just rolls it back. Without (tests, callers that
        commit themselves) a savepoint keeps the caller's work; a savepoint is also
        what releases the row lock when the job's channel turns out to be full.
        """
        return _AcquireGuard(self.env.cr, commit)

    def _acquire_channel_slots(self, channel, capacities):
        """Take one slot in the job's channel and in each parent with a capacity.

        Slots are transaction-scoped advisory locks (channel key, slot number), held
        until the job's transaction ends, so the number of jobs running at once in a
        channel never exceeds its capacity across all runners and processes. Returns
        the first channel without a free slot, or None when all slots were taken.
        Slots already held by this transaction are taken again (advisory locks are
        re-entrant), so a runner never competes with itself.
        """
        for name in _channel_chain(channel):
            capacity = capacities.get(name)
            if capacity is None:
                continue
            key = _channel_lock_key(name)
            self.env.cr.execute(
                SQL(
                    "SELECT slot FROM generate_series(0, %s) AS slot "
                    "WHERE pg_try_advisory_xact_lock(%s, slot) LIMIT 1",
                    capacity - 1,
                    key,
                )
            )
            if not self.env.cr.fetchone():
                return name
        return None

    @api.model
    def _acquire_one_job(self, commit=True, capacities=None):
        """Lock and return the next eligible job, in queue order, or an empty set.

        ``capacities``: channel capacities (``{channel: n}``) when the caller already
        read the settings, as the runner does once per batch.
        """
        return self._acquire(commit=commit, capacities=capacities)

    def _acquire_specific_job(self, job_id=None, commit=True, capacities=None):
        """Lock and return job ``job_id`` (default: this record) if it can run now.

        Empty when it is not pending, not due yet, or being processed elsewhere.
        """
        if job_id is None:
            self.ensure_one()
            job_id = self.id
        return self._acquire(job_id=job_id, commit=commit, capacities=capacities)

    @api.model
    def _count_eligible_jobs(self):
        """Pending jobs that are due now (locked ones included)."""
        self.env.cr.execute(
            SQL("SELECT count(*) FROM queue_job WHERE %s", self._ELIGIBLE)
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _running_job_ids(self):
        """Ids of the jobs a runner is processing right now (see RUNNING_LOCK_NS)."""
        self.env.cr.execute(
            """
            SELECT objid::integer FROM pg_locks
            WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2
              AND granted
              AND database = (SELECT oid FROM pg_database
                              WHERE datname = current_database())
            """,
            (RUNNING_LOCK_NS,),
        )
        return {row[0] for row in self.env.cr.fetchall()}

    def _compute_dqj_running(self):
        running = self._running_job_ids() if self.ids else set()
        for job in self:
            job.dqj_running = job.id in running

    def _search_dqj_running(self, operator, value):
        if operator not in ("=", "!="):
            raise NotImplementedError(f"Operator {operator} not supported")
        positive = (operator == "=") == bool(value)
        ids = list(self._running_job_ids())
        return [("id", "in" if positive else "not in", ids)]

    # ------------------------------------------------------------------ processing
    def _process(self, commit=False):
        """Run this (locked) job in a savepoint and store its outcome.

        Queries for a plain job: the load of the record, SAVEPOINT, RELEASE, one
        UPDATE with the outcome (the 'started' state is never written: it would only
        be visible after a commit, which would release the lock). Returns the
        outcome: 'done', 'failed' or 'postponed'.
        """
        self.ensure_one()
        # One query for every column Job reads (Serialized fields are not prefetched
        # with the others by default: 'dependencies' would cost a second query).
        self.fetch(LOAD_FIELDS)
        job = Job._load_from_db_record(self)
        has_dependents = bool(self.dependencies.get("reverse_depends_on"))
        job.set_started()
        job.worker_pid = os.getpid()
        outcome = DONE
        try:
            with self.env.cr.savepoint():
                job.perform()
            job.set_done()
        except NothingToDoJob as err:
            job.set_done(result=str(err) or None)
        except RetryableJobError as err:
            # perform() turns it into FailedJobError once max_retries is reached.
            job.postpone(result=str(err), seconds=err.seconds)
            job.set_pending(reset_retry=False)
            outcome = POSTPONED
        except OperationalError as err:
            if err.pgcode not in PG_CONCURRENCY_ERRORS_TO_RETRY:
                outcome = self._job_failed(job, err)
            else:
                # Serialization failure, deadlock, lock not available: the job did
                # nothing wrong, its savepoint is rolled back; run it again shortly.
                job.postpone(result=str(err.pgerror or err), seconds=PG_RETRY)
                job.set_pending(reset_retry=False)
                job.retry = max(job.retry - 1, 0)
                outcome = POSTPONED
        except (FailedJobError, Exception) as err:  # noqa: BLE001
            outcome = self._job_failed(job, err)
        self._store_run(job, outcome)
        if outcome == DONE and has_dependents:
            # Its SQL reads this job's stored state.
            self.env.flush_all()
            job.enqueue_waiting()
        self.env.flush_all()
        if commit:
            self.env.cr.commit()  # pylint: disable=invalid-commit
        return outcome

    def _job_failed(self, job, err):
        exc_info = traceback.format_exc()
        _logger.error("job %s failed:\n%s", job.uuid, exc_info)
        name = err.__class__.__name__
        if getattr(err, "__module__", None):
            name = f"{err.__module__}.{name}"
        job.set_failed(
            exc_info=exc_info,
            exc_name=name,
            exc_message=getattr(err, "name", None) or str(err),
        )
        return FAILED

    def _store_run(self, job, outcome):
        """Write the outcome of a run on the job, in one UPDATE."""
        vals = {
            "state": job.state,
            "date_started": job.date_started,
            "date_done": job.date_done or False,
            "exec_time": job.exec_time or False,
            "result": str(job.result) if job.result else False,
            "retry": job.retry,
            "exc_name": job.exc_name or False,
            "exc_message": job.exc_message or False,
            "exc_info": job.exc_info or False,
            "eta": job.eta or False,
            "worker_pid": job.worker_pid or False,
        }
        record = self
        if outcome != FAILED:
            # Nothing tracked changes on success; skip mail tracking's bookkeeping.
            record = self.with_context(tracking_disable=True)
        record.write(vals)

    # ------------------------------------------------------------------ runner
    @api.model
    def _job_runner(self, batch_size=None, max_seconds=None, commit=True, source=None):
        """Process eligible jobs within a budget; the one entry point of every runner.

        ``batch_size`` / ``max_seconds`` default to the settings. Under the cron the
        budget is also capped below ``limit_time_real_cron``, and the progress is
        reported to the cron so Odoo 18 does not count the run as a timeout. Returns
        the run's :class:`~odoo.addons.deltatech_queue_job.runner.RunStats`.
        """
        settings = read_settings(self.env)
        in_cron = bool(self.env.context.get("cron_id"))
        source = source or ("cron" if in_cron else "manual")
        runner = BudgetedRunner(
            self,
            batch_size if batch_size is not None else settings.batch_size,
            max_seconds if max_seconds is not None else settings.max_seconds,
            commit=commit,
            source=source,
            cap=cron_time_cap() if in_cron else None,
            capacities=settings.channel_capacities,
        )
        return runner.run()

    def _after_run(self, stats, chain_has_time, commit):
        """Leave a trigger when work is left, report to the cron, log the run."""
        in_cron = bool(self.env.context.get("ir_cron_progress_id"))
        if stats.pending_count and stats.stopped_by != "empty":
            self._cron_trigger()
        if in_cron:
            # Reporting remaining work makes Odoo call the runner again at once (up to
            # 10 times, same worker) -- only when the batch ended by its size and the
            # time cap leaves room; otherwise report "fully done" and let the trigger
            # above start a fresh cron run, under a fresh watchdog.
            loop_again = stats.stopped_by == STOP_BATCH and chain_has_time
            self.env["ir.cron"]._notify_progress(
                done=stats.processed,
                remaining=stats.pending_count if loop_again else 0,
            )
        if "queue.job.run" in self.env:
            self.env["queue.job.run"].sudo()._record_run(stats)
        if stats.processed:
            _logger.info(
                "queue runner (%s): %s processed (%s done, %s failed, %s postponed), "
                "%s pending, %.2fs",
                stats.source,
                stats.processed,
                stats.done,
                stats.failed,
                stats.postponed,
                stats.pending_count,
                stats.time_elapsed,
            )
        self.env.flush_all()
        if commit:
            self.env.cr.commit()  # pylint: disable=invalid-commit

    # ------------------------------------------------------------------ triggers
    @api.model
    def _runner_crons(self):
        return (
            self.env["ir.cron"]
            .sudo()
            .with_context(active_test=False)
            .search([("dqj_queue_runner", "=", True)])
        )

    @api.model
    def _cron_trigger(self, at=None):
        """Trigger every runner cron (Odoo runs one cron once at a time, so N runner
        crons are N runners sharing the queue)."""
        for cron in self._runner_crons().filtered("active"):
            cron._trigger(at=at)

    def _ensure_cron_trigger(self):
        """Create the cron triggers these jobs need, at most one per moment per
        transaction: immediate for jobs due now, at the eta (rounded up to the minute,
        the precision of cron triggers) for delayed ones."""
        pending = self.filtered(lambda job: job.state == PENDING)
        if not pending:
            return
        now = fields.Datetime.now()
        moments = set()
        for job in pending:
            if not job.eta or job.eta <= now:
                moments.add(None)
            else:
                eta = job.eta
                rounded = eta.replace(second=0, microsecond=0)
                if rounded < eta:
                    rounded += timedelta(minutes=1)
                moments.add(rounded)
        done = self.env.cr.precommit.data.setdefault(
            "deltatech_queue_job.triggered", set()
        )
        todo = moments - done
        if not todo:
            return
        done |= todo
        if None in todo:
            self._cron_trigger()
            todo.discard(None)
        if todo:
            self._cron_trigger(at=sorted(todo))

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        records._cancel_superseded_failed_jobs()
        records._ensure_cron_trigger()
        return records

    def write(self, vals):
        res = super().write(vals)
        if "eta" in vals or vals.get("state") == PENDING:
            self._ensure_cron_trigger()
        return res

    # ------------------------------------------------------------------ housekeeping
    def _cancel_superseded_failed_jobs(self):
        """A new job with an identity key supersedes older failed ones with that key."""
        keyed = self.filtered("identity_key")
        if not keyed:
            return
        superseded = self.search(
            [
                ("identity_key", "in", list(set(keyed.mapped("identity_key")))),
                ("state", "=", FAILED),
                ("id", "not in", keyed.ids),
            ]
        )
        if superseded:
            superseded.button_cancelled()

    def _change_job_state(self, state, result=None):
        res = super()._change_job_state(state, result=result)
        if state == CANCELLED:
            # queue_job cancels the jobs waiting on a cancelled one with plain SQL,
            # without a cancellation date: autovacuum (which removes cancelled jobs by
            # date_cancelled) would never remove them. Stamp them.
            self._stamp_cancelled_jobs(self.mapped("graph_uuid"))
        return res

    @api.model
    def _stamp_cancelled_jobs(self, graph_uuids=None):
        query = SQL(
            "UPDATE queue_job SET date_cancelled = (now() AT TIME ZONE 'UTC') "
            "WHERE state = 'cancelled' AND date_cancelled IS NULL"
        )
        if graph_uuids is not None:
            graph_uuids = [uuid for uuid in graph_uuids if uuid]
            if not graph_uuids:
                return
            query = SQL("%s AND graph_uuid IN %s", query, tuple(graph_uuids))
        self.env.cr.execute(query)
        self.invalidate_model(["date_cancelled"])

    def autovacuum(self):
        # Cancelled jobs stored without a cancellation date (by queue_job's chain
        # cancellation, before this addon) get one now, so that they age out like the
        # others instead of piling up forever.
        self.env.cr.execute(
            "UPDATE queue_job SET date_cancelled = COALESCE(date_done, date_created) "
            "WHERE state = 'cancelled' AND date_cancelled IS NULL"
        )
        self.invalidate_model(["date_cancelled"])
        return super().autovacuum()


class _ChannelFull(Exception):
    def __init__(self, channel):
        super().__init__(channel)
        self.channel = channel


class _AcquireGuard:
    """Context manager for one acquisition attempt (see QueueJob._acquire_guard)."""

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
            # Release on success keeps the lock; rollback on failure releases it.
            return self.savepoint.__exit__(exc_type, exc, tb)
        if exc_type is not None and issubclass(
            exc_type, TransactionRollbackError | _ChannelFull
        ):
            self.cr.rollback()
        return False
