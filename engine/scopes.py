# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The transactional scopes a job runs in.

An ordinary job runs in a savepoint of its runner's transaction, under
:func:`forbid_commit`; a job allowed to commit runs in :func:`rollback_on_error`,
outside any savepoint (a commit would end it).
"""

from contextlib import contextmanager

from ..exception import CommitForbiddenError

# Per transaction: the moments for which cron triggers were already created (see
# queue.job._dqj_trigger_once). Kept in cr.postcommit.data, which lives until the
# transaction ends (precommit data is cleared by every flushing savepoint).
TRIGGERED_KEY = "deltatech_queue_job.triggered"


@contextmanager
def forbid_commit(cr):
    """Make ``cr.commit()`` and ``cr.rollback()`` raise CommitForbiddenError.

    Yields the list of refused calls: a job that catches the error and goes on is still
    failed by its runner (what it meant to commit must not be committed by the runner
    as if nothing happened).
    """
    refused = []

    def refuse(what):
        def refused_call(*_args, **_kwargs):
            refused.append(what)
            raise CommitForbiddenError(what)

        return refused_call

    # The cursor's own attributes, if any (a test cursor may have some), else None.
    own = {name: vars(cr).get(name) for name in ("commit", "rollback")}
    cr.commit = refuse("commit")
    cr.rollback = refuse("rollback")
    try:
        yield refused
    finally:
        for name, value in own.items():
            if value is None:
                delattr(cr, name)
            else:
                setattr(cr, name, value)


@contextmanager
def guarded_savepoint(cr, savepoint=None):
    """A savepoint the job cannot escape: its commits are refused, its failure rolls
    back its own writes only.

    ``savepoint``: the job's savepoint, opened by the caller, which stores the job's
    outcome in it and closes it (or leaves it to the COMMIT that follows: one
    statement less per job). The outcome is then written while the job's work can
    still be undone: an outcome that cannot be stored is rolled back with it. On
    failure the job's writes are rolled back to it and it stays open. Without, a
    savepoint of its own, released on exit.
    """
    own = savepoint is None
    if own:
        savepoint = cr.savepoint()
    try:
        with forbid_commit(cr) as refused:
            yield
            if refused:
                raise CommitForbiddenError(refused[0])
        cr.flush()  # the job's pending writes, inside its savepoint
    except BaseException:
        savepoint.rollback()
        # The triggers the job created were rolled back with it: later jobs of this
        # transaction must create theirs again.
        cr.postcommit.data.pop(TRIGGERED_KEY, None)
        if own:
            savepoint.close(rollback=False)
        raise
    if own:
        savepoint.close(rollback=False)


@contextmanager
def rollback_on_error(cr):
    """The scope of a job allowed to commit: on failure, what it left uncommitted is
    rolled back (its own commits stay: that is what allowing them means)."""
    try:
        yield
    except BaseException:
        cr.rollback()
        raise
