# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The budgeted runner: one loop for every way of starting work.

The cron, the API endpoint, the list-view buttons and the background thread all
call ``queue.job._job_runner(batch_size, max_seconds, ...)``, which builds a
:class:`BudgetedRunner` and returns its :class:`RunStats`. The model acquires,
stores and shows; this class decides when to stop.
"""

import logging
import time
import weakref
from dataclasses import asdict, dataclass, field

from .settings import check_int

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
# Something raised out of the loop (not a job: jobs fail alone); the run is recorded.
STOP_ERROR = "error"

# Seconds between two looks, per process and database, for jobs allowed to commit
# whose worker died while they ran (queue.job._dqj_requeue_dead_jobs). Deaths are rare
# and the look is one statement; once a minute keeps it off every run's bill.
DEAD_JOBS_SWEEP_INTERVAL = 60
_last_sweep = {}

# Odoo 18 runs a cron's callback up to MAX_BATCH_PER_CRON_JOB times in a row, in the
# same worker and under the same watchdog, while it reports remaining work. The
# deadline of such a chain is kept per cursor (the cron keeps one cursor for the chain)
# so that the whole chain, not each batch, stays under limit_time_real_cron.
_CRON_CHAIN_DEADLINES = weakref.WeakKeyDictionary()


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
    pending_count: int = 0
    time_elapsed: float = 0.0
    stopped_by: str = STOP_EMPTY
    job_ids: list = field(default_factory=list)

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
        values["time_elapsed"] = round(self.time_elapsed, 3)
        return values


class BudgetedRunner:
    """Process eligible jobs until the batch size or the time budget is used up.

    :param job_model: ``queue.job`` model (its environment is the runner's)
    :param batch_size: maximum number of jobs taken
    :param max_seconds: time budget; the next job is not acquired when the mean job
        duration seen so far would take the run past it
    :param commit: commit after each job (the lock of a job lasts until its commit)
    :param cron_cap: under the cron, seconds the whole cron run may last (below
        ``limit_time_real_cron``); Odoo may call the runner several times in that run
    :param rules: the channels' ChannelRules (capacities, pauses, sequences), read
        once for the run
    :param async_commit: commit each job without waiting for its WAL flush (the
        batch's last commit waits, so at most this batch is at risk if PostgreSQL
        itself crashes; its jobs would then be pending again, effects and state
        rolled back together)
    :param job_ids: process these jobs (each acquired on its own; one that is not
        pending, not due or held elsewhere is skipped) instead of the queue's next ones
    """

    def __init__(
        self,
        job_model,
        batch_size,
        max_seconds,
        commit=True,
        source="cron",
        cron_cap=None,
        rules=None,
        job_ids=None,
        async_commit=False,
    ):
        self.model = job_model
        self.batch_size = check_int("batch_size", batch_size)
        self.max_seconds = check_int("max_seconds", max_seconds)
        self.commit = commit
        self.source = source
        self.cron_cap = cron_cap
        self.rules = rules
        self.job_ids = None if job_ids is None else sorted(set(job_ids))
        self.async_commit = async_commit and commit
        self._contended = False

    def _deadline(self, start):
        deadline = start + self.max_seconds
        if self.cron_cap is not None:
            cr = self.model.env.cr
            chain_deadline = _CRON_CHAIN_DEADLINES.get(cr)
            if chain_deadline is None:
                chain_deadline = start + self.cron_cap
                _CRON_CHAIN_DEADLINES[cr] = chain_deadline
            deadline = min(deadline, chain_deadline)
        return deadline

    def run(self):
        stats = RunStats(source=self.source)
        start = time.monotonic()
        deadline = self._deadline(start)
        self._sweep_dead_jobs(start)
        if self.async_commit:
            self.model._set_synchronous_commit(False)
        busy = 0.0
        try:
            busy = self._loop(stats, deadline)
        except BaseException:
            # Whatever raised, the session gets its synchronous commits back and the
            # run is recorded (the exception still reaches the caller).
            if self.commit:
                self.model.env.cr.rollback()
            stats.time_elapsed = time.monotonic() - start
            stats.stopped_by = STOP_ERROR
            try:
                self._finish(stats, deadline, busy, start, failed_run=True)
            except Exception:
                # The caller reports the original error; this one is its shadow.
                _logger.warning("the failed run could not be recorded", exc_info=True)
            raise
        self._finish(stats, deadline, busy, start)
        return stats

    def _sweep_dead_jobs(self, now):
        if not self.commit:
            return
        key = self.model.env.cr.dbname
        if now - _last_sweep.get(key, -DEAD_JOBS_SWEEP_INTERVAL) < (
            DEAD_JOBS_SWEEP_INTERVAL
        ):
            return
        _last_sweep[key] = now
        self.model._dqj_requeue_dead_jobs()
        self.model.env.cr.commit()  # pylint: disable=invalid-commit

    def _loop(self, stats, deadline):
        """Take and process jobs until the batch, the budget or the queue ends; return
        the seconds spent in jobs."""
        selection = None if self.job_ids is None else list(self.job_ids)
        busy = 0.0
        while True:
            if stats.processed >= self.batch_size:
                stats.stopped_by = STOP_BATCH
                break
            now = time.monotonic()
            mean = busy / stats.processed if stats.processed else 0.0
            if now + mean > deadline:
                stats.stopped_by = STOP_TIME
                break
            job = self._next_job(selection, stats)
            if job is None:
                stats.stopped_by = STOP_CONTENTION if self._contended else STOP_EMPTY
                break
            if not job:
                continue  # a selected job that cannot run now
            job_start = time.monotonic()
            outcome = job._process(commit=self.commit)
            busy += time.monotonic() - job_start
            stats.job_ids.append(job.id)
            stats.count(outcome)
        if selection:
            stats.left = len(selection)
        return busy

    def _finish(self, stats, deadline, busy, start, failed_run=False):
        stats.pending_count = self.model._count_eligible_jobs()
        now = time.monotonic()
        stats.time_elapsed = now - start
        mean = busy / stats.processed if stats.processed else 0.0
        if self.async_commit:
            # The commit in _after_run() waits for the WAL flush of the whole batch.
            self.model._set_synchronous_commit(True)
        chain_deadline = _CRON_CHAIN_DEADLINES.get(self.model.env.cr, deadline)
        self.model._after_run(
            stats,
            chain_has_time=not failed_run and now + mean < chain_deadline,
            commit=self.commit,
        )

    def _next_job(self, selection, stats):
        """The next locked job; an empty recordset for a selected job that cannot
        run now (counted as skipped); None when there is nothing more to take."""
        if selection is None:
            job, self._contended = self.model._dqj_acquire(
                commit=self.commit, rules=self.rules
            )
            return job or None
        if not selection:
            return None
        job, _contended = self.model._dqj_acquire(
            selection.pop(0), commit=self.commit, rules=self.rules
        )
        if not job:
            stats.skipped += 1
        return job
