# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""How a run treats its cursor's transaction: one policy, chosen once per run.

Whoever starts the run chooses, and the policy carries every difference:

- :class:`CommitPerJob`, for a runner that owns its cursor (the cron, the API, the
  background thread, the list-view buttons): each job is committed after it ran, and
  the commit releases its locks. An acquisition attempt that fails is rolled back
  whole (the transaction holds nothing else), so the next one sees a fresh snapshot.
  A job allowed to commit runs outside the runner's transaction. Only such a runner
  records plain jobs' attempts on a connection of its own, sweeps the jobs of dead
  workers, checks that its cursor keeps one server connection (no pooler in
  transaction mode), may commit asynchronously, and lets the batch's last job share
  its commit with the run's report.
- :data:`SAVEPOINTS_ONLY`, for a caller that owns the transaction (code that runs
  jobs inside its own work): every acquisition attempt and every job runs in a
  savepoint, nothing is committed or rolled back past them, and the jobs' locks last
  until the caller ends its transaction.

The entry points that take the original's ``commit`` boolean (``_job_runner``,
``_process``, ``_acquire_one_job``, ``_acquire_specific_job``) translate it here, once
(:func:`for_commit`); the buttons ask who calls them (:func:`for_caller`).
"""

from contextlib import contextmanager

from . import compat
from .attempts import AttemptLog

# Context key of a caller that owns the transaction: a button (or the original's
# _api_job_runner) called with it runs savepoints only, never commits.
CALLER_OWNS_TRANSACTION = "dqj_caller_owns_transaction"


class SavepointsOnly:
    """The caller owns the transaction: the run commits nothing, rolls back nothing
    but its own savepoints."""

    # Nothing is committed after a job: its savepoint is released, and the children
    # of a job done are released inside the caller's transaction.
    commits = False
    # A job allowed to commit runs in a savepoint like any job: its commits are
    # refused (a commit would end the caller's transaction).
    lets_jobs_commit = False
    # A failed attempt is rolled back to its savepoint: the snapshot stays, so a race
    # lost to another runner's commit is lost again (see job_locks.lock_job).
    renews_snapshot = False
    # The run's report never joins a job's transaction (see CommitPerJob.for_last_job).
    holds_last_job = False

    def __repr__(self):
        return "SAVEPOINTS_ONLY"

    def with_async_commit(self, _on):
        """No commit to make asynchronous."""
        return self

    def for_last_job(self):
        return self

    def attempt(self, cr, undo_on):
        """The scope of one try of a statement that may lose a race: a savepoint,
        rolled back on any failure, released on success (a lock taken stays)."""
        return cr.savepoint(flush=False)

    def commit(self, cr):
        """Nothing: the caller commits."""

    def rollback(self, cr):
        """Nothing: the caller ends its transaction, and the locks with it."""

    def end_job(self, cr):
        """Nothing to end after a job; returns whether its transaction was
        committed."""
        return False

    def start_batch(self, model):
        """Nothing to set up."""

    def end_batch(self, model):
        """Nothing to set back."""

    def session_backend(self, model):
        """None: the run is one transaction, on one server connection."""

    def attempt_log(self, dbname):
        """None: a caller's transaction may roll the attempts back for reasons of
        its own, and other connections do not see its jobs."""

    def report_cron_progress(self, env, done, remaining):
        compat.report_cron_progress(env, done, remaining, commit=False)


class CommitPerJob:
    """The runner owns its cursor: a commit after each job, a rollback to give a job
    back or to retry an acquisition in a fresh snapshot.

    :param async_commit: commit each job without waiting for its WAL flush (the
        batch's last commit waits, so at most this batch is at risk if PostgreSQL
        itself crashes; its jobs would then be pending again, effects and state
        rolled back together)
    """

    commits = True
    lets_jobs_commit = True
    renews_snapshot = True
    holds_last_job = False

    def __init__(self, async_commit=False):
        self.async_commit = bool(async_commit)

    def __repr__(self):
        return f"CommitPerJob(async_commit={self.async_commit})"

    def with_async_commit(self, on):
        """This policy with the settings' Asynchronous Commit."""
        return self if bool(on) == self.async_commit else CommitPerJob(on)

    def for_last_job(self):
        """The policy of the batch's last job, when it has no dependents (they are
        released after its own commit): its commit is left to the run's report,
        which joins its transaction, one commit per run less. Not with asynchronous
        commits: their batch ends with a synchronous commit of its own."""
        return self if self.async_commit else _LAST_JOB_WITH_REPORT

    @contextmanager
    def attempt(self, cr, undo_on):
        """The scope of one try of a statement that may lose a race: on one of the
        ``undo_on`` errors the transaction (holding nothing else) is rolled back, and
        the next try sees a fresh snapshot."""
        try:
            yield
        except undo_on:
            cr.rollback()
            raise

    def commit(self, cr):
        cr.commit()  # pylint: disable=invalid-commit

    def rollback(self, cr):
        cr.rollback()

    def end_job(self, cr):
        """Commit the job's transaction (which releases its savepoint and its
        locks); returns True: committed."""
        self.commit(cr)
        return True

    def start_batch(self, model):
        """With Asynchronous Commit, the session's commits are asynchronous from
        here on."""
        if self.async_commit:
            model._dqj_set_synchronous_commit(False)

    def end_batch(self, model):
        """Synchronous again: the run's last commit waits for the WAL flush of the
        whole batch."""
        if self.async_commit:
            model._dqj_set_synchronous_commit(True)

    def session_backend(self, model):
        """The server connection of the run's first transaction, which each
        acquisition's is compared with (a pooler in transaction mode)."""
        return model._dqj_session_backend()

    def attempt_log(self, dbname):
        """Plain jobs' attempts, counted outside their transaction
        (engine/attempts.py)."""
        return AttemptLog(dbname)

    def report_cron_progress(self, env, done, remaining):
        """Report to the cron and commit the run with it."""
        compat.report_cron_progress(env, done, remaining, commit=True)


class _LastJobWithReport(CommitPerJob):
    """The batch's last job: not committed after it; the run's report joins its
    transaction, in a savepoint, and one commit ends both."""

    holds_last_job = True

    def __repr__(self):
        return "CommitPerJob(last job committed with the run's report)"

    def end_job(self, cr):
        return False


SAVEPOINTS_ONLY = SavepointsOnly()
COMMIT_PER_JOB = CommitPerJob()
_LAST_JOB_WITH_REPORT = _LastJobWithReport()


def for_commit(commit):
    """The policy that the original's ``commit`` boolean means."""
    return COMMIT_PER_JOB if commit else SAVEPOINTS_ONLY


def for_caller(context):
    """The policy of a run that a button starts: commit per job, unless its caller
    says it owns the transaction (``CALLER_OWNS_TRANSACTION`` in ``context``)."""
    return SAVEPOINTS_ONLY if context.get(CALLER_OWNS_TRANSACTION) else COMMIT_PER_JOB
