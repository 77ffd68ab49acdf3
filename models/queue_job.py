# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

import logging
import os
import random
import time
import traceback
from contextlib import nullcontext
from datetime import datetime, timedelta

from psycopg2 import OperationalError, errorcodes

from odoo import api, fields, models
from odoo.service.model import PG_CONCURRENCY_ERRORS_TO_RETRY
from odoo.tools import SQL

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.job import CANCELLED, DONE, FAILED, PENDING, STARTED, Job

from ..engine import job_locks
from ..engine.runner import POSTPONED, STOP_BATCH, STOP_POOLER, BudgetedRunner
from ..engine.scopes import TRIGGERED_KEY, guarded_savepoint, rollback_on_error
from ..engine.settings import BOUNDS, read_settings
from ..engine.watchdog import cron_watchdog
from ..exception import NOTHING_TO_DO

_logger = logging.getLogger(__name__)

# Seconds before a job that hit a PostgreSQL concurrency error is tried again.
PG_RETRY = 5
QUERY_CANCELED = errorcodes.QUERY_CANCELED  # statement_timeout
# Attempts at enqueuing a job's dependents when they hit concurrency errors (as
# queue_job's controller).
DEPENDS_MAX_TRIES = 5
DEAD_WORKER_MESSAGE = (
    "Its worker died while the job ran (it is allowed to commit, so it ran outside its "
    "runner's transaction): requeued, counting one try."
)

# Every column Job._load_from_db_record() reads; the acquisition reads them with the
# lock.
LOAD_FIELDS = (
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
)


def _failure_values(err):
    """The failure values of a job that raised ``err`` (call it in the except block),
    in one place, as queue_job's controller builds them."""
    name = err.__class__.__name__
    if getattr(err, "__module__", None):
        name = f"{err.__module__}.{name}"
    message = err.args[0] if err.args else str(err)
    return {
        "exc_info": traceback.format_exc(),
        "exc_name": name,
        "exc_message": str(message),
    }


def _mark_started(job):
    """The job as started, in memory only: the runner's locks say it runs. (Not
    Job.set_started(): from queue_job 18.0.2 it also inserts the queue_job_lock row
    queue_job's own runner reads, which this runner neither needs nor maintains.)"""
    job.state = STARTED
    job.date_started = datetime.now()
    job.worker_pid = os.getpid()


def _concurrency_outcome(job, err):
    """Serialization failure, deadlock, lock not available: the job did nothing wrong;
    run it again shortly, without using one of its retries."""
    job.postpone(result=str(err.pgerror or err), seconds=PG_RETRY)
    job.set_pending(reset_retry=False)
    job.retry = max(job.retry - 1, 0)
    return POSTPONED, None


