# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from datetime import datetime

from odoo import api, fields, models
from odoo.tools import SQL

from ..engine.names import MODULE
from ..engine.settings import check_int, read_settings

# The first runner cron (data/ir_cron.xml): the model of the copies.
RUNNER_TEMPLATE_XMLID = f"{MODULE}.cron_queue_job_runner"
# Copies made by the settings get XML ids in this module (noupdate), so that
# uninstalling the addon removes them with the crons of data/ir_cron.xml instead of
# leaving crons that call a method which no longer exists.
RUNNER_XMLID_PATTERN = "cron_queue_job_runner_{}"


class IrCron(models.Model):
    _inherit = "ir.cron"

    dqj_queue_runner = fields.Boolean(
        string="Budgeted Queue Runner",
        help="This cron runs deltatech_queue_job's budgeted runner. Creating a job "
        "triggers every active runner cron; Odoo runs each cron once at a time, so "
        "N runner crons are N runners sharing the queue when the server has N cron "
        "threads (--max-cron-threads); with fewer, they run one after the other.",
    )

    @api.model
    def _dqj_runner_crons(self):
        """Every runner cron, archived ones included, oldest first."""
        return (
            self.sudo()
            .with_context(active_test=False)
            .search([("dqj_queue_runner", "=", True)], order="id")
        )

    @api.model
    def _dqj_sync_runner_crons(self, count):
        """Keep exactly ``count`` runner crons active (the 'parallel runners' setting).

        The oldest runner crons stay active, archived ones are reactivated before new
        ones are made, the surplus is archived (not deleted: a cron may be running, and
        its history stays readable). Returns the active runner crons.
        """
        count = check_int("runner_count", count)
        crons = self._dqj_runner_crons()
        keep, surplus = crons[:count], crons[count:]
        if surplus.filtered("active"):
            surplus.filtered("active").write({"active": False})
        if keep.filtered(lambda cron: not cron.active):
            keep.filtered(lambda cron: not cron.active).write({"active": True})
        missing = count - len(keep)
        if missing > 0:
            keep |= self._dqj_create_runner_crons(
                len(keep), missing, template=crons[:1]
            )
        return keep

    @api.model
    def _dqj_create_runner_crons(self, existing, missing, template):
        template = template or self.sudo().env.ref(RUNNER_TEMPLATE_XMLID)
        data = []
        number = existing
        for _i in range(missing):
            number += 1
            while self.env.ref(
                f"{MODULE}.{RUNNER_XMLID_PATTERN.format(number)}",
                raise_if_not_found=False,
            ):
                number += 1
            data.append(
                {
                    "xml_id": f"{MODULE}.{RUNNER_XMLID_PATTERN.format(number)}",
                    "noupdate": True,
                    "values": {
                        "name": f"Queue Job: budgeted runner ({number})",
                        "model_id": template.model_id.id,
                        "state": "code",
                        "code": template.code,
                        "dqj_queue_runner": True,
                        "user_id": template.user_id.id,
                        "interval_number": template.interval_number,
                        "interval_type": template.interval_type,
                        "priority": template.priority,
                        "active": True,
                    },
                }
            )
        return self.sudo()._load_records(data)

    @api.model
    def _dqj_reactivate_runner_crons(self):
        """Re-activate the runner crons the 'parallel runners' setting wants active
        but that are archived -- Odoo archives a cron that keeps failing, and an
        archived runner cron ignores its triggers. Creates none and archives none
        (saving the settings does). Returns the re-activated crons."""
        count = read_settings(self.env).runner_count
        crons = self._dqj_runner_crons()
        archived = crons[:count].filtered(lambda cron: not cron.active)
        if archived:
            archived.write({"active": True})
        return archived

    # ------------------------------------------------------------------ triggers
    @api.model
    def _dqj_trigger_runners(self, at=None):
        """Trigger every active runner cron (Odoo runs one cron once at a time, so N
        runner crons are N runners sharing the queue), now or at the moment(s) ``at``.

        Returns ``"triggered"``, ``"exists"`` when each cron already had a trigger at
        each of the moments ``at`` (only later moments are compared: a trigger due now
        may belong to a run in progress, so "now" is always triggered anew), or
        ``"nothing"`` when no runner cron is active.
        """
        crons = self._dqj_runner_crons().filtered("active")
        if not crons:
            return "nothing"
        if at is None:
            for cron in crons:
                cron._trigger()
            return "triggered"
        moments = {
            moment.replace(microsecond=0)
            for moment in ([at] if isinstance(at, datetime) else at)
        }
        planned = set(
            self.env["ir.cron.trigger"]
            .sudo()
            .search_fetch(
                [("cron_id", "in", crons.ids), ("call_at", "in", list(moments))],
                ["cron_id", "call_at"],
            )
            .mapped(lambda trigger: (trigger.cron_id.id, trigger.call_at))
        )
        outcome = "exists"
        for cron in crons:
            missing = sorted(m for m in moments if (cron.id, m) not in planned)
            if missing:
                cron._trigger(at=missing)
                outcome = "triggered"
        return outcome

    @api.model
    def _dqj_continue_runners(self, since=None, delay=0):
        """Make every active runner cron go on with the queue now (or ``delay``
        seconds from now), in a fresh pass, unless a trigger that does so already
        waits; returns the crons triggered.

        A cron run that ends "fully done" deletes its triggers planned before the
        start of its own transaction (``ir.cron._reschedule_later``). So, for the cron
        running this run (if any), only a trigger planned at or after ``since`` (the
        start of this run's first transaction, which began after the cron's, by the
        database's clock) is sure to outlive this run; without ``since`` (the run
        took no job) its trigger is always left. For any other runner cron, a trigger
        due now is enough: it wakes the cron if it is idle, survives its run if it
        runs since before the trigger, and a run that began after the trigger runs
        this runner, which leaves its own continuation when work is left.

        A trigger due now counts only if it was due when it was created (up to a
        second: Odoo's ``_trigger()`` rounds): only those sent a NOTIFY. One planned
        for later (an eta's, or a ``delay``'s) sent none: due now, it still waits for
        its cron worker's next wake-up, up to a minute away. With ``delay``, a trigger
        planned between now and then is enough (the same wake-up runs it), and no
        NOTIFY is sent: nothing is due now.

        Not ``ir.cron._trigger()``, for two reasons: it rounds "now" down to the
        second, which a cron run younger than a second would delete (the new
        trigger's moment here is the database's clock to the microsecond); and it
        costs a search and an insert per cron where this is one statement per run,
        whatever the backlog and the number of runners. The NOTIFY is
        ``ir.cron._notifydb``'s, as ``_trigger()`` sends it for a trigger due now.
        """
        self.env.cr.execute(
            SQL(
                """
                WITH runner AS (
                    SELECT id FROM ir_cron WHERE dqj_queue_runner AND active
                ), moment AS (
                    SELECT now, now + make_interval(secs => %(delay)s) AS at
                    FROM (SELECT clock_timestamp() AT TIME ZONE 'UTC' AS now) clock
                )
                INSERT INTO ir_cron_trigger
                    (cron_id, call_at, create_uid, write_uid, create_date, write_date)
                SELECT runner.id, moment.at, %(uid)s, %(uid)s, moment.now, moment.now
                FROM runner, moment
                WHERE NOT EXISTS (
                    SELECT 1 FROM ir_cron_trigger waiting
                    WHERE waiting.cron_id = runner.id
                      AND waiting.call_at <= moment.at
                      AND (waiting.call_at > moment.now
                           OR waiting.call_at
                              <= waiting.create_date + interval '1 second')
                      AND (runner.id IS DISTINCT FROM %(own)s
                           OR waiting.call_at
                              >= COALESCE(%(since)s::timestamp, moment.now))
                )
                RETURNING cron_id
                """,
                uid=self.env.uid,
                own=self.env.context.get("cron_id"),
                since=since,
                delay=delay,
            )
        )
        crons = self.browse(row[0] for row in self.env.cr.fetchall())
        if crons and not delay:
            self.env.cr.postcommit.add(crons[:1].sudo()._notifydb)
        return crons
