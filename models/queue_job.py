# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

import logging
import os
import random
import time
import traceback
from contextlib import nullcontext
from datetime import datetime

from psycopg2 import OperationalError, errorcodes

from odoo import api, fields, models
from odoo.service.model import PG_CONCURRENCY_ERRORS_TO_RETRY
from odoo.tools import SQL, mute_logger

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.job import CANCELLED, DONE, FAILED, PENDING, STARTED, Job

from ..engine import attempts, counts, job_locks, jobrunner_guard, transaction
from ..engine.runner import (
    POSTPONED,
    STOP_BATCH,
    STOP_POOLER,
    BudgetedRunner,
    continuation_delay,
)
from ..engine.scopes import TRIGGERED_KEY, guarded_savepoint, rollback_on_error
from ..engine.settings import BOUNDS, read_settings
from ..engine.watchdog import process_watchdog
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
# As the dead-job sweep of jobs allowed to commit names the failure of a job whose
# worker died (job_locks._REQUEUE_DEAD_SQL).
WORKER_DIED = "WorkerDied"

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
        jobrunner_guard.create_enqueue_guard(self.env.cr)
        attempts.create_table(self.env.cr)
        return res

    # ------------------------------------------------------------------ acquisition
    # The SQL, its locks and why they are safe: see engine/job_locks.py.

    def _dqj_acquire(
        self,
        job_id=None,
        policy=transaction.SAVEPOINTS_ONLY,
        capacities=None,
        rules=None,
    ):
        """Lock a job; return it (or an empty set) and the job_locks.Acquired (whether
        other runners were contending for the jobs it passed over, when).

        ``policy``: the run's transaction policy (engine/transaction.py); by default
        a savepoint keeps the caller's work. ``rules``: the channels' ChannelRules
        when the caller already has them, as the runner does once per batch;
        ``capacities`` replaces their capacities."""
        if rules is None:
            rules = self._dqj_channel_rules()
        self.env.flush_all()  # the SQL below must see the caller's pending writes
        acquired = job_locks.lock_job(
            self.env.cr, job_id, policy, capacities, rules, columns=LOAD_FIELDS
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

    def _dqj_release(self, policy):
        """Give back this job, acquired and not processed: it stays pending, untouched
        (see engine/job_locks.py's release_job)."""
        self.ensure_one()
        job_locks.release_job(self.env.cr, policy)

    @api.model
    def _dqj_channel_rules(self):
        """Channel capacities, pauses and sequences: the settings' channels and, from
        queue_job 18.0.4 on, the channel records' options, counted together."""
        return read_settings(self.env).channel_rules.merged(
            self.env["queue.job.channel"]._dqj_channel_rules()
        )

    @api.model
    def _acquire_one_job(self, commit=False, capacities=None):
        """Lock and return the next eligible job, in queue order, or an empty set.

        ``capacities``: channel capacities (``{channel: n}``) when the caller already
        read the settings, as the runner does once per batch. ``commit``: the caller
        commits after each job, as runners do; a failed attempt may then roll the
        transaction back. By default a savepoint keeps the caller's work.
        """
        policy = transaction.for_commit(commit)
        return self._dqj_acquire(policy=policy, capacities=capacities)[0]

    def _acquire_specific_job(self, job_id=None, commit=False, capacities=None):
        """Lock and return job ``job_id`` (default: this record) if it can run now.

        Empty when it is not pending, not due yet, or being processed elsewhere.
        """
        if job_id is None:
            self.ensure_one()
            job_id = self.id
        policy = transaction.for_commit(commit)
        return self._dqj_acquire(job_id, policy, capacities)[0]

    @api.model
    def _dqj_count_pending(self):
        """``(count, estimated)`` of the pending jobs due now: see
        counts.count_eligible (bounded, whatever the backlog)."""
        self.flush_model(["state", "eta"])
        return counts.count_eligible(self.env.cr)

    def _compute_dqj_running(self):
        running = counts.running_job_ids(self.env.cr) if self.ids else set()
        for job in self:
            job.dqj_running = job.id in running

    def _search_dqj_running(self, operator, value):
        if operator not in ("=", "!="):
            raise NotImplementedError(f"Operator {operator} not supported")
        positive = (operator == "=") == bool(value)
        ids = list(counts.running_job_ids(self.env.cr))
        return [("id", "in" if positive else "not in", ids)]

    # ------------------------------------------------------------------ processing
    # A job goes through four named steps: load, perform, outcome, store. An ordinary
    # job runs in a savepoint of its runner's transaction, which holds its lock, and may
    # not commit; a job whose function allows commits runs outside it (see
    # engine/job_locks.py for the locks of both).

    def _process(self, commit=False):
        """Run this (locked) job and store its outcome; return 'done', 'failed' or
        'postponed'. ``commit``: the job's transaction is committed after it (the
        lock lasts until then); by default the caller's transaction goes on."""
        return self._dqj_process(transaction.for_commit(commit))

    def _dqj_process(self, policy, attempt_log=None):
        """Run this (locked) job and store its outcome, then end its transaction as
        the transaction ``policy`` does (engine/transaction.py); return 'done',
        'failed' or 'postponed'.

        ``attempt_log``: the runner's
        :class:`~odoo.addons.deltatech_queue_job.engine.attempts.AttemptLog` (runners
        that commit have one), where a plain job's attempt is recorded before it runs
        (outside this transaction, on its own connection), so that a worker's death
        counts as a try.

        Queries for a plain job, committing: SAVEPOINT, one UPDATE with the outcome
        (the acquisition read the record; the commit releases the savepoint; the
        'started' state is never written: it would only be visible after a commit,
        which would release the lock). Savepoints only, a RELEASE too.
        """
        self.ensure_one()
        has_dependents = self._dqj_has_dependents()
        job = self._dqj_load()
        if job is None:
            outcome = FAILED
        elif policy.lets_jobs_commit and self._dqj_allows_commit(job):
            # Commits its outcome and releases its children itself.
            return self._dqj_process_committing(job, has_dependents)
        else:
            outcome = None
            if attempt_log is not None:
                outcome = self._dqj_fail_after_deaths(job, attempt_log)
            if outcome is None:
                outcome = self._dqj_process_in_savepoint(job, policy, has_dependents)
        self.env.flush_all()
        # Children are released once their parent's 'done' is committed (see
        # _dqj_release_dependents); without a commit, _dqj_process_in_savepoint did.
        if policy.end_job(self.env.cr) and outcome == DONE and has_dependents:
            self._dqj_release_dependents(job)
        return outcome

    def _dqj_has_dependents(self):
        """Whether jobs wait on this one (read by the acquisition: no query)."""
        self.ensure_one()
        return bool((self.dependencies or {}).get("reverse_depends_on"))

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
            self._dqj_store_failure(None, failure)
            return None

    def _dqj_fail_after_deaths(self, job, attempt_log):
        """Record this plain job's attempt; count the earlier attempts that died
        with their worker as tries. Returns 'failed' when the job is failed for them
        (without running), None when it may run.

        The job fails once its ``retry`` reaches its ``max_retries``, or after
        ``attempts.WORKER_DEATHS_LIMIT`` deaths in a row whatever its max_retries
        (0, unlimited, included). That limit also keeps the runner crons active:
        under the cron a dying worker leaves Odoo's progress row counting a timeout;
        after ``CONSECUTIVE_TIMEOUT_FOR_FAILURE`` (3) of them Odoo records the next
        pass as failed without calling the runner, and archives a cron only after
        ``MIN_FAILURE_COUNT_BEFORE_DEACTIVATION`` (5) failed passes in a row spanning
        a week. One poison job makes at most 5 deaths, so at most one failed pass;
        the run that fails it stops right after (runner.STOP_WORKER_DIED), so that
        its pass ends as a success, which resets Odoo's count, before the next
        poison job can add to it.
        """
        deaths = attempt_log.start(self.id, job.eta)
        if not deaths:
            return None
        job.retry += deaths
        exhausted = bool(job.max_retries) and job.retry >= job.max_retries
        if not exhausted and deaths < attempts.WORKER_DEATHS_LIMIT:
            _logger.warning(
                "job %s: its worker died %s time(s) while running it, counted as "
                "tries (%s of %s): running it again",
                job.uuid,
                deaths,
                job.retry,
                job.max_retries or "unlimited",
            )
            return None
        message = (
            f"Its worker died {deaths} time(s) while running it (killed by the "
            "system, e.g. out of memory, by a time or CPU limit, or by the job "
            "itself): failed without running it again."
        )
        _logger.warning("job %s failed: %s", job.uuid, message)
        failure = {"exc_info": message, "exc_name": WORKER_DIED, "exc_message": message}
        self._dqj_store_failure(job, failure)
        self._dqj_on_fail(job, failure)
        attempt_log.worker_died = True
        return FAILED

    def _dqj_process_in_savepoint(self, job, policy, has_dependents=False):
        """An ordinary job: it runs, and its outcome is stored, in one savepoint
        (the job's), so that an outcome that cannot be stored is rolled back with the
        job's work (see _dqj_store_outcome). When the ``policy`` commits, the commit
        that follows releases the savepoint, and then the children.

        Without a commit to follow (the caller owns the transaction), the children
        of a job done are released here, in the caller's transaction: they may hit a
        concurrency error (other runners finish their parents at the same time),
        retried a few times, then the whole job is rolled back and run again later,
        as for any concurrency error of its own."""
        cr = self.env.cr
        _mark_started(job)
        savepoint = cr.savepoint()
        outcome, failure = self._dqj_perform(job, guarded_savepoint(cr, savepoint))
        outcome = self._dqj_store_outcome(job, outcome, failure, savepoint.rollback)
        if policy.commits:
            return outcome
        if outcome == DONE and has_dependents:
            try:
                self._dqj_enqueue_dependents(job)
            except Exception as err:  # noqa: BLE001
                savepoint.rollback()
                cr.postcommit.data.pop(TRIGGERED_KEY, None)
                if (
                    isinstance(err, OperationalError)
                    and err.pgcode in PG_CONCURRENCY_ERRORS_TO_RETRY
                ):
                    outcome, failure = _concurrency_outcome(job, err)
                else:
                    outcome, failure = FAILED, _failure_values(err)
                outcome = self._dqj_store_outcome(
                    job, outcome, failure, savepoint.rollback
                )
        savepoint.close(rollback=False)
        return outcome

    def _dqj_process_committing(self, job, has_dependents=False):
        """A job allowed to commit: committed as 'started' under the session locks of
        its runner (its 'running' lock and its channel slots) before it runs (so that
        it can write its own row and commit), its outcome stored and committed after,
        then the locks released (until then the job holds its channels), then its
        children released."""
        cr = self.env.cr
        slots = job_locks.hold_running_job(cr, self.id, self.channel)
        try:
            _mark_started(job)
            self._dqj_store(job, dqj_committing=True)
            self.env.flush_all()
            cr.commit()  # pylint: disable=invalid-commit
            outcome, failure = self._dqj_perform(job, rollback_on_error(cr))
            self.invalidate_recordset()
            # Its effects are committed: an outcome that cannot be stored rolls back
            # what it left uncommitted, and the job ends failed.
            outcome = self._dqj_store_outcome(
                job, outcome, failure, cr.rollback, dqj_committing=False
            )
            self.env.flush_all()
            cr.commit()  # pylint: disable=invalid-commit
        except Exception as err:  # noqa: BLE001
            # Storing 'started', or committing, failed: the job must not stay
            # 'started' with its lock released, or it would be requeued although it
            # may have run.
            failure = _failure_values(err)
            cr.rollback()  # pylint: disable=invalid-commit
            _logger.error(
                "job %s could not be stored:\n%s", job.uuid, failure["exc_info"]
            )
            self._dqj_store_failure(job, failure, dqj_committing=False)
            self.env.flush_all()
            cr.commit()  # pylint: disable=invalid-commit
            outcome = FAILED
        finally:
            job_locks.release_running_job(cr, self.id, slots)
        if outcome == DONE and has_dependents:
            self._dqj_release_dependents(job)
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

    def _dqj_store_outcome(self, job, outcome, failure, rollback, **extra):
        """Steps 3 and 4: the outcome on the Job, then stored (and flushed: its
        errors are caught here); a final failure calls the job's on_fail (queue_job
        18.0.3+), in a savepoint of its own. Returns the outcome stored.

        An outcome that cannot be stored (a value PostgreSQL refuses, a
        ``_job_store_values`` hook or queue_job's failure message that raises, a
        constraint) must not stop the queue: ``rollback`` (to the job's savepoint,
        or the transaction of a job allowed to commit) undoes the job's work and the
        half-written outcome, and the job ends failed with the storage error."""
        if outcome == FAILED:
            _logger.error("job %s failed:\n%s", job.uuid, failure["exc_info"])
            job.set_failed(**failure)
        try:
            self._dqj_store(job, **extra)
            self.env.flush_all()
        except Exception as err:  # noqa: BLE001
            stored = _failure_values(err)
            if outcome == FAILED:
                # The job's own failure is what its users look for: kept, with
                # the reason it could not be stored as it was.
                stored = dict(
                    failure,
                    exc_info=f"{failure['exc_info']}\nThis failure could not be "
                    f"stored as it was:\n{stored['exc_info']}",
                )
            rollback()
            self.env.cr.postcommit.data.pop(TRIGGERED_KEY, None)
            self.invalidate_recordset()
            _logger.error(
                "the outcome (%s) of job %s cannot be stored; the job is rolled back "
                "and failed:\n%s",
                outcome,
                job.uuid,
                stored["exc_info"],
            )
            job.result = None  # possibly what could not be stored
            self._dqj_store_failure(job, stored, **extra)
            outcome, failure = FAILED, stored
        if outcome == FAILED:
            self._dqj_on_fail(job, failure)
        return outcome

    def _dqj_store_failure(self, job, failure, **extra):
        """Store the job failed with ``failure``, whatever refuses it: through the
        ORM (queue_job's path, hooks included; a plain write without ``job``, which
        could not be loaded) in a savepoint, or, when even that fails, through
        job_locks.store_failure, plain SQL that cannot fail."""
        if job is not None:
            job.set_failed(**failure)
        try:
            with self.env.cr.savepoint():
                if job is None:
                    self.write({"state": FAILED, **extra, **failure})
                else:
                    self._dqj_store(job, **extra)
        except Exception:
            _logger.exception(
                "the failure of job %s cannot be stored through the ORM; stored "
                "without its hooks",
                job.uuid,
            )
            self.env.cr.postcommit.data.pop(TRIGGERED_KEY, None)
            self.invalidate_recordset()
            job_locks.store_failure(self.env.cr, self.id, failure)

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
        """Set the jobs waiting on this one to pending (queue_job's
        ``enqueue_waiting``), in a savepoint, retried on concurrency errors like
        queue_job's controller does; the jobs released get a cron trigger (the SQL
        creates none)."""
        self.env.flush_all()  # its SQL reads this job's stored state
        for attempt in range(DEPENDS_MAX_TRIES + 1):
            try:
                with self.env.cr.savepoint():
                    job.enqueue_waiting()
                    released = self.env.cr.rowcount
                    if released:
                        self._dqj_trigger_now()
                return released
            except OperationalError as err:
                if (
                    err.pgcode not in PG_CONCURRENCY_ERRORS_TO_RETRY
                    or attempt == DEPENDS_MAX_TRIES
                ):
                    raise
                time.sleep(random.uniform(0.0, 0.05 * 2**attempt))

    def _dqj_release_dependents(self, job):
        """Release the children of a job whose 'done' is committed, in a fresh
        transaction, committed (as queue_job's runner does): whichever of a child's
        parents commits last sees them all done and releases it (see
        job_locks.release_waiting_children for why not in the parent's own
        transaction). Idempotent: retried on concurrency errors (two parents
        releasing one child at once), each try in a fresh transaction; never
        raises: a child left waiting is released by the runner's sweep."""
        cr = self.env.cr
        for attempt in range(DEPENDS_MAX_TRIES + 1):
            try:
                # Two parents releasing one child at once is expected: the loser's
                # serialization failure is tried again here, not worth Odoo's "bad
                # query" ERROR (any other error is logged below).
                with mute_logger("odoo.sql_db"):
                    job.enqueue_waiting()
                if cr.rowcount:
                    self._dqj_trigger_now()
                self.env.flush_all()
                cr.commit()  # pylint: disable=invalid-commit
                return
            except Exception as err:
                cr.rollback()  # pylint: disable=invalid-commit
                if (
                    not isinstance(err, OperationalError)
                    or err.pgcode not in PG_CONCURRENCY_ERRORS_TO_RETRY
                    or attempt == DEPENDS_MAX_TRIES
                ):
                    _logger.exception(
                        "the jobs waiting on job %s could not be released now; the "
                        "runner's sweep will",
                        job.uuid,
                    )
                    return
                time.sleep(random.uniform(0.0, 0.05 * 2**attempt))

    @api.model
    def _dqj_release_waiting_jobs(self):
        """Jobs waiting on parents that are all done: released (see
        engine/job_locks.py's release_waiting_children), with a cron trigger.
        Returns their ids. Run by the runner once a minute; usable on its own."""
        ids = job_locks.release_waiting_children(self.env.cr)
        if ids:
            _logger.warning(
                "%s job(s) waiting on parents all done released: %s", len(ids), ids
            )
            self.invalidate_model(["state"])
            self._dqj_trigger_now()
        return ids

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
        # Attempts of plain jobs that ended since (see engine/attempts.py).
        attempts.sweep(self.env.cr)
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

        ``commit``: commit after each job (the runner crons, the API), or, false,
        savepoints only in the caller's transaction. See _dqj_run_batch. Returns
        the run's :class:`~odoo.addons.deltatech_queue_job.engine.runner.RunStats`.
        """
        return self._dqj_run_batch(
            transaction.for_commit(commit), batch_size, max_seconds, source, job_ids
        )

    @api.model
    def _dqj_run_batch(
        self, policy, batch_size=None, max_seconds=None, source=None, job_ids=None
    ):
        """One budgeted run under the transaction ``policy`` (engine/transaction.py);
        returns its :class:`~odoo.addons.deltatech_queue_job.engine.runner.RunStats`.

        ``batch_size`` / ``max_seconds`` default to the settings; with ``job_ids``,
        those jobs are processed (the ones that cannot run now are skipped) instead
        of the queue's next ones, and the batch size defaults to their number. Under
        the cron the run also ends before Odoo's watchdog would kill the worker,
        counted from the worker's last heartbeat (engine/watchdog.py), anywhere
        before the process's CPU limit (prefork's ``limit_time_cpu``), and the
        progress is reported to the cron so Odoo 18 does not count the run as a
        timeout.
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
            policy=policy.with_async_commit(settings.async_commit),
            source=source,
            watchdog=process_watchdog(in_cron),
            estimates=self.env["queue.job.duration"]._dqj_estimates(),
            rules=self._dqj_channel_rules(),
            job_ids=job_ids,
        )
        return runner.run()

    @api.model
    def _dqj_set_synchronous_commit(self, on):
        """Switch this session's commits to (a)synchronous, from the next commit on.

        SET is transactional: committed at once, so that a rolled back acquisition
        does not undo it. Only a runner that commits calls it, between jobs.
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
        Only a runner that commits calls it, before its first job."""
        backend = job_locks.session_backend(self.env.cr)
        self.env.cr.commit()  # pylint: disable=invalid-commit
        return backend

    def _dqj_after_run(self, stats, chain_has_time, policy):
        """Count what is left, leave a trigger when work is left, report to the cron,
        log the run, learn the jobs' durations; commit as the transaction ``policy``
        does.

        When the policy holds the batch's last job, uncommitted, the bookkeeping
        joins it, in a savepoint (its failure is logged and must not undo the job),
        and one commit ends both: one commit per run instead of three.
        """
        durations = self.env["queue.job.duration"].sudo()
        holds_job = policy.holds_last_job
        learnt = False
        cron_progress = None
        try:
            with self.env.cr.savepoint() if holds_job else nullcontext():
                cron_progress = self._dqj_record_run(stats, chain_has_time)
                if holds_job:
                    learnt = durations._dqj_learn(
                        stats.durations, transaction.SAVEPOINTS_ONLY
                    )
        except Exception:
            if not holds_job:
                raise
            _logger.exception("the run's bookkeeping failed; its last job is kept")
        self.env.flush_all()
        if cron_progress:
            # When committing, the report to the cron commits the run (one commit, on
            # either series).
            policy.report_cron_progress(self.env, *cron_progress)
        else:
            policy.commit(self.env.cr)
        if not learnt:
            # In a transaction of its own when committing: see _dqj_learn.
            durations._dqj_learn(stats.durations, policy)

    def _dqj_record_run(self, stats, chain_has_time):
        """Record the run; return the (done, remaining) to report to the cron that
        called the runner, None outside a cron."""
        stats.pending_count, stats.pending_estimated = self._dqj_count_pending()
        in_cron = bool(self.env.context.get("ir_cron_progress_id"))
        # A run refused behind a transaction pooler leaves no trigger: the next run
        # would only refuse again, at once.
        if stats.pending_count and stats.stopped_by not in ("empty", STOP_POOLER):
            self.env["ir.cron"]._dqj_continue_runners(
                since=stats.started_at, delay=continuation_delay(stats)
            )
        cron_progress = None
        if in_cron:
            # Reporting remaining work makes Odoo call the runner again at once (up to
            # 10 times, same worker, same heartbeat) -- only when the batch ended by
            # its size and the watchdog leaves room for another job; otherwise report
            # "fully done" and let the trigger above start a fresh cron pass, after a
            # fresh heartbeat.
            loop_again = stats.stopped_by == STOP_BATCH and chain_has_time
            cron_progress = (
                stats.processed,
                stats.pending_count if loop_again else 0,
            )
        self.env["queue.job.run"].sudo()._dqj_record_run(stats)
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
        return cron_progress

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        records._dqj_cancel_superseded_failed_jobs()
        records._ensure_cron_trigger()
        return records

    def write(self, vals):
        res = super().write(vals)
        if "eta" in vals or vals.get("state") == PENDING:
            self._ensure_cron_trigger()
        return res

    # ------------------------------------------------------------------ housekeeping
    def _dqj_cancel_superseded_failed_jobs(self):
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
            self._dqj_stamp_cancelled_jobs(self.mapped("graph_uuid"))
        return res

    @api.model
    def _dqj_stamp_cancelled_jobs(self, graph_uuids=None):
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

    def _dqj_date_undated_cancellations(self):
        # Cancelled jobs stored without a cancellation date (by queue_job's chain
        # cancellation, before this addon) get one now, so that they age out like the
        # others instead of piling up forever.
        self.env.cr.execute(
            "UPDATE queue_job SET date_cancelled = COALESCE(date_done, date_created) "
            "WHERE state = 'cancelled' AND date_cancelled IS NULL"
        )
        self.invalidate_model(["date_cancelled"])

    def autovacuum(self):
        """queue_job 18.0's garbage collector of old jobs (its cron calls it)."""
        self._dqj_date_undated_cancellations()
        return super().autovacuum()

    @api.autovacuum
    def _gc_old_jobs(self):
        """queue_job 19.0's garbage collector of old jobs (an autovacuum method).
        queue_job 18.0 has none: there this autovacuum only dates."""
        self._dqj_date_undated_cancellations()
        collect = getattr(super(), "_gc_old_jobs", None)
        return collect() if collect else None
