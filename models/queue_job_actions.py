# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""What the jobs list's header buttons do: Cron Trigger, Process, Process Background.

The Process buttons end in the one runner (``_dqj_run_batch``, which ``_job_runner``
calls too); nothing here re-implements the loop or takes a lock itself. They commit
after each job, as every runner does, unless their caller says it owns the
transaction (engine/transaction.py's ``for_caller``).
"""

import logging
import threading

from odoo import SUPERUSER_ID, _, api, models
from odoo.exceptions import AccessError
from odoo.modules.registry import Registry
from odoo.tools.misc import format_datetime

from ..engine import counts, transaction
from ..engine.runner import STOP_POOLER
from ..engine.settings import http_run_budget, read_settings

_logger = logging.getLogger(__name__)

MANAGER_GROUP = "queue_job.group_queue_job_manager"

# One background runner thread per database and process: a second click while one runs
# is refused (it would not double-process anything -- SKIP LOCKED sees to that -- but
# it would only add a competing worker the admin did not mean to start).
_background_threads = {}
_background_lock = threading.Lock()


def _notification(title, message, kind="success", reload=False):
    params = {"title": title, "message": message, "type": kind, "sticky": False}
    if reload:
        # Closing the "window" makes the list reload, showing the jobs' new states.
        params["next"] = {"type": "ir.actions.act_window_close"}
    return {
        "type": "ir.actions.client",
        "tag": "display_notification",
        "params": params,
    }


def _outcome_counts(stats):
    """The counts every "processed" notification states, as its format arguments."""
    return {
        "processed": stats.processed,
        "done": stats.done,
        "failed": stats.failed,
        "postponed": stats.postponed,
    }


def _run_in_background(dbname, policy, max_seconds):
    """Body of the background thread: a cursor and an environment of its own, the
    transaction ``policy`` of the button that started it."""
    threading.current_thread().dbname = dbname
    try:
        with Registry(dbname).cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            stats = env["queue.job"]._dqj_run_batch(
                policy, max_seconds=max_seconds, source="thread"
            )
        # The runner logs what it processed; this says the thread is over.
        _logger.info(
            "background queue runner on %s finished: %s processed, stopped by %s",
            dbname,
            stats.processed,
            stats.stopped_by,
        )
    except Exception:
        _logger.exception("background queue runner on %s failed", dbname)


class QueueJob(models.Model):
    _inherit = "queue.job"

    # ------------------------------------------------------------------ helpers
    def _dqj_check_manager(self):
        """The buttons are for queue_job managers and administrators only; checked
        here too because the methods can be called over RPC without the view."""
        if (
            self.env.su
            or self.env.user.has_group(MANAGER_GROUP)
            or self.env.is_system()
        ):
            return
        raise AccessError(
            _("Only Job Queue managers can process jobs from the user interface.")
        )

    @api.model
    def _dqj_waiting_sentence(self, job_ids=None):
        """The notification's sentence on the pending jobs that wait for their eta
        (among ``job_ids`` when given): how many, and when the next one is due; empty
        when none waits. A run leaves them alone, and "0 still pending" alone, beside
        a list of Pending jobs, would puzzle."""
        self.flush_model(["state", "eta"])
        count, next_eta = counts.waiting_for_eta(self.env.cr, job_ids)
        if not count:
            return ""
        return " " + _(
            "%(count)s wait for their eta; the next one is due at %(when)s.",
            count=count,
            when=format_datetime(self.env, next_eta),
        )

    @api.model
    def _dqj_request_budget(self):
        """The time budget of a run inside an HTTP request (see http_run_budget)."""
        return http_run_budget(read_settings(self.env), {})[1]

    # ------------------------------------------------------------------ process
    def action_dqj_cron_trigger(self):
        """Header button "Cron Trigger": wake the runner crons up now.

        Runner crons that Odoo archived (it archives a cron that keeps failing) are
        re-activated first, and the notification says so; it never reports success
        when no runner cron was triggered.
        """
        self._dqj_check_manager()
        reactivated = self.env["ir.cron"]._dqj_reactivate_runner_crons()
        if self.sudo()._cron_trigger() == "nothing":
            return _notification(
                _("Nothing triggered"),
                _(
                    "No runner cron is active, so no job will be processed in the "
                    "background. Save Queue Job > Settings (Parallel Runners) to "
                    "create them again."
                ),
                "danger",
            )
        message = _("Job processing started in the background.")
        if reactivated:
            message = " ".join(
                (
                    _(
                        "%(count)s archived runner cron(s) re-activated: %(names)s. "
                        "Odoo archives a cron that keeps failing: see its log if "
                        "this happens again.",
                        count=len(reactivated),
                        names=", ".join(reactivated.mapped("name")),
                    ),
                    message,
                )
            )
        return _notification(
            _("Cron triggered"), message, "warning" if reactivated else "success"
        )

    def action_dqj_process(self):
        """Header button "Process": the selected jobs, or one batch when none is."""
        self._dqj_check_manager()
        policy = transaction.for_caller(self.env.context)
        if self:
            stats = self.sudo()._dqj_run_batch(
                policy,
                max_seconds=self._dqj_request_budget(),
                source="button",
                job_ids=self.ids,
            )
            message = _(
                "%(processed)s processed: %(done)s done, %(failed)s failed, "
                "%(postponed)s postponed; %(skipped)s skipped (not pending, not due "
                "yet, or being processed elsewhere).",
                **_outcome_counts(stats),
                skipped=stats.skipped,
            )
            if stats.left:
                message += " " + _(
                    "%(left)s not started: the time budget was used up.",
                    left=stats.left,
                )
            if stats.skipped:
                message += self._dqj_waiting_sentence(self.ids)
            skipped = stats.skipped + stats.left
        else:
            stats = self.sudo()._dqj_run_batch(
                policy, max_seconds=self._dqj_request_budget(), source="button"
            )
            # Not nested in the _() below: the terms' export would miss it.
            pending = (
                _("about %s", stats.pending_count)
                if stats.pending_estimated
                else stats.pending_count
            )
            message = _(
                "%(processed)s processed: %(done)s done, %(failed)s failed, "
                "%(postponed)s postponed; %(pending)s still pending.",
                **_outcome_counts(stats),
                pending=pending,
            )
            message += self._dqj_waiting_sentence()
            skipped = 0
        if stats.stopped_by == STOP_POOLER:
            return _notification(
                _("Processing refused"),
                _(
                    "A connection pooler in transaction mode is in front of "
                    "PostgreSQL. The queue runner needs one server connection per "
                    "Odoo cursor: use the pooler's session mode (pgbouncer: "
                    "pool_mode = session). See the server log."
                ),
                "danger",
                reload=True,
            )
        if stats.failed and not stats.done:
            kind = "danger"
        elif stats.failed or skipped or not stats.processed:
            kind = "warning"
        else:
            kind = "success"
        return _notification(_("Jobs processed"), message, kind, reload=True)

    def action_process_in_background(self):
        """Header button "Process Background": one budgeted run in a thread of its
        own, with its own cursor; the request returns at once."""
        self._dqj_check_manager()
        dbname = self.env.cr.dbname
        with _background_lock:
            running = _background_threads.get(dbname)
            if running is not None and running.is_alive():
                return _notification(
                    _("Already running"),
                    _(
                        "A background runner is already processing jobs of this "
                        "database; it stops within its time budget."
                    ),
                    "warning",
                )
            thread = threading.Thread(
                target=_run_in_background,
                args=(
                    dbname,
                    transaction.for_caller(self.env.context),
                    # The thread lives in this (HTTP) worker, under its time limit.
                    self._dqj_request_budget(),
                ),
                name=f"deltatech_queue_job.background.{dbname}",
                daemon=True,
            )
            _background_threads[dbname] = thread
            thread.start()
        return _notification(
            _("Background processing started"),
            _(
                "A background runner is processing jobs; it stops within its time "
                "budget. Reload the list to see the progress."
            ),
        )

    @api.model
    def _dqj_background_thread(self):
        """The background thread of this database (tests wait for it), if any."""
        return _background_threads.get(self.env.cr.dbname)
