# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The budgeted runner: one loop for every way of starting work.

The cron, the API endpoint, the list-view buttons and the background thread all
call ``queue.job._job_runner(batch_size, max_seconds, ...)``, which builds a
:class:`BudgetedRunner` and returns its :class:`RunStats`. The model acquires,
stores and shows; this class decides when to stop.
"""

import logging
import time
from dataclasses import asdict, dataclass, field

from .settings import check_int
from .transaction import COMMIT_PER_JOB

_logger = logging.getLogger(__name__)

DONE = "done"
FAILED = "failed"
POSTPONED = "postponed"

STOP_EMPTY = "empty"
STOP_BATCH = "batch_size"
STOP_TIME = "time"
# Nothing could be locked, but only because other runners were taking those jobs (or
# their channels were full): work may be left, so a trigger is left too.
STOP_CONTENTION = "contention"
# A run stopped by contention that processed nothing met only full channels (or jobs
# other runners were taking): whoever holds them leaves its own continuation when it
# ends with work left (a trigger due now). Such a run's own continuation comes this
# many seconds later instead: a runner cron meeting a channel held by a long job
# reruns at most 60 / 5 = 12 times a minute, not back to back (hundreds of runs a
# minute). A trigger for later sends no NOTIFY, so it usually runs at the cron
# worker's next wake-up: another trigger due now, or its poll, once a minute.
CONTENTION_RETRY_SECONDS = 5
# Something raised out of the loop (not a job: jobs fail alone); the run is recorded.
STOP_ERROR = "error"
# A job was failed because its worker died while running it, too many times (see
# queue.job._dqj_fail_after_deaths): the run ends there, so that a cron pass that
# fails poison jobs ends as a success; the trigger it leaves runs the jobs behind.
STOP_WORKER_DIED = "worker_died"
# The run's transactions ran on different server connections: a pooler in transaction
# mode is in front of PostgreSQL (see POOLER_MESSAGE). The run stops at once and
# leaves no trigger: every later run refuses the same way until the pooler is fixed.
STOP_POOLER = "pooler"

POOLER_MESSAGE = (
    "a connection pooler in transaction mode is in front of PostgreSQL: two "
    "transactions of one Odoo cursor ran on different server connections (backend "
    "%(first)s, then %(then)s). The queue runner needs one server connection per "
    "Odoo cursor (its committing jobs hold a session lock, Asynchronous Commit sets "
    "a session setting, Odoo's crons rely on LISTEN/NOTIFY): use the pooler's "
    "session mode (pgbouncer: pool_mode = session). The run stopped; no job was "
    "started on the switched connection."
)
# What the API and the buttons answer (the log has the backends).
POOLER_REFUSAL = (
    "Refused: a connection pooler in transaction mode is in front of PostgreSQL. "
    "The queue runner needs one server connection per Odoo cursor: use the pooler's "
    "session mode (pgbouncer: pool_mode = session). See the server log."
)

# Seconds between two looks, per process and database, for jobs allowed to commit
# whose worker died while they ran (queue.job._dqj_requeue_dead_jobs), and for jobs
# waiting on parents that are all done (queue.job._dqj_release_waiting_jobs). Both
# are rare and each look is one statement; once a minute keeps them off every run's
# bill.
DEAD_JOBS_SWEEP_INTERVAL = 60
_last_sweep = {}


@dataclass
class RunStats:
    """What one runner execution did; the API returns it as is."""

    source: str = "cron"
    processed: int = 0
    done: int = 0
    failed: int = 0
    postponed: int = 0
    skipped: int = 0  # selected jobs that could not run now (see job_ids)
    left: int = 0  # selected jobs not tried: the batch or the budget ran out
    # Pending jobs due now when the run ended: exact up to
    # counts.EXACT_COUNT_LIMIT, above it an estimate (pending_estimated).
    pending_count: int = 0
    pending_estimated: bool = False
    time_elapsed: float = 0.0
    stopped_by: str = STOP_EMPTY
    job_ids: list = field(default_factory=list)
    # {job function: longest run in seconds}, folded into the duration estimates
    durations: dict = field(default_factory=dict)
    # When the run's first acquisition began, by the database's clock (UTC): a
    # trigger planned after it outlives this run (see ir.cron._dqj_continue_runners).
    started_at: object = None

    def count(self, outcome):
        self.processed += 1
        if outcome == DONE:
            self.done += 1
        elif outcome == FAILED:
            self.failed += 1
        else:
            self.postponed += 1

    def as_dict(self):
        values = asdict(self)
        values.pop("job_ids")
        values.pop("durations")
        values.pop("started_at")
        values["time_elapsed"] = round(self.time_elapsed, 3)
        return values


def continuation_delay(stats):
    """Seconds from the end of the run ``stats`` to the runner crons' next pass, when
    work is left: at once, except after a run that met only jobs it could not take
    (see CONTENTION_RETRY_SECONDS)."""
    if stats.stopped_by == STOP_CONTENTION and not stats.processed:
        return CONTENTION_RETRY_SECONDS
    return 0


class BudgetedRunner:
    """Process eligible jobs until the batch size or the time budget is used up.

    :param job_model: ``queue.job`` model (its environment is the runner's)
    :param batch_size: maximum number of jobs taken
    :param max_seconds: time budget; a job whose estimated duration would take the
        run past it is not started, except the run's first job
    :param policy: how the run treats its cursor's transaction
        (engine/transaction.py): a commit after each job (the lock of a job lasts
        until its commit), or savepoints only in a caller's transaction
    :param watchdog: under the cron, the
        :class:`~odoo.addons.deltatech_queue_job.engine.watchdog.Watchdog` that kills
        the worker; a job that would not end before its deadline is never started,
        the first one included (but see :meth:`_fits`)
    :param estimates: ``{job function: seconds}``, the duration estimates (read once
        per run); a function without one is estimated by the run's mean duration
    :param rules: the channels' ChannelRules (capacities, pauses, sequences), read
        once for the run
    :param job_ids: process these jobs (each acquired on its own; one that is not
        pending, not due or held elsewhere is skipped) instead of the queue's next ones
    """

    def __init__(
        self,
        job_model,
        batch_size,
        max_seconds,
        policy=COMMIT_PER_JOB,
        source="cron",
        watchdog=None,
        estimates=None,
        rules=None,
        job_ids=None,
    ):
        self.model = job_model
        self.batch_size = check_int("batch_size", batch_size)
        self.max_seconds = check_int("max_seconds", max_seconds)
        self.policy = policy
        self.source = source
        self.watchdog = watchdog
        self.estimates = estimates or {}
        self.rules = rules
        self.job_ids = None if job_ids is None else sorted(set(job_ids))
        self.busy = 0.0
        self._contended = False
        # The backend pid of the run's first transaction (None without commits: the
        # run is one transaction), compared with each acquisition's.
        self._backend = None
        self._pooler = False
        # The policy of the last job processed: the run's report joins its
        # transaction when it left its commit to it (see _loop).
        self._last_job_policy = policy
        self.attempt_log = None  # see run()

    def run(self):
        stats = RunStats(source=self.source)
        start = time.monotonic()
        deadline = start + self.max_seconds
        if self.watchdog is not None:
            deadline = min(deadline, self.watchdog.deadline)
        self._sweep_dead_jobs(start)
        self.policy.start_batch(self.model)
        self._backend = self.policy.session_backend(self.model)
        self.attempt_log = self.policy.attempt_log(self.model.env.cr.dbname)
        try:
            try:
                self._loop(stats, deadline)
            except BaseException:
                # Whatever raised, the session gets its synchronous commits back and
                # the run is recorded (the exception still reaches the caller).
                self.policy.rollback(self.model.env.cr)
                stats.stopped_by = STOP_ERROR
                try:
                    self._finish(stats, start, failed_run=True)
                except Exception:
                    # The caller reports the original error; this one is its shadow.
                    _logger.warning(
                        "the failed run could not be recorded", exc_info=True
                    )
                raise
            self._finish(stats, start)
        finally:
            # After the last job's commit (_finish): its attempt has ended.
            if self.attempt_log is not None:
                self.attempt_log.close()
        return stats

    def _switched_connection(self, backend):
        """Whether this acquisition's transaction ran on another server connection
        than the run's first one: a pooler in transaction mode. Logged at ERROR."""
        if self._backend is None or backend is None or backend == self._backend:
            return False
        self._pooler = True
        _logger.error(POOLER_MESSAGE, {"first": self._backend, "then": backend})
        return True

    def _sweep_dead_jobs(self, now):
        # What the sweep finds is committed at once: for runners that commit only.
        if not self.policy.commits:
            return
        key = self.model.env.cr.dbname
        if now - _last_sweep.get(key, -DEAD_JOBS_SWEEP_INTERVAL) < (
            DEAD_JOBS_SWEEP_INTERVAL
        ):
            return
        _last_sweep[key] = now
        self.model._dqj_requeue_dead_jobs()
        self.model._dqj_release_waiting_jobs()
        self.model.env.cr.commit()  # pylint: disable=invalid-commit

    def _loop(self, stats, deadline):
        """Take and process jobs until the batch, the budget or the queue ends."""
        selection = None if self.job_ids is None else list(self.job_ids)
        while True:
            if stats.processed >= self.batch_size:
                stats.stopped_by = STOP_BATCH
                break
            if self._out_of_time(stats, deadline):
                stats.stopped_by = STOP_TIME
                break
            job = self._next_job(selection, stats)
            if self._pooler:
                stats.stopped_by = STOP_POOLER
                break
            if job is None:
                stats.stopped_by = STOP_CONTENTION if self._contended else STOP_EMPTY
                break
            if not job:
                continue  # a selected job that cannot run now
            function = job.channel_method_name
            if not self._fits(function, stats, deadline):
                # Released untouched: a fresh run (the trigger _dqj_after_run leaves)
                # starts it with time enough.
                job._dqj_release(self.policy)
                if selection is not None:
                    selection.insert(0, job.id)
                stats.stopped_by = STOP_TIME
                break
            job_start = time.monotonic()
            # The batch's last job may leave its commit to the run's report
            # (_finish), one commit less per run; not a job with dependents: they
            # are released after its own commit.
            policy = self.policy
            if stats.processed + 1 >= self.batch_size and not job._dqj_has_dependents():
                policy = self.policy.for_last_job()
            self._last_job_policy = policy
            outcome = job._dqj_process(policy, self.attempt_log)
            stats.job_ids.append(job.id)
            stats.count(outcome)
            if self.attempt_log is not None and self.attempt_log.worker_died:
                # Not run: no duration to learn.
                stats.stopped_by = STOP_WORKER_DIED
                break
            duration = time.monotonic() - job_start
            self.busy += duration
            stats.durations[function] = max(duration, stats.durations.get(function, 0))
        if selection:
            stats.left = len(selection)

    def _finish(self, stats, start, failed_run=False):
        now = time.monotonic()
        stats.time_elapsed = now - start
        # The commit in _dqj_after_run() waits for the WAL flush of the whole batch.
        self.policy.end_batch(self.model)
        self.model._dqj_after_run(
            stats,
            chain_has_time=not failed_run and self._room_for_another_call(stats, now),
            # A failed run was rolled back: its last job with it.
            policy=self.policy if failed_run else self._last_job_policy,
        )

    def _estimate(self, function, stats):
        """Seconds a job of ``function`` is expected to take: the longer of its stored
        estimate and its longest run in this run; the run's mean for an unknown
        function (0 before the run's first job)."""
        known = [
            value
            for value in (self.estimates.get(function), stats.durations.get(function))
            if value is not None
        ]
        if known:
            return max(known)
        return self.busy / stats.processed if stats.processed else 0.0

    def _out_of_time(self, stats, deadline):
        """No job can start any more: the deadline (the watchdog's for the run's first
        job, which max_seconds always lets start) has passed."""
        if not stats.processed:
            if self.watchdog is None:
                return False
            deadline = self.watchdog.deadline
        return time.monotonic() >= deadline

    def _fits(self, function, stats, deadline):
        """Whether a job of ``function``, just acquired, may start now.

        Its estimate must end before the deadline. max_seconds always lets the run's
        first job start (a caller's budget: a run does at least one job); the
        watchdog does not, with one exception: a job estimated longer than the whole
        cron budget cannot fit in any cron run; rather than leaving it (and the queue
        behind it) pending forever, it starts at the beginning of a run that has at
        least half that budget, and if it really needs that long the watchdog kills
        the worker, as it should, and the job is pending again.
        """
        estimate = self._estimate(function, stats)
        now = time.monotonic()
        if not stats.processed:
            if self.watchdog is None:
                return True
            deadline = self.watchdog.deadline
        if now + estimate <= deadline:
            return True
        budget = self.watchdog.budget if self.watchdog is not None else None
        if (
            not stats.processed
            and budget is not None
            and estimate > budget
            and deadline - now >= budget / 2
        ):
            _logger.warning(
                "a job of %s is estimated at %.0f s, more than the cron's budget "
                "(%.0f s below limit_time_real_cron): started anyway, the watchdog "
                "may kill the worker",
                function,
                estimate,
                budget,
            )
            return True
        return False

    def _room_for_another_call(self, stats, now):
        """Whether Odoo may call the runner again in this cron run (it does while the
        run reports remaining work): the watchdog's deadline still leaves room for
        the longest job this run has seen."""
        if self.watchdog is None:
            return True
        longest = max(
            (self._estimate(function, stats) for function in stats.durations),
            default=0.0,
        )
        return now + longest <= self.watchdog.deadline

    def _next_job(self, selection, stats):
        """The next locked job; an empty recordset for a selected job that cannot
        run now (counted as skipped); None when there is nothing more to take."""
        if selection is None:
            job, acquired = self.model._dqj_acquire(
                policy=self.policy, rules=self.rules
            )
            self._contended = acquired.contended
        elif not selection:
            return None
        else:
            job, acquired = self.model._dqj_acquire(
                selection.pop(0), policy=self.policy, rules=self.rules
            )
            if not job:
                stats.skipped += 1
        if self._switched_connection(acquired.backend):
            if job:
                job._dqj_release(self.policy)  # not started: pending, untouched
            return None
        if stats.started_at is None:
            stats.started_at = acquired.at
        if selection is None:
            return job or None
        return job