class QueueJob(models.Model):
    _inherit = "queue.job"

    dqj_running = fields.Boolean(
        string="Running Now",
        compute="_compute_dqj_running",
        search="_search_dqj_running",
        help="Job that a runner is processing at this moment: its row is locked by "
        "a worker's open transaction (the job stays 'pending' while it runs, so a "
        "crashed worker never leaves it stuck), or, for a job allowed to commit, "
        "'started' under its worker's session lock.",
    )
    dqj_committing = fields.Boolean(
        string="Started by a Runner (Allow Commit)",
        readonly=True,
        copy=False,
        help="Started by deltatech_queue_job's runner outside the runner's transaction "
        "(its job function allows commits). When its worker dies, the next run puts "
        "it back to pending.",
    )

    def init(self):
        res = super().init()
        job_locks.create_acquire_index(self.env.cr)
        job_locks.create_enqueue_guard(self.env.cr)
        return res

    # ------------------------------------------------------------------ acquisition
    # The SQL, its locks and why they are safe: see engine/job_locks.py.

    def _dqj_acquire(self, job_id=None, commit=False, capacities=None, rules=None):
        """Lock a job; return it (or an empty set) and the job_locks.Acquired (whether
        other runners were contending for the jobs it passed over, when).

        ``rules``: the channels' ChannelRules when the caller already has them, as the
        runner does once per batch; ``capacities`` replaces their capacities."""
        if rules is None:
            rules = self._dqj_channel_rules()
        self.env.flush_all()  # the SQL below must see the caller's pending writes
        acquired = job_locks.lock_job(
            self.env.cr, job_id, commit, capacities, rules, columns=LOAD_FIELDS
        )
        job = self.browse(acquired.job_id or [])
        if job:
            # Read by the acquisition, as fetch() would have read them (raw column
            # values are the cache's format), and fresher than anything cached: the
            # load (_dqj_load) and the runner's duration estimate cost no query.
            cache = self.env.cache
            cache.update(job, self._fields["channel_method_name"], [acquired.function])
            for name, value in acquired.values.items():
                cache.update(job, self._fields[name], [value])
        return job, acquired

    def _release(self, commit=True):
        """Give back this job, acquired and not processed: it stays pending, untouched
        (see engine/job_locks.py's release_job)."""
        self.ensure_one()
        job_locks.release_job(self.env.cr, commit)

    @api.model
    def _dqj_channel_rules(self):
        """Channel capacities, pauses and sequences: the settings' channels and, from
        queue_job 18.0.4 on, the channel records' options, counted together."""
        return read_settings(self.env).channel_rules.merged(
            self.env["queue.job.channel"]._dqj_channel_rules()
        )

    def _acquire(self, job_id=None, commit=False, capacities=None):
        return self._dqj_acquire(job_id, commit, capacities)[0]

    @api.model
    def _acquire_one_job(self, commit=False, capacities=None):
        """Lock and return the next eligible job, in queue order, or an empty set.

        ``capacities``: channel capacities (``{channel: n}``) when the caller already
        read the settings, as the runner does once per batch. ``commit``: the caller
        commits after each job, as runners do; a failed attempt may then roll the
        transaction back. By default a savepoint keeps the caller's work.
        """
        return self._acquire(commit=commit, capacities=capacities)

    def _acquire_specific_job(self, job_id=None, commit=False, capacities=None):
        """Lock and return job ``job_id`` (default: this record) if it can run now.

        Empty when it is not pending, not due yet, or being processed elsewhere.
        """
        if job_id is None:
            self.ensure_one()
            job_id = self.id
        return self._acquire(job_id=job_id, commit=commit, capacities=capacities)

    @api.model
    def _count_eligible_jobs(self):
        """Pending jobs that are due now (locked ones included): exact up to
        job_locks.EXACT_COUNT_LIMIT, an estimate above (see _dqj_count_pending)."""
        return self._dqj_count_pending()[0]

    @api.model
    def _dqj_count_pending(self):
        """``(count, estimated)`` of the pending jobs due now: see
        job_locks.count_eligible (bounded, whatever the backlog)."""
        self.flush_model(["state", "eta"])
        return job_locks.count_eligible(self.env.cr)

    def _compute_dqj_running(self):
        running = job_locks.running_job_ids(self.env.cr) if self.ids else set()
        for job in self:
            job.dqj_running = job.id in running

    def _search_dqj_running(self, operator, value):
        if operator not in ("=", "!="):
            raise NotImplementedError(f"Operator {operator} not supported")
        positive = (operator == "=") == bool(value)
        ids = list(job_locks.running_job_ids(self.env.cr))
        return [("id", "in" if positive else "not in", ids)]

    # ------------------------------------------------------------------ processing
    # A job goes through four named steps: load, perform, outcome, store. An ordinary
    # job runs in a savepoint of its runner's transaction, which holds its lock, and may
    # not commit; a job whose function allows commits runs outside it (see
    # engine/job_locks.py for the locks of both).

    def _process(self, commit=False, commit_later=False):
        """Run this (locked) job and store its outcome; return 'done', 'failed' or
        'postponed'.

        ``commit``: the job's transaction is committed after it (a runner; the lock
        lasts until then), or, with ``commit_later``, by the caller, which adds its
        own writes first (the runner, its bookkeeping after the batch's last job).

        Queries for a plain job, committing: SAVEPOINT, one UPDATE with the outcome
        (the acquisition read the record; the commit releases the savepoint; the
        'started' state is never written: it would only be visible after a commit,
        which would release the lock). Without ``commit``, a RELEASE too.
        """
        self.ensure_one()
        job = self._dqj_load()
        if job is None:
            outcome = FAILED
        elif commit and self._dqj_allows_commit(job):
            outcome = self._dqj_process_committing(job)
        else:
            outcome = self._dqj_process_in_savepoint(job, released_by_commit=commit)
        self.env.flush_all()
        if commit and not commit_later:
            self.env.cr.commit()  # pylint: disable=invalid-commit
        return outcome

    def _dqj_load(self):
        """Step 1: the Job of this record; None when it cannot be loaded (its model or
        method is gone: an addon was uninstalled, a method renamed), in which case it is
        stored as failed, alone, instead of stopping every run at it."""
        # Read with the lock by the acquisition (_dqj_acquire); otherwise one query
        # for every column Job reads (Serialized fields are not prefetched with the
        # others by default: 'dependencies' would cost a second query).
        self.fetch(LOAD_FIELDS)
        try:
            return Job._load_from_db_record(self)
        except Exception as err:  # noqa: BLE001
            failure = _failure_values(err)
            _logger.error(
                "job %s cannot be loaded:\n%s", self.uuid, failure["exc_info"]
            )
            self.write({"state": FAILED, **failure})
            return None

    def _dqj_process_in_savepoint(self, job, released_by_commit=False):
        has_dependents = bool(self.dependencies.get("reverse_depends_on"))
        _mark_started(job)
        if not has_dependents:
            outcome, failure = self._dqj_perform(
                job, guarded_savepoint(self.env.cr, released_by_commit)
            )
            self._dqj_store_outcome(job, outcome, failure)
            return outcome
        # Enqueuing the dependents may hit a concurrency error (other runners finish
        # their parents at the same time): retried a few times, then the whole job is
        # rolled back and run again later, as for any concurrency error of its own.
        try:
            with self.env.cr.savepoint():
                outcome, failure = self._dqj_perform(
                    job, guarded_savepoint(self.env.cr)
                )
                self._dqj_store_outcome(job, outcome, failure)
                if outcome == DONE:
                    self._dqj_enqueue_dependents(job)
        except OperationalError as err:
            if err.pgcode not in PG_CONCURRENCY_ERRORS_TO_RETRY:
                raise
            self.env.cr.postcommit.data.pop(TRIGGERED_KEY, None)
            self.invalidate_recordset()
            outcome, failure = _concurrency_outcome(job, err)
            self._dqj_store_outcome(job, outcome, failure)
        return outcome

    def _dqj_process_committing(self, job):
        """A job allowed to commit: committed as 'started' under the session lock of
        its runner before it runs (so that it can write its own row and commit), its
        outcome stored and committed after."""
        cr = self.env.cr
        has_dependents = bool(self.dependencies.get("reverse_depends_on"))
        job_locks.hold_running_job(cr, self.id)
        try:
            _mark_started(job)
            self._dqj_store(job, dqj_committing=True)
            self.env.flush_all()
            cr.commit()  # pylint: disable=invalid-commit
            outcome, failure = self._dqj_perform(job, rollback_on_error(cr))
            self.invalidate_recordset()
            self._dqj_store_outcome(job, outcome, failure, dqj_committing=False)
            if outcome == DONE and has_dependents:
                try:
                    self._dqj_enqueue_dependents(job)
                except OperationalError:
                    # Its effects are committed: it is done. Its dependents stay
                    # waiting, as with queue_job's own runner in this case.
                    _logger.exception("dependents of job %s not enqueued", job.uuid)
            self.env.flush_all()
            cr.commit()  # pylint: disable=invalid-commit
        except Exception as err:
            # Storing the outcome failed: the job must not stay 'started' with its
            # lock released, or it would be requeued although it ran.
            cr.rollback()  # pylint: disable=invalid-commit
            _logger.exception("outcome of job %s could not be stored", job.uuid)
            self.invalidate_recordset()
            self.write(
                {"state": FAILED, "dqj_committing": False, **_failure_values(err)}
            )
            self.env.flush_all()
            cr.commit()  # pylint: disable=invalid-commit
            outcome = FAILED
        finally:
            job_locks.release_running_job(cr, self.id)
        return outcome

    def _dqj_perform(self, job, scope):
        """Step 2: run the job inside ``scope``; return its outcome and, for a
        failure, the failure values. The outcomes, as in queue_job's controller:

        - returned, or raised NothingToDoJob: done (what it wrote is kept);
        - RetryableJobError: postponed by the retry pattern (perform() turns it into
          FailedJobError once max_retries is reached);
        - serialization failure, deadlock, lock not available: postponed, without
          using a retry (the job did nothing wrong);
        - statement_timeout: postponed using a retry, so one that always times out
          fails;
        - anything else, a forbidden commit included: failed.
        """
        try:
            with scope:
                try:
                    job.perform()
                except NOTHING_TO_DO as err:
                    job.result = str(err) or None
            job.set_done()
            return DONE, None
        except RetryableJobError as err:
            job.postpone(result=str(err), seconds=err.seconds)
            job.set_pending(reset_retry=False)
            return POSTPONED, None
        except OperationalError as err:
            if err.pgcode in PG_CONCURRENCY_ERRORS_TO_RETRY:
                return _concurrency_outcome(job, err)
            if err.pgcode == QUERY_CANCELED and (
                not job.max_retries or job.retry < job.max_retries
            ):
                job.postpone(result=str(err.pgerror or err), seconds=PG_RETRY)
                job.set_pending(reset_retry=False)
                return POSTPONED, None
            return FAILED, _failure_values(err)
        except Exception as err:  # noqa: BLE001
            return FAILED, _failure_values(err)

    def _dqj_store_outcome(self, job, outcome, failure, **extra):
        """Steps 3 and 4: the outcome on the Job, then stored; a final failure calls
        the job's on_fail (queue_job 18.0.3+), in a savepoint of its own."""
        if outcome == FAILED:
            _logger.error("job %s failed:\n%s", job.uuid, failure["exc_info"])
            job.set_failed(**failure)
        self._dqj_store(job, **extra)
        if outcome == FAILED:
            self._dqj_on_fail(job, failure)

    def _dqj_store(self, job, **extra):
        """Write the Job on this record through queue_job's store path (its values and
        the models' ``_job_store_values`` hooks), in one UPDATE."""
        vals = job._store_values()
        vals.update(extra)
        record = self.with_context(_job_edit_sentinel=self.EDIT_SENTINEL)
        if vals.get("state") != FAILED:
            # Nothing tracked changes; skip mail tracking's bookkeeping.
            record = record.with_context(tracking_disable=True)
        record.write(vals)

    def _dqj_on_fail(self, job, failure):
        on_fail = getattr(job, "on_fail", None)
        if on_fail is None:  # queue_job before 18.0.3
            return
        try:
            with guarded_savepoint(self.env.cr):
                on_fail(failure)
        except Exception:
            _logger.exception("on_fail of job %s failed", job.uuid)

    def _dqj_enqueue_dependents(self, job):
        """Set the jobs waiting on this one to pending, in a savepoint, retried on
        concurrency errors like queue_job's controller does."""
        self.env.flush_all()  # its SQL reads this job's stored state
        for attempt in range(DEPENDS_MAX_TRIES + 1):
            try:
                with self.env.cr.savepoint():
                    job.enqueue_waiting()
                return
            except OperationalError as err:
                if (
                    err.pgcode not in PG_CONCURRENCY_ERRORS_TO_RETRY
                    or attempt == DEPENDS_MAX_TRIES
                ):
                    raise
                time.sleep(random.uniform(0.0, 0.05 * 2**attempt))

    def _dqj_allows_commit(self, job):
        """The job function's "Allow Commit" (queue_job 18.0.3+, or this addon's field
        on earlier releases)."""
        allowed = getattr(job.job_config, "allow_commit", None)
        if allowed is None:
            allowed = self.env["queue.job.function"]._dqj_allow_commit(
                job.job_function_name
            )
        return bool(allowed)

    @api.model
    def _dqj_requeue_dead_jobs(self):
        """Jobs allowed to commit whose worker died while they ran: back to pending,
        once (see engine/job_locks.py). Returns their uuids."""
        uuids = job_locks.requeue_dead_committing_jobs(self.env.cr, DEAD_WORKER_MESSAGE)
        for uuid in uuids:
            _logger.warning("job %s re-queued: %s", uuid, DEAD_WORKER_MESSAGE)
        if uuids:
            self.invalidate_model()
        return uuids

    # ------------------------------------------------------------------ runner
    @api.model
    def _job_runner(
        self, batch_size=None, max_seconds=None, commit=True, source=None, job_ids=None
    ):
        """Process eligible jobs within a budget; the one entry point of every runner.

        ``batch_size`` / ``max_seconds`` default to the settings; with ``job_ids``,
        those jobs are processed (the ones that cannot run now are skipped) instead
        of the queue's next ones, and the batch size defaults to their number. Under
        the cron the run also ends before Odoo's watchdog would kill the worker,
        counted from the worker's last heartbeat (engine/watchdog.py), and the
        progress is reported to the cron so Odoo 18 does not count the run as a
        timeout. Returns
        the run's :class:`~odoo.addons.deltatech_queue_job.engine.runner.RunStats`.
        """
        settings = read_settings(self.env)
        if batch_size is None and job_ids is not None:
            batch_size = min(len(set(job_ids)), BOUNDS["batch_size"][2]) or 1
        in_cron = bool(self.env.context.get("cron_id"))
        source = source or ("cron" if in_cron else "manual")
        runner = BudgetedRunner(
            self,
            batch_size if batch_size is not None else settings.batch_size,
            max_seconds if max_seconds is not None else settings.max_seconds,
            commit=commit,
            source=source,
            watchdog=cron_watchdog() if in_cron else None,
            estimates=self.env["queue.job.duration"]._dqj_estimates(),
            rules=self._dqj_channel_rules(),
            job_ids=job_ids,
            async_commit=settings.async_commit,
        )
        return runner.run()

    @api.model
    def _set_synchronous_commit(self, on):
        """Switch this session's commits to (a)synchronous, from the next commit on.

        SET is transactional: committed at once, so that a rolled back acquisition
        does not undo it. The runner only calls it in commit mode, between jobs.
        """
        self.env.cr.execute(
            "SELECT set_config('synchronous_commit', %s, false)",
            ["on" if on else "off"],
        )
        self.env.cr.commit()  # pylint: disable=invalid-commit

    @api.model
    def _dqj_session_backend(self):
        """The server connection of the run's first transaction, committed at once:
        the run's first acquisition then runs in a transaction of its own, whose
        connection the runner compares with this one (see job_locks.session_backend).
        The runner only calls it in commit mode, before its first job."""
        backend = job_locks.session_backend(self.env.cr)
        self.env.cr.commit()  # pylint: disable=invalid-commit
        return backend

    def _after_run(self, stats, chain_has_time, commit, with_last_job=False):
        """Count what is left, leave a trigger when work is left, report to the cron,
        log the run, learn the jobs' durations.

        ``with_last_job``: the transaction still holds the batch's last job,
        uncommitted. The bookkeeping joins it, in a savepoint (its failure is logged
        and must not undo the job), and one commit ends both: one commit per run
        instead of three.
        """
        learnt = False
        try:
            with self.env.cr.savepoint() if with_last_job else nullcontext():
                self._dqj_record_run(stats, chain_has_time)
                if with_last_job:
                    learnt = (
                        self.env["queue.job.duration"]
                        .sudo()
                        ._dqj_learn(stats.durations, commit=False)
                    )
        except Exception:
            if not with_last_job:
                raise
            _logger.exception("the run's bookkeeping failed; its last job is kept")
        self.env.flush_all()
        if commit:
            self.env.cr.commit()  # pylint: disable=invalid-commit
        if not learnt:
            # In a transaction of its own when committing: see _dqj_learn.
            self.env["queue.job.duration"].sudo()._dqj_learn(stats.durations, commit)

    def _dqj_record_run(self, stats, chain_has_time):
        stats.pending_count, stats.pending_estimated = self._dqj_count_pending()
        in_cron = bool(self.env.context.get("ir_cron_progress_id"))
        # A run refused behind a transaction pooler leaves no trigger: the next run
        # would only refuse again, at once.
        if stats.pending_count and stats.stopped_by not in ("empty", STOP_POOLER):
            self._cron_continue(since=stats.started_at)
        if in_cron:
            # Reporting remaining work makes Odoo call the runner again at once (up to
            # 10 times, same worker, same heartbeat) -- only when the batch ended by
            # its size and the watchdog leaves room for another job; otherwise report
            # "fully done" and let the trigger above start a fresh cron pass, after a
            # fresh heartbeat.
            loop_again = stats.stopped_by == STOP_BATCH and chain_has_time
            self.env["ir.cron"]._notify_progress(
                done=stats.processed,
                remaining=stats.pending_count if loop_again else 0,
            )
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
        """Trigger every active runner cron (Odoo runs one cron once at a time, so N
        runner crons are N runners sharing the queue), now or at the moment(s) ``at``.

        Returns ``"triggered"``, ``"exists"`` when each cron already had a trigger at
        each of the moments ``at`` (only later moments are compared: a trigger due now
        may belong to a run in progress, so "now" is always triggered anew), or
        ``"nothing"`` when no runner cron is active.
        """
        crons = self._runner_crons().filtered("active")
        if not crons:
            return "nothing"
        if at is None:
            for cron in crons:
                cron._trigger()
            return "triggered"
        moments = {
            moment.replace(microsecond=0)
            for moment in ([at] if isinstance(at, datetime) else at)
        }
        planned = set(
            self.env["ir.cron.trigger"]
            .sudo()
            .search_fetch(
                [("cron_id", "in", crons.ids), ("call_at", "in", list(moments))],
                ["cron_id", "call_at"],
            )
            .mapped(lambda trigger: (trigger.cron_id.id, trigger.call_at))
        )
        outcome = "exists"
        for cron in crons:
            missing = sorted(m for m in moments if (cron.id, m) not in planned)
            if missing:
                cron._trigger(at=missing)
                outcome = "triggered"
        return outcome

    @api.model
    def _cron_continue(self, since=None):
        """Make every active runner cron go on with the queue now, in a fresh pass,
        unless a trigger that does so already waits; returns the crons triggered.

        A cron run that ends "fully done" deletes its triggers planned before the
        start of its own transaction (``ir.cron._reschedule_later``). So, for the cron
        running this run (if any), only a trigger planned at or after ``since`` (the
        start of this run's first transaction, which began after the cron's, by the
        database's clock) is sure to outlive this run; without ``since`` (the run
        took no job) its trigger is always left. For any other runner cron, a trigger
        due now is enough: it wakes the cron if it is idle, survives its run if it
        runs since before the trigger, and a run that began after the trigger runs
        this runner, which leaves its own continuation when work is left. The new
        trigger's moment is the database's clock to the microsecond:
        ``ir.cron._trigger()`` rounds "now" down to the second, which a cron run
        younger than a second would delete.

        One statement, whatever the backlog and the number of runners; the NOTIFY
        that ``ir.cron._trigger`` sends for a trigger due now wakes the cron workers.
        """
        self.env.cr.execute(
            SQL(
                """
                WITH runner AS (
                    SELECT id FROM ir_cron WHERE dqj_queue_runner AND active
                ), moment AS (
                    SELECT clock_timestamp() AT TIME ZONE 'UTC' AS now
                )
                INSERT INTO ir_cron_trigger
                    (cron_id, call_at, create_uid, write_uid, create_date, write_date)
                SELECT runner.id, moment.now, %(uid)s, %(uid)s, moment.now, moment.now
                FROM runner, moment
                WHERE NOT EXISTS (
                    SELECT 1 FROM ir_cron_trigger waiting
                    WHERE waiting.cron_id = runner.id
                      AND waiting.call_at <= moment.now
                      AND (runner.id IS DISTINCT FROM %(own)s
                           OR waiting.call_at >= %(since)s::timestamp)
                )
                RETURNING cron_id
                """,
                uid=self.env.uid,
                own=self.env.context.get("cron_id"),
                since=since,
            )
        )
        crons = self.env["ir.cron"].browse(row[0] for row in self.env.cr.fetchall())
        if crons:
            self.env.cr.postcommit.add(crons[:1].sudo()._notifydb)
        return crons

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
        done = self.env.cr.postcommit.data.setdefault(TRIGGERED_KEY, set())
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
