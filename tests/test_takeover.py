# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Taking over from the original deltatech_queue_job, step by step.

The whole upgrade (``odoo -u`` on a database with the original's footprint, then a
real server) is checked by ``dqj_harness.stress.takeover_check``, which
``./dev.sh test`` runs; here each step of ``takeover.py`` meets the cases the end-to-end
run does not.
"""

import logging

from odoo.exceptions import UserError
from odoo.modules.migration import exec_script
from odoo.release import series as SERIES
from odoo.tests import TransactionCase, tagged
from odoo.tools.parse_version import parse_version

from dqj_harness.kit import ADDON_DIR, addon_version

from .. import takeover
from ..engine.api_key import api_key_configured, verify_api_key
from ..engine.settings import (
    BOUNDS,
    PARAM_API_KEY_HASH,
    PARAM_BATCH_SIZE,
    PARAM_MAX_SECONDS,
    PARAM_RUNNER_COUNT,
    read_settings,
)
from .common import QueueJobCase, ensure_cron_jobrunner_record

ORIGINAL_KEY = "queue_job_processor.api_key"
ORIGINAL_BATCH = "queue_job_processor.batch_size"
ORIGINAL_SECONDS = "queue_job_processor.max_seconds"
TAKEOVER_LOGGER = "odoo.addons.deltatech_queue_job.takeover"
# The XML ids of the original's data file that own its parameters (both series).
ORIGINAL_XMLIDS = {
    ORIGINAL_KEY: "queue_processor_api_key",
    ORIGINAL_BATCH: "queue_processor_batch_size",
    ORIGINAL_SECONDS: "queue_processor_max_seconds",
}
# The newest release of the original on each series.
ORIGINAL_VERSIONS = {"18.0": "18.0.1.3.0", "19.0": "19.0.1.4.3"}


def original_parameter(env, key, value):
    """A parameter of the original, owned by an XML id of its data file."""
    record = env["ir.config_parameter"].sudo().create({"key": key, "value": value})
    env["ir.model.data"].create(
        {
            "module": "deltatech_queue_job",
            "name": ORIGINAL_XMLIDS[key],
            "model": "ir.config_parameter",
            "res_id": record.id,
        }
    )
    return record


@tagged("post_install", "-at_install")
class TestCarryOverSettings(TransactionCase):
    def setUp(self):
        super().setUp()
        self.params = self.env["ir.config_parameter"].sudo()
        for key in (PARAM_API_KEY_HASH, PARAM_BATCH_SIZE, PARAM_MAX_SECONDS):
            self.params.search([("key", "=", key)]).unlink()

    def original(self, key, value):
        return original_parameter(self.env, key, value)

    def assertOriginalsGone(self):
        self.assertFalse(
            self.params.search(
                [("key", "in", (ORIGINAL_KEY, ORIGINAL_BATCH, ORIGINAL_SECONDS))]
            )
        )
        self.assertFalse(
            self.env["ir.model.data"].search(
                [
                    ("module", "=", "deltatech_queue_job"),
                    ("name", "like", "queue_processor_%"),
                ]
            )
        )

    def test_the_old_key_works_and_its_plain_text_is_gone(self):
        old_key = "the-key-cron-job-org-sends-" + "x" * 16
        self.original(ORIGINAL_KEY, old_key)
        self.original(ORIGINAL_BATCH, "35")
        self.original(ORIGINAL_SECONDS, " 45 ")
        carried = takeover.carry_over_settings(self.env)
        self.assertEqual(carried, ["api_key", "batch_size", "max_seconds"])
        self.assertTrue(verify_api_key(self.env, old_key))
        self.assertFalse(verify_api_key(self.env, old_key + "y"))
        stored = self.params.get_param(PARAM_API_KEY_HASH)
        self.assertNotIn(old_key, stored)
        settings = read_settings(self.env)
        self.assertEqual((settings.batch_size, settings.max_seconds), (35, 45))
        self.assertOriginalsGone()
        self.env.cr.execute(
            "SELECT count(*) FROM ir_config_parameter WHERE value LIKE %s",
            [f"%{old_key}%"],
        )
        self.assertEqual(self.env.cr.fetchone()[0], 0, "no plain text left anywhere")

    def test_the_placeholder_key_is_dropped_leaving_no_key(self):
        """The original's data shipped one key to every database (up to 19.0.1.4.2,
        whose successor deletes it: an older database may still hold it)."""
        self.original(
            ORIGINAL_KEY, "sk_live_CHANGE_ME_generate_random_key_here_123456789"
        )
        with self.assertLogs(TAKEOVER_LOGGER, logging.INFO) as logs:
            carried = takeover.carry_over_settings(self.env)
        self.assertEqual(carried, [])
        self.assertFalse(api_key_configured(self.env))
        self.assertOriginalsGone()
        self.assertIn("placeholder", logs.output[0])
        self.assertTrue(all(line.startswith("INFO") for line in logs.output))

    def test_values_out_of_bounds_are_not_copied(self):
        self.original(ORIGINAL_BATCH, "5000")
        self.original(ORIGINAL_SECONDS, "fifty")
        self.assertEqual(takeover.carry_over_settings(self.env), [])
        self.assertFalse(self.params.get_param(PARAM_BATCH_SIZE))
        self.assertFalse(self.params.get_param(PARAM_MAX_SECONDS))
        self.assertOriginalsGone()

    def test_settings_the_port_already_has_are_kept(self):
        self.params.set_param(PARAM_BATCH_SIZE, "12")
        self.original(ORIGINAL_BATCH, "35")
        self.original(ORIGINAL_SECONDS, "45")
        self.assertEqual(takeover.carry_over_settings(self.env), ["max_seconds"])
        self.assertEqual(self.params.get_param(PARAM_BATCH_SIZE), "12")
        self.assertOriginalsGone()

    def test_nothing_to_carry_is_a_no_op(self):
        self.assertEqual(takeover.carry_over_settings(self.env), [])


@tagged("post_install", "-at_install")
class TestOriginalUi(TransactionCase):
    def test_the_originals_menu_action_and_extra_view_are_dropped(self):
        Data = self.env["ir.model.data"]
        action = self.env["ir.actions.act_window"].create(
            {"name": "Settings", "res_model": "res.config.settings"}
        )
        menu = self.env["ir.ui.menu"].create(
            {
                "name": "Settings",
                "parent_id": self.env.ref("queue_job.menu_queue_job_root").id,
                "action": f"ir.actions.act_window,{action.id}",
            }
        )
        view = self.env["ir.ui.view"].create(
            {
                "name": "queue.job.tree.enhanced",
                "model": "queue.job",
                "inherit_id": self.env.ref("queue_job.view_queue_job_tree").id,
                "arch": '<field name="uuid" position="after">'
                '<field name="priority"/></field>',
            }
        )
        child = self.env["ir.ui.view"].create(
            {
                "name": "a customization of it",
                "model": "queue.job",
                "inherit_id": view.id,
                "arch": '<field name="priority" position="after">'
                '<field name="eta"/></field>',
            }
        )
        for name, record in (
            ("action_queue_job_config", action),
            ("menu_queue_job_config", menu),
            ("view_queue_job_tree_enhanced", view),
        ):
            Data.create(
                {
                    "module": "deltatech_queue_job",
                    "name": name,
                    "model": record._name,
                    "res_id": record.id,
                }
            )
        dropped = takeover.drop_original_ui(self.env)
        self.assertEqual(set(dropped), set(takeover.ORIGINAL_UI_DROPPED))
        for record in (action, menu, view, child):
            self.assertFalse(record.exists(), record)
        # The list still renders without them.
        self.assertTrue(self.env["queue.job"].get_view(view_type="list")["arch"])
        self.assertEqual(takeover.drop_original_ui(self.env), [])


@tagged("post_install", "-at_install")
class TestAbsorbCronJobrunner(TransactionCase):
    """The database states are set in SQL inside the test's transaction (rolled
    back): queue_job_cron_jobrunner is not installed in the test database."""

    def set_state(self, state):
        self.env.cr.execute(
            "UPDATE ir_module_module SET state = %s WHERE name = %s",
            [state, takeover.CRON_JOBRUNNER],
        )

    def state(self):
        self.env.cr.execute(
            "SELECT state FROM ir_module_module WHERE name = %s",
            [takeover.CRON_JOBRUNNER],
        )
        return self.env.cr.fetchone()[0]

    def setUp(self):
        super().setUp()
        ensure_cron_jobrunner_record(self.env)

    def test_nothing_to_absorb(self):
        self.assertEqual(self.state(), "uninstalled")
        self.assertFalse(takeover.absorb_cron_jobrunner(self.env))
        self.assertEqual(self.state(), "uninstalled")

    def test_installed_it_is_marked_for_removal(self):
        """Odoo uninstalls a module marked 'to remove' at the end of the update, then
        reloads the registry without it."""
        self.set_state("installed")
        with self.assertLogs(TAKEOVER_LOGGER, logging.INFO) as logs:
            self.assertTrue(takeover.absorb_cron_jobrunner(self.env))
        self.assertEqual(self.state(), "to remove")
        self.assertIn("takes over from queue_job_cron_jobrunner", logs.output[0])

    def test_its_runner_crons_made_by_hand_are_adopted(self):
        """Its copies of its runner cron become this addon's runner crons, counted by
        Parallel Runners; its own cron (its XML id) is left to its uninstall. The
        cron's action is matched by its model's id (its model_name is a stored column
        on 18.0 only)."""
        self.set_state("installed")
        cr = self.env.cr
        # Its field's column, as its install leaves it (rolled back with the test).
        cr.execute("ALTER TABLE ir_cron ADD COLUMN queue_job_runner boolean")
        self.env["ir.config_parameter"].sudo().search(
            [("key", "=", PARAM_RUNNER_COUNT)]
        ).unlink()

        def runner(name, active=True):
            return self.env["ir.cron"].create(
                {
                    "name": name,
                    "model_id": self.env.ref("queue_job.model_queue_job").id,
                    "state": "code",
                    "code": "model._job_runner()",
                    "interval_number": 1,
                    "interval_type": "days",
                    "active": active,
                }
            )

        own = runner("Queue Job Runner")
        self.env["ir.model.data"].create(
            {
                "module": takeover.CRON_JOBRUNNER,
                "name": "queue_job_cron",
                "model": "ir.cron",
                "res_id": own.id,
            }
        )
        copy = runner("Queue Job Runner (2)")
        archived = runner("Queue Job Runner (3)", active=False)
        unflagged = runner("Not flagged as a runner")
        crons = own | copy | archived | unflagged
        self.env.flush_all()
        cr.execute(
            "UPDATE ir_cron SET queue_job_runner = true WHERE id IN %s",
            [tuple((own | copy | archived).ids)],
        )
        self.assertTrue(takeover.absorb_cron_jobrunner(self.env))
        crons.invalidate_recordset(["dqj_queue_runner"])
        self.assertEqual(
            crons.with_context(active_test=False).filtered("dqj_queue_runner"),
            copy | archived,
        )
        default, _low, _high = BOUNDS["runner_count"]
        self.assertEqual(
            self.env["ir.config_parameter"].sudo().get_param(PARAM_RUNNER_COUNT),
            str(default + 1),
            "the active copy runs beside this addon's runner crons",
        )

    def test_refused_when_another_module_depends_on_it(self):
        self.set_state("installed")
        other = self.env["ir.module.module"].search([("name", "=", "test_queue_job")])
        self.env.cr.execute(
            "INSERT INTO ir_module_module_dependency (module_id, name) VALUES (%s, %s)",
            [other.id, takeover.CRON_JOBRUNNER],
        )
        with self.assertRaisesRegex(UserError, "test_queue_job"):
            takeover.absorb_cron_jobrunner(self.env)
        self.assertEqual(self.state(), "installed", "nothing changed")


@tagged("post_install", "-at_install")
class TestResumeQueue(QueueJobCase):
    def test_pending_jobs_get_the_runner_crons_triggered(self):
        self.enqueue(1)
        crons = self.env["ir.cron"]._dqj_runner_crons().filtered("active")
        Trigger = self.env["ir.cron.trigger"].sudo()
        before = Trigger.search_count([("cron_id", "in", crons.ids)])
        takeover.resume_queue(self.env)
        after = Trigger.search_count([("cron_id", "in", crons.ids)])
        self.assertEqual(after - before, len(crons))


@tagged("post_install", "-at_install")
class TestUpgradeFromTheOriginal(QueueJobCase):
    """``migrations/18.0.2.0.0`` and ``migrations/19.0.2.0.0``, run as Odoo runs a
    migration script (``exec_script``) on the original's footprint of their series:
    both take over the same way. The whole ``odoo -u`` is ``stress/takeover_check.py``'s
    on the running series."""

    def setUp(self):
        super().setUp()
        ensure_cron_jobrunner_record(self.env)

    def original_footprint(self, key, batch_size, max_seconds):
        """The original's parameters, queue_job_cron_jobrunner installed, none of the
        port's settings."""
        params = self.env["ir.config_parameter"].sudo()
        for param in (PARAM_API_KEY_HASH, PARAM_BATCH_SIZE, PARAM_MAX_SECONDS):
            params.search([("key", "=", param)]).unlink()
        original_parameter(self.env, ORIGINAL_KEY, key)
        original_parameter(self.env, ORIGINAL_BATCH, str(batch_size))
        original_parameter(self.env, ORIGINAL_SECONDS, str(max_seconds))
        self.env.cr.execute(
            "UPDATE ir_module_module SET state = 'installed' WHERE name = %s",
            [takeover.CRON_JOBRUNNER],
        )

    def migrate(self, series, stage):
        folder = f"{series}.2.0.0"
        script = ADDON_DIR / "migrations" / folder / f"{stage}-migrate.py"
        exec_script(
            self.env.cr,
            ORIGINAL_VERSIONS[series],
            str(script),
            "deltatech_queue_job",
            stage,
            folder,
        )

    def assert_takes_over(self, series, batch_size, max_seconds):
        key = f"the-key-the-scheduler-of-{series}-sends-" + "x" * 8
        self.original_footprint(key, batch_size, max_seconds)
        crons = self.env["ir.cron"]._dqj_runner_crons().filtered("active")
        Trigger = self.env["ir.cron.trigger"].sudo()
        triggers = Trigger.search_count([("cron_id", "in", crons.ids)])

        self.migrate(series, "pre")
        self.env.cr.execute(
            "SELECT state FROM ir_module_module WHERE name = %s",
            [takeover.CRON_JOBRUNNER],
        )
        self.assertEqual(self.env.cr.fetchone()[0], "to remove")
        self.assertTrue(verify_api_key(self.env, key))
        settings = read_settings(self.env)
        self.assertEqual(
            (settings.batch_size, settings.max_seconds), (batch_size, max_seconds)
        )
        self.assertFalse(
            self.env["ir.config_parameter"]
            .sudo()
            .search([("key", "in", list(ORIGINAL_XMLIDS))])
        )

        self.migrate(series, "post")
        self.assertEqual(
            Trigger.search_count([("cron_id", "in", crons.ids)]) - triggers,
            len(crons),
            "the pending job gets the runner crons triggered",
        )

    def test_both_series_take_over_the_same_way(self):
        """From 18.0.1.3.0 with 18.0's folder, from 19.0.1.4.3 with 19.0's."""
        self.enqueue(1)
        self.assert_takes_over("18.0", 7, 45)
        self.assert_takes_over("19.0", 8, 46)

    def test_the_running_series_runs_its_own_folder_only(self):
        """Odoo runs a migration folder when its version is newer than the installed
        one and not newer than the addon's: from the original of the running series,
        its own series' folder, never the other's."""
        installed = parse_version(ORIGINAL_VERSIONS[SERIES])
        current = parse_version(addon_version(SERIES))
        runs = {
            folder.name
            for folder in (ADDON_DIR / "migrations").iterdir()
            if installed < parse_version(folder.name) <= current
        }
        self.assertEqual(runs, {f"{SERIES}.2.0.0"})
