# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The original deltatech_queue_job's method names, for the code, server actions and
custom views that still call them.

Each one is a thin alias: it ends in this addon's one runner (``_job_runner``) or in
the button that does the same thing, and returns what the original returned. Nothing
here acquires a job or loops over the queue.

The private methods this addon adds to its models are named ``_dqj_…``. These keep
their names, because they are a contract:

- with the original and OCA's queue_job_cron_jobrunner, whose callers pass the
  original's ``commit`` boolean (translated into a transaction policy at once,
  engine/transaction.py): ``_job_runner``, ``_process``, ``_acquire_one_job``,
  ``_acquire_specific_job``, ``_cron_trigger``, ``_ensure_cron_trigger``;
- with the original only (here): ``_api_job_runner``, ``_process_api_in_thread``,
  ``_remove_failed_duplicates``;
- with Odoo and queue_job, whose methods they override: ``init``, ``create``,
  ``write``, ``_register_hook``, ``_change_job_state``, ``autovacuum``,
  ``_gc_old_jobs``, ``_get_eval_context`` (server actions), ``_get_view`` (job
  functions); and the compute and search methods Odoo names after their field:
  ``_compute_dqj_running``, ``_search_dqj_running``;
- with installed databases: ``_gc_runs``, which a ``noupdate`` cron calls.

The lint checks the rule against this list (harness/dqj_harness/tools/check_static.py).
"""

import logging

from odoo import SUPERUSER_ID, api, models
from odoo.modules.registry import Registry

from ..engine import transaction
from ..engine.names import CRON_JOBRUNNER

_logger = logging.getLogger(__name__)

CRON_JOBRUNNER_PACKAGE = f"odoo.addons.{CRON_JOBRUNNER}"


class QueueJob(models.Model):
    _inherit = "queue.job"

    # ------------------------------------------------------------------ buttons
    def start_cron_trigger(self):
        """The original's "Cron Trigger" (re-activates archived runner crons)."""
        return self.action_dqj_cron_trigger()

    def process_jobs(self):
        """The original's "Process": here the selected jobs (or one batch) are
        processed at once, within the web request's budget, with the counts in the
        notification; the original only left a cron trigger."""
        return self.action_dqj_process()

    def action_process_api_thread(self):
        """The original's "Process (Thread)": one budgeted run in a background
        thread."""
        return self.action_process_in_background()

    # ------------------------------------------------------------------ runner
    @api.model
    def _api_job_runner(self, batch_size=None, max_seconds=None, source="manual"):
        """One budgeted run; the original's counters as a dict.

        ``batch_size`` / ``max_seconds`` default to the settings (the original's
        parameters are carried over into them) and are checked by their bounds.
        ``pending_remaining``: jobs still due now (jobs waiting for their eta are not
        counted: no run could take them yet).
        """
        stats = self._dqj_run_batch(
            transaction.for_caller(self.env.context),
            batch_size=batch_size,
            max_seconds=max_seconds,
            source=source,
        )
        return {
            "processed": stats.processed,
            "done": stats.done,
            "failed": stats.failed,
            "postponed": stats.postponed,
            "time_elapsed": round(stats.time_elapsed, 2),
            "pending_remaining": stats.pending_count,
        }

    @api.model
    def _process_api_in_thread(self, dbname, uid, context):
        """Body of the original's background thread: one budgeted run on a cursor of
        its own, its failure logged (a thread has nobody to raise to)."""
        try:
            with Registry(dbname).cursor() as cr:
                env = api.Environment(cr, uid or SUPERUSER_ID, dict(context or {}))
                jobs = env["queue.job"].sudo()
                jobs._api_job_runner(
                    max_seconds=jobs._dqj_request_budget(), source="thread"
                )
        except Exception:
            _logger.exception("background queue runner on %s failed", dbname)

    # ------------------------------------------------------------------ housekeeping
    def _remove_failed_duplicates(self):
        """The original's name for cancelling the failed jobs a new job with the same
        identity key supersedes (they keep their history)."""
        self._dqj_cancel_superseded_failed_jobs()

    # ------------------------------------------------------------------ guard
    def _register_hook(self):
        """Say it loudly when queue_job_cron_jobrunner sits in front of the engine:
        installed from the command line beside this addon (Odoo refuses it from the
        Apps menu, see ir_module_module.py), its methods override this addon's
        without calling them."""
        res = super()._register_hook()
        runner = type(self)._job_runner
        if getattr(runner, "__module__", "").startswith(CRON_JOBRUNNER_PACKAGE):
            _logger.error(
                "queue_job_cron_jobrunner is installed beside deltatech_queue_job and "
                "replaces its runner: uninstall queue_job_cron_jobrunner."
            )
        return res


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    def action_generate_queue_job_processor_api_key(self):
        """The original's "Generate Key": a new key, shown once, in force at once
        (the original put it in the form, to be saved)."""
        return self.action_dqj_generate_api_key()
