# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

import logging
import traceback
from datetime import timedelta

from psycopg2 import OperationalError, errorcodes

from odoo import api, fields, models
from odoo.service.model import PG_CONCURRENCY_ERRORS_TO_RETRY
from odoo.tools import SQL

from odoo.addons.queue_job.exception import FailedJobError, RetryableJobError
from odoo.addons.queue_job.job import CANCELLED, DONE, FAILED, PENDING, Job

from ..engine import job_locks
from ..engine.runner import POSTPONED, STOP_BATCH, BudgetedRunner
from ..engine.settings import BOUNDS, read_settings
from ..engine.watchdog import cron_watchdog
from ..exception import NothingToDoJob

_logger = logging.getLogger(__name__)

# Seconds before a job that hit a PostgreSQL concurrency error is tried again.
PG_RETRY = 5
QUERY_CANCELED = errorcodes.QUERY_CANCELED  # statement_timeout

# What Job._load_from_db_record() reads, fetched in one query.
LOAD_FIELDS = [
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
]


class QueueJob(models.Model):
    _inherit = "queue.job"

    dqj_running = fields.Boolean(
        string="Running Now",
        compute="_compute_dqj_running",
        search="_search_dqj_running",
        help="Pending job that a runner is processing at this moment: its row is "
        "locked by a worker's open transaction. Nothing is committed while it runs, "
        "so a crashed worker never leaves a job stuck in 'started'.",
    )

    def init(self):
        res = super().init()
        job_locks.create_acquire_index(self.env.cr)
        return res

    # ------------------------------------------------------------------ acquisition
    # The SQL, its locks and why they are safe: see engine/job_locks.py.

    def _acquire(self, job_id=None, commit=True, capacities=None):
        if capacities is None:
            capacities = read_settings(self.env).channel_capacities
        self.env.flush_all()  # the SQL below must see the caller's pending writes
        locked = job_locks.lock_job(self.env.cr, job_id, commit, capacities)
        if not locked:
            return self.browse()
        job = self.browse(locked.id)
        # Read by the acquisition: the runner's duration estimate needs it, and must
        # not cost a query per job.
        self.env.cache.update(
            job, self._fields["channel_method_name"], [locked.function]
        )
        return job

    def _release(self, commit=True):
        """Give back this job, acquired and not processed: it stays pending, untouched
        (see engine/job_locks.py's release_job)."""
        self.ensure_one()
        job_locks.release_job(self.env.cr, commit)

    @api.model
    def _acquire_one_job(self, commit=True, capacities=None):
        """Lock and return the next eligible job, in queue order, or an empty set.

        ``capacities``: channel capacities (``{channel: n}``) when the caller already
        read the settings, as the runner does once per batch.
        """
        return self._acquire(commit=commit, capacities=capacities)

    def _acquire_specific_job(self, job_id=None, commit=True, capacities=None):
        """Lock and return job ``job_id`` (default: this record) if it can run now.

        Empty when it is not pending, not due yet, or being processed elsewhere.
        """
        if job_id is None:
            self.ensure_one()
            job_id = self.id
        return self._acquire(job_id=job_id, commit=commit, capacities=capacities)

    @api.model
    def _count_eligible_jobs(self):
        """Pending jobs that are due now (locked ones included)."""
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
    def _process(self, commit=False):
        """Run this (locked) job in a savepoint and store its outcome.

        Queries for a plain job: the load of the record, SAVEPOINT, RELEASE, one
        UPDATE with the outcome (the 'started' state is never written: it would only
        be visible after a commit, which would release the lock). Returns the
        outcome: 'done', 'failed' or 'postponed'.
        """
        self.ensure_one()
        # One query for every column Job reads (Serialized fields are not prefetched
        # with the others by default: 'dependencies' would cost a second query).
        self.fetch(LOAD_FIELDS)
        try:
            job = Job._load_from_db_record(self)
        except Exception as err:  # noqa: BLE001
            # Its model or method is gone (an addon was uninstalled, a method
            # renamed): this job fails alone instead of stopping every run at it.
            return self._unloadable_job_failed(err, commit)
        has_dependents = bool(self.dependencies.get("reverse_depends_on"))
        job.set_started()
        outcome = DONE
        try:
            with self.env.cr.savepoint():
                try:
                    job.perform()
                except NothingToDoJob as err:
                    # Done, not an error: what it wrote before saying so is kept
                    # (the savepoint is released), as queue_job's runner does.
                    job.result = str(err) or None
            job.set_done()
        except RetryableJobError as err:
            # perform() turns it into FailedJobError once max_retries is reached.
            job.postpone(result=str(err), seconds=err.seconds)
            job.set_pending(reset_retry=False)
            outcome = POSTPONED
        except OperationalError as err:
            if err.pgcode in PG_CONCURRENCY_ERRORS_TO_RETRY:
                # Serialization failure, deadlock, lock not available: the job did
                # nothing wrong, its savepoint is rolled back; run it again shortly,
                # without using one of its retries.
                job.postpone(result=str(err.pgerror or err), seconds=PG_RETRY)
                job.set_pending(reset_retry=False)
                job.retry = max(job.retry - 1, 0)
                outcome = POSTPONED
            elif err.pgcode == QUERY_CANCELED and (
                not job.max_retries or job.retry < job.max_retries
            ):
                # statement_timeout: maybe a slow moment of the database; try again
                # later, using a retry, so that a job that always times out fails.
                job.postpone(result=str(err.pgerror or err), seconds=PG_RETRY)
                job.set_pending(reset_retry=False)
                outcome = POSTPONED
            else:
                outcome = self._job_failed(job, err)
        except (FailedJobError, Exception) as err:  # noqa: BLE001
            outcome = self._job_failed(job, err)
        self._store_run(job, outcome)
        if outcome == DONE and has_dependents:
            # Its SQL reads this job's stored state.
            self.env.flush_all()
            job.enqueue_waiting()
        self.env.flush_all()
        if commit:
            self.env.cr.commit()  # pylint: disable=invalid-commit
        return outcome

    def _unloadable_job_failed(self, err, commit):
        exc_info = traceback.format_exc()
        _logger.error("job %s cannot be loaded:\n%s", self.uuid, exc_info)
        self.write(
            {
                "state": FAILED,
                "exc_name": f"{err.__class__.__module__}.{err.__class__.__name__}",
                "exc_message": str(err),
                "exc_info": exc_info,
            }
        )
        self.env.flush_all()
        if commit:
            self.env.cr.commit()  # pylint: disable=invalid-commit
        return FAILED

    def _job_failed(self, job, err):
        exc_info = traceback.format_exc()
        _logger.error("job %s failed:\n%s", job.uuid, exc_info)
        name = err.__class__.__name__
        if getattr(err, "__module__", None):
            name = f"{err.__module__}.{name}"
        job.set_failed(
            exc_info=exc_info,
            exc_name=name,
            exc_message=getattr(err, "name", None) or str(err),
        )
        return FAILED

    def _store_run(self, job, outcome):
        """Write the outcome of a run on the job, in one UPDATE."""
        vals = {
            "state": job.state,
            "date_started": job.date_started,
            "date_done": job.date_done or False,
            "exec_time": job.exec_time or False,
            "result": str(job.result) if job.result else False,
            "retry": job.retry,
            "exc_name": job.exc_name or False,
            "exc_message": job.exc_message or False,
            "exc_info": job.exc_info or False,
            "eta": job.eta or False,
            "worker_pid": job.worker_pid or False,
        }
        record = self
        if outcome != FAILED:
            # Nothing tracked changes on success; skip mail tracking's bookkeeping.
            record = self.with_context(tracking_disable=True)
        record.write(vals)

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
            capacities=settings.channel_capacities,
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

    def _after_run(self, stats, chain_has_time, commit):
        """Leave a trigger when work is left, report to the cron, log the run, learn
        the jobs' durations."""
        in_cron = bool(self.env.context.get("ir_cron_progress_id"))
        if stats.pending_count and stats.stopped_by != "empty":
            self._cron_continue()
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
        self.env.flush_all()
        if commit:
            self.env.cr.commit()  # pylint: disable=invalid-commit
        # Last, in a transaction of its own when committing: see _dqj_learn.
        self.env["queue.job.duration"].sudo()._dqj_learn(stats.durations, commit)

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
        """Trigger every runner cron (Odoo runs one cron once at a time, so N runner
        crons are N runners sharing the queue)."""
        for cron in self._runner_crons().filtered("active"):
            cron._trigger(at=at)

    @api.model
    def _cron_continue(self):
        """Trigger every runner cron to go on with the queue now, in a fresh pass.

        ``ir.cron._trigger()`` rounds "now" down to the second, and a cron run that
        ends "fully done" deletes its triggers older than the start of its own
        transaction (``_reschedule_later``): a trigger left less than a second after
        the cron run began, which is what a runner with no time left does, would be
        deleted with them, and the queue would wait for the crons' interval. The
        database's clock, to the microsecond, is after that start; the NOTIFY that
        ``_trigger`` sends only for past moments wakes the cron workers up.
        """
        crons = self._runner_crons().filtered("active")
        if not crons:
            return
        self.env.cr.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'")
        now = self.env.cr.fetchone()[0]
        for cron in crons:
            cron._trigger(at=now)
        self.env.cr.postcommit.add(crons[:1]._notifydb)

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
        done = self.env.cr.precommit.data.setdefault(
            "deltatech_queue_job.triggered", set()
        )
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
