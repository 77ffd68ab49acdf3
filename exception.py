# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Outcomes a job can signal to this addon's runner, beside queue_job's own."""

from odoo.addons.queue_job import exception as queue_job_exception

# Newer queue_job releases (and the connector stack) define NothingToDoJob; 18.0.1.7.0
# does not. Jobs may raise either: it means "done, nothing was needed".
_UPSTREAM = getattr(queue_job_exception, "NothingToDoJob", None)


class NothingToDoJob(*((_UPSTREAM,) if _UPSTREAM else (queue_job_exception.JobError,))):
    """The job had nothing to do: it is set to done, with this message as result."""


# What the runner catches as "nothing to do": this addon's class and, where queue_job
# has one, queue_job's own (raised directly, it is not an instance of ours).
NOTHING_TO_DO = (NothingToDoJob, _UPSTREAM) if _UPSTREAM else (NothingToDoJob,)


class CommitForbiddenError(RuntimeError):
    """A job committed or rolled back the runner's transaction.

    A job runs inside its runner's transaction, which holds the job's lock until the
    outcome is stored: a commit there would release the lock mid-job (another runner
    could start the job again), a rollback would also undo the runner's own work.
    """

    MESSAGE = (
        "Commit is forbidden in queue jobs: the job runs inside the runner's "
        "transaction, which a {what} would end while the job is still running. If "
        'this job must commit, enable "Allow Commit" on its job function (Job Queue '
        "> Configuration > Job Functions): it then runs outside the runner's "
        "transaction. Alternatively, if the job is a cron running as a queue job, run "
        "it as a normal cron."
    )

    def __init__(self, what="commit"):
        super().__init__(self.MESSAGE.format(what=what))
