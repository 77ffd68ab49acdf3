# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from datetime import datetime, timedelta
from unittest.mock import patch

import polib
from lxml import etree

from odoo import fields
from odoo.exceptions import AccessError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import file_path, mute_logger
from odoo.tools.misc import format_datetime

from ..engine import counts
from ..engine.settings import PARAM_API_KEY_HASH, PARAM_BATCH_SIZE
from ..engine.transaction import CALLER_OWNS_TRANSACTION
from .common import (
    CommittedQueueCase,
    JobsMixin,
    QueueJobCase,
    access_groups,
    enter_registry_test_mode,
    holding_test_lock,
    letting_threads_open_cursors,
)

FAILING_CODE = "raise UserError('deltatech_queue_job test failure')"


def notification(action):
    """The params of a display_notification client action (fails on anything else)."""
    assert action["type"] == "ir.actions.client", action
    assert action["tag"] == "display_notification", action
    return action["params"]


@tagged("post_install", "-at_install")
class TestJobListButtons(QueueJobCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["ir.config_parameter"].sudo().set_param(PARAM_BATCH_SIZE, False)
        cls.manager = new_test_user(
            cls.env,
            login="dqj_ui_manager",
            groups="base.group_user,queue_job.group_queue_job_manager",
        )
        cls.employee = new_test_user(
            cls.env, login="dqj_ui_employee", groups="base.group_user"
        )

    def runs(self, source):
        return self.env["queue.job.run"].search([("source", "=", source)])

    # ------------------------------------------------------------------ Cron Trigger
    def test_cron_trigger_triggers_the_runner_crons_now(self):
        crons = self.env["ir.cron"]._dqj_runner_crons().filtered("active")
        Trigger = self.env["ir.cron.trigger"].sudo()
        before = Trigger.search([("cron_id", "in", crons.ids)])
        params = notification(self.queue_job.action_dqj_cron_trigger())
        new = Trigger.search([("cron_id", "in", crons.ids)]) - before
        self.assertEqual(new.cron_id, crons)
        self.assertTrue(
            all(t.call_at <= fields.Datetime.now() + timedelta(seconds=1) for t in new)
        )
        self.assertEqual(params["type"], "success")
        self.assertIn("started in the background", params["message"])
        self.assertFalse(params["sticky"])

    # ------------------------------------------------------------------ Process
    def test_process_without_selection_runs_one_budgeted_batch(self):
        jobs = self.enqueue(3)
        params = notification(self.queue_job.browse().action_dqj_process())
        self.assertEqual(set(jobs.mapped("state")), {"done"})
        self.assertEqual(params["type"], "success")
        self.assertIn("3 processed: 3 done, 0 failed", params["message"])
        self.assertIn("0 still pending", params["message"])
        self.assertEqual(params["next"], {"type": "ir.actions.act_window_close"})
        run = self.runs("button")
        self.assertEqual(len(run), 1)
        self.assertEqual((run.processed, run.done, run.pending_count), (3, 3, 0))

    def test_process_without_selection_stops_at_the_batch_size(self):
        self.env["ir.config_parameter"].sudo().set_param(PARAM_BATCH_SIZE, "2")
        jobs = self.enqueue(3)
        params = notification(self.queue_job.browse().action_dqj_process())
        self.assertEqual(sorted(jobs.mapped("state")), ["done", "done", "pending"])
        self.assertIn("2 processed", params["message"])
        self.assertIn("1 still pending", params["message"])

    def test_process_says_how_many_wait_for_their_eta_and_when(self):
        jobs = self.enqueue(3, eta=timedelta(hours=1))
        later = self.enqueue(1, eta=timedelta(hours=2))
        params = notification(self.queue_job.browse().action_dqj_process())
        self.assertEqual(set((jobs | later).mapped("state")), {"pending"})
        when = format_datetime(self.env, min(jobs.mapped("eta")))
        self.assertTrue(
            params["message"].endswith(
                f"0 still pending. 4 wait for their eta; the next one is due at {when}."
            ),
            params["message"],
        )
        # The selection: only the selected jobs are counted.
        params = notification(later.action_dqj_process())
        self.assertIn("1 skipped", params["message"])
        when = format_datetime(self.env, later.eta)
        self.assertIn(
            f"1 wait for their eta; the next one is due at {when}.", params["message"]
        )

    def test_process_says_nothing_of_etas_when_no_job_waits(self):
        self.enqueue(1)
        params = notification(self.queue_job.browse().action_dqj_process())
        self.assertNotIn("eta", params["message"])

    def test_process_says_about_when_what_is_left_is_an_estimate(self):
        self.env["ir.config_parameter"].sudo().set_param(PARAM_BATCH_SIZE, "1")
        jobs = self.enqueue(5)
        with patch.object(counts, "EXACT_COUNT_LIMIT", 2):
            params = notification(self.queue_job.browse().action_dqj_process())
        self.assertEqual(jobs.mapped("state").count("done"), 1)
        self.assertRegex(params["message"], r"; about \d+ still pending\.$")
        self.assertTrue(self.runs("button").pending_estimated)
        # Exact again below the limit: no "about".
        params = notification(self.queue_job.browse().action_dqj_process())
        self.assertIn("; 3 still pending.", params["message"])
        self.assertFalse(self.runs("button")[0].pending_estimated)

    def test_process_with_empty_queue_warns(self):
        params = notification(self.queue_job.browse().action_dqj_process())
        self.assertEqual(params["type"], "warning")
        self.assertIn("0 processed", params["message"])

    def test_process_selected_runs_only_the_selection(self):
        jobs = self.enqueue(3)
        params = notification(jobs[:2].action_dqj_process())
        self.assertEqual(jobs.mapped("state"), ["done", "done", "pending"])
        self.assertEqual(params["type"], "success")
        self.assertIn("2 processed: 2 done", params["message"])
        self.assertIn("0 skipped", params["message"])

    def test_process_selected_skips_jobs_that_cannot_run_now(self):
        ready = self.enqueue(1)
        later = self.enqueue(1, eta=3600)
        finished = self.enqueue(1)
        finished.write({"state": "done"})
        params = notification((ready | later | finished).action_dqj_process())
        self.assertEqual(ready.state, "done")
        self.assertEqual(later.state, "pending", "not due yet: skipped")
        self.assertEqual(params["type"], "warning")
        self.assertIn("1 processed: 1 done", params["message"])
        self.assertIn("2 skipped", params["message"])

    def test_process_selected_counts_stay_exact_with_duplicates(self):
        stats = self.run_runner(job_ids=self.enqueue(2).ids * 2)
        self.assertEqual((stats.processed, stats.done, stats.skipped), (2, 2, 0))

    def test_process_selected_stops_starting_jobs_after_the_budget(self):
        jobs = self.env["queue.job"]
        for _i in range(3):
            jobs |= self.enqueue_code("env.cr.execute('SELECT pg_sleep(0.6)')")
        spent = self.run_runner(job_ids=jobs.ids, max_seconds=1)
        # the second 0.6 s job would end past the 1 s budget: not started
        self.assertEqual((spent.processed, spent.skipped, spent.left), (1, 0, 2))
        self.assertEqual(spent.stopped_by, "time")
        stats = self.run_runner(job_ids=jobs.ids, max_seconds=60)
        self.assertEqual((stats.processed, stats.skipped, stats.left), (2, 1, 0))

    def test_process_reports_failures_as_danger(self):
        failing = self.enqueue_code(FAILING_CODE)
        with mute_logger("odoo.addons.deltatech_queue_job.models.queue_job"):
            params = notification(failing.action_dqj_process())
        self.assertEqual(failing.state, "failed")
        self.assertEqual(params["type"], "danger")
        self.assertIn("1 processed: 0 done, 1 failed", params["message"])

    # ------------------------------------------------------------------ Background
    def test_process_background_runs_in_its_own_thread_and_cursor(self):
        """The button returns before anything is processed; the thread opens its own
        cursor (in test mode, a TestCursor on the test transaction, which it can only
        get once the 'request' -- here the test itself -- lets it), processes the
        queue and records a 'thread' run. A second click meanwhile is refused."""
        jobs = self.enqueue(3)
        self.env.flush_all()
        enter_registry_test_mode(self)
        with holding_test_lock(self):
            params = notification(self.queue_job.action_process_in_background())
            thread = self.queue_job._dqj_background_thread()
            self.assertTrue(thread.is_alive())
            self.assertEqual(params["type"], "success")
            self.assertIn("background", params["message"])
            jobs.invalidate_recordset()
            self.assertEqual(set(jobs.mapped("state")), {"pending"}, "returned at once")

            again = notification(self.queue_job.action_process_in_background())
            self.assertEqual(again["type"], "warning")
            self.assertIn("already", again["message"])
            self.assertIs(self.queue_job._dqj_background_thread(), thread)
        with letting_threads_open_cursors():
            thread.join(timeout=60)
        self.assertFalse(thread.is_alive(), "the background runner did not finish")
        self.env.invalidate_all()
        self.assertEqual(set(jobs.mapped("state")), {"done"})
        run = self.runs("thread")
        self.assertEqual(len(run), 1)
        self.assertEqual(run.processed, 3)

    # ------------------------------------------------------------------ access
    def test_buttons_refuse_non_managers(self):
        jobs = self.enqueue(1)
        as_employee = self.queue_job.with_user(self.employee)
        for method in (
            "action_dqj_cron_trigger",
            "action_dqj_process",
            "action_process_in_background",
        ):
            with self.subTest(method=method), self.assertRaises(AccessError):
                getattr(as_employee.browse(jobs.ids), method)()
        self.assertEqual(jobs.state, "pending")

    def test_buttons_work_for_managers_who_are_not_administrators(self):
        jobs = self.enqueue(1)
        params = notification(
            self.queue_job.with_user(self.manager).browse().action_dqj_process()
        )
        self.assertEqual(jobs.state, "done")
        self.assertIn("1 processed", params["message"])

    def test_buttons_and_history_menu_are_for_managers(self):
        manager_group = self.env.ref("queue_job.group_queue_job_manager")
        view = self.env.ref("deltatech_queue_job.view_queue_job_tree")
        buttons = etree.fromstring(view.arch).xpath("//header/button")
        self.assertEqual(
            {b.get("name") for b in buttons},
            {
                "action_dqj_cron_trigger",
                "action_dqj_process",
                "action_process_in_background",
            },
        )
        for button in buttons:
            self.assertEqual(button.get("display"), "always")
            self.assertEqual(button.get("groups"), "queue_job.group_queue_job_manager")
        menu = self.env.ref("deltatech_queue_job.menu_queue_job_run")
        self.assertEqual(access_groups(menu), manager_group)
        self.assertEqual(
            self.env["queue.job.run"].with_user(self.employee).has_access("read"),
            False,
        )


@tagged("post_install", "-at_install")
class TestButtonsTransaction(CommittedQueueCase):
    def test_process_commits_each_job_unless_its_caller_owns_the_transaction(self):
        """Called on a cursor of its own (a web request's), Process commits after
        each job, as every runner does: another connection sees them done before
        the request ends, and nothing the request rolls back undoes them. A caller
        that says it owns the transaction gets savepoints only."""
        with self.committed() as env:
            jobs = self.enqueue(2, env=env)
            owned = self.enqueue(1, env=env)
        with self.committed() as env, self.committed() as observer:
            params = notification(
                env["queue.job"].browse(jobs.ids).action_dqj_process()
            )
            self.assertIn("2 processed: 2 done", params["message"])
            seen = observer["queue.job"].browse(jobs.ids)
            self.assertEqual(seen.mapped("state"), ["done", "done"], "committed")
            env.cr.rollback()

            caller = env["queue.job"].with_context(**{CALLER_OWNS_TRANSACTION: True})
            params = notification(caller.browse(owned.ids).action_dqj_process())
            self.assertIn("1 processed: 1 done", params["message"])
            observer.cr.rollback()  # a fresh snapshot
            observer.invalidate_all()
            self.assertEqual(observer["queue.job"].browse(owned.id).state, "pending")
            env.cr.rollback()
        with self.committed() as env:
            self.assertEqual(
                env["queue.job"].browse(jobs.ids).mapped("state"), ["done"] * 2
            )
            self.assertEqual(env["queue.job"].browse(owned.id).state, "pending")


@tagged("post_install", "-at_install")
class TestJobFormAndColumns(QueueJobCase):
    def test_job_form_has_the_header_buttons(self):
        arch = etree.fromstring(self.queue_job.get_view(view_type="form")["arch"])
        buttons = {b.get("name"): b for b in arch.xpath("//header/button")}
        for name in (
            "action_dqj_cron_trigger",
            "action_dqj_process",
            "action_process_in_background",
        ):
            self.assertIn(name, buttons)
        self.assertEqual(
            buttons["action_dqj_process"].get("invisible"), "state != 'pending'"
        )
        view = self.env.ref("deltatech_queue_job.view_queue_job_form")
        for button in etree.fromstring(view.arch).xpath("//button"):
            self.assertEqual(button.get("groups"), "queue_job.group_queue_job_manager")

    def test_process_from_the_form_runs_that_job(self):
        jobs = self.enqueue(2)
        params = notification(jobs[1].action_dqj_process())
        self.assertEqual(jobs.mapped("state"), ["pending", "done"])
        self.assertIn("1 processed: 1 done", params["message"])

    def test_identity_key_is_an_optional_column(self):
        arch = etree.fromstring(self.queue_job.get_view(view_type="list")["arch"])
        (node,) = arch.xpath("//field[@name='identity_key']")
        self.assertEqual(node.get("optional"), "hide")


@tagged("post_install", "-at_install")
class TestSchedulerHelp(QueueJobCase):
    def test_settings_show_this_servers_urls(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "web.base.url", "https://erp.example.com/"
        )
        settings = self.env["res.config.settings"].create({})
        self.assertEqual(
            settings.dqj_process_url, "https://erp.example.com/api/v1/queue/process"
        )
        self.assertEqual(
            settings.dqj_stats_url, "https://erp.example.com/api/v1/queue/stats"
        )
        arch = self.env["res.config.settings"].get_view(view_type="form")["arch"]
        block = etree.fromstring(arch).xpath("//block[@name='dqj_scheduler_block']")
        self.assertEqual(len(block), 1)
        text = etree.tostring(block[0], encoding="unicode")
        for expected in ("POST", "Content-Type: application/json", '"api_key"'):
            self.assertIn(expected, text)
        self.assertEqual(
            [f.get("name") for f in block[0].xpath(".//field")],
            ["dqj_process_url", "dqj_stats_url"],
        )


@tagged("post_install", "-at_install")
class TestJobSearchAndTranslations(QueueJobCase):
    def test_running_now_filter_uses_the_engine_field(self):
        arch = self.queue_job.get_view(view_type="search")["arch"]
        node = etree.fromstring(arch).xpath("//filter[@name='dqj_running']")
        self.assertEqual(len(node), 1)
        self.assertEqual(node[0].get("domain"), "[('dqj_running', '=', True)]")
        jobs = self.enqueue(1)
        # nothing holds the job: it is not running, and the domain evaluates
        self.assertFalse(self.queue_job.search([("dqj_running", "=", True)]) & jobs)
        list_arch = self.queue_job.get_view(view_type="list")["arch"]
        self.assertIn('name="dqj_running"', list_arch)

    def test_romanian_translation_covers_the_template(self):
        pot = polib.pofile(
            file_path("deltatech_queue_job/i18n/deltatech_queue_job.pot")
        )
        ro = {
            e.msgid: e.msgstr
            for e in polib.pofile(file_path("deltatech_queue_job/i18n/ro.po"))
        }
        untranslated = [e.msgid for e in pot if not ro.get(e.msgid)]
        self.assertFalse(untranslated)
        self.assertEqual(ro["Process Background"], "Procesează în fundal")
        # A term inside another _() call's arguments escapes the export: the
        # notification's "about N" is its own call.
        self.assertEqual(ro["about %s"], "aproximativ %s")


@tagged("post_install", "-at_install")
class TestRunHistory(QueueJobCase):
    def make_run(self, days_ago, source="cron"):
        return self.env["queue.job.run"].create(
            {
                "source": source,
                "date_start": fields.Datetime.now() - timedelta(days=days_ago),
                "processed": 1,
                "done": 1,
            }
        )

    def test_every_run_that_found_work_is_recorded(self):
        self.enqueue(2)
        stats = self.run_runner(source="api")
        run = self.env["queue.job.run"].search([("source", "=", "api")])
        self.assertEqual(len(run), 1)
        self.assertEqual((run.processed, run.done, run.failed), (2, 2, 0))
        self.assertEqual(run.stopped_by, stats.stopped_by)

    def test_a_run_starts_when_it_began_not_up_to_a_second_earlier(self):
        self.enqueue(1)
        before = datetime.now()
        self.run_runner(source="api")
        self.env.invalidate_all()  # the stored value, not the cached one
        run = self.env["queue.job.run"].search([("source", "=", "api")])
        self.assertLessEqual(before, run.date_start)
        self.assertLessEqual(run.date_start, datetime.now())

    def test_gc_cron_removes_runs_older_than_the_retention(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "deltatech_queue_job.history_days", "10"
        )
        old = self.make_run(11)
        recent = self.make_run(9)
        cron = self.env.ref("deltatech_queue_job.cron_queue_job_run_gc")
        self.assertEqual(cron.code.strip(), "model._gc_runs()")
        self.assertTrue(cron.active)
        # The cron's code in this transaction (19.0's method_direct_trigger runs it
        # on a cursor of its own, which does not see the test's records).
        cron.ir_actions_server_id.run()
        self.assertFalse(old.exists())
        self.assertTrue(recent.exists())

    def test_history_views_load(self):
        Run = self.env["queue.job.run"]
        for view_type in ("list", "graph", "pivot", "search"):
            with self.subTest(view_type=view_type):
                self.assertTrue(Run.get_view(view_type=view_type)["arch"])
        graph = Run.get_view(view_type="graph")["arch"]
        self.assertIn('name="source"', graph)
        self.assertIn('name="processed"', graph)


@tagged("post_install", "-at_install")
class TestAdminUiTour(HttpCase, JobsMixin):
    def test_admin_ui_tour(self):
        """In real headless Chromium: Jobs > Process with nothing selected processes
        the queue and says so; Settings > Generate Key shows a key once; save."""
        self.env.cr.execute(
            "UPDATE queue_job SET state = 'done' WHERE state IN ('pending', 'enqueued')"
        )
        self.env["ir.config_parameter"].sudo().set_param(PARAM_API_KEY_HASH, False)
        job = self.enqueue(1, description="deltatech tour job")
        self.env.flush_all()
        self.start_tour("/odoo", "deltatech_queue_job_ui_tour", login="admin")
        self.env.invalidate_all()
        self.assertEqual(job.state, "done")
        params = self.env["ir.config_parameter"].sudo()
        self.assertTrue(params.get_param(PARAM_API_KEY_HASH))
        self.assertEqual(params.get_param(PARAM_BATCH_SIZE), "25")
        self.assertTrue(
            self.env["queue.job.run"].search([("source", "=", "button")]),
            "the Process button's run is in the history",
        )
