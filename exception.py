# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Outcomes a job can signal to this addon's runner, beside queue_job's own."""

from odoo.addons.queue_job import exception as queue_job_exception

# Newer queue_job releases (and the connector stack) define NothingToDoJob; 18.0.1.7.0
# does not. Jobs may raise either: it means "done, nothing was needed".
_UPSTREAM = getattr(queue_job_exception, "NothingToDoJob", None)


class NothingToDoJob(*((_UPSTREAM,) if _UPSTREAM else (queue_job_exception.JobError,))):
    """The job had nothing to do: it is set to done, with this message as result."""
