# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

import configparser
import contextlib
import os
import tempfile

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import TransactionCase, new_test_user, tagged
from odoo.tools import config

from ..engine import settings as engine_settings
from ..engine.api_key import verify_api_key
from ..engine.settings import (
    PARAM_API_KEY_HASH,
    PARAM_BATCH_SIZE,
    PARAM_CHANNELS,
    PARAM_RUNNER_COUNT,
    read_settings,
)
from .common import access_groups

SETTINGS_LOGGER = engine_settings.__name__
# Where queue_job's jobrunner reads its channels first (its runner's _channels()).
QUEUE_JOB_CHANNELS_ENV = "ODOO_QUEUE_JOB_CHANNELS"


@contextlib.contextmanager
def queue_job_configured(env=None, section=None):
    """Run with queue_job's jobrunner channels: ``env`` as ODOO_QUEUE_JOB_CHANNELS,
    ``section`` as ``channels`` in the ``[queue_job]`` section of the configuration
    file (None: unset); both restored afterwards."""
    saved_env = os.environ.pop(QUEUE_JOB_CHANNELS_ENV, None)
    if env is not None:
        os.environ[QUEUE_JOB_CHANNELS_ENV] = env
    try:
        with configuration_section("queue_job", section and {"channels": section}):
            yield
    finally:
        os.environ.pop(QUEUE_JOB_CHANNELS_ENV, None)
        if saved_env is not None:
            os.environ[QUEUE_JOB_CHANNELS_ENV] = saved_env


@contextlib.contextmanager
def configuration_section(name, values):
    """Odoo's configuration with ``values`` as its ``[name]`` section (none when
    ``values`` is empty), as the server would have read it: 18.0 keeps the sections
    in ``config.misc``; 19.0 reads them from the file, so the test points
    ``config['config']`` at a file of its own."""
    misc = getattr(config, "misc", None)
    if misc is not None:
        missing = object()
        saved = misc.pop(name, missing)
        if values:
            misc[name] = dict(values)
        try:
            yield
        finally:
            misc.pop(name, None)
            if saved is not missing:
                misc[name] = saved
        return
    saved = config.get("config")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "odoo.conf")
        parser = configparser.ConfigParser(interpolation=None)
        parser["options"] = {}
        if values:
            parser[name] = dict(values)
        with open(path, "w", encoding="utf-8") as file:
            parser.write(file)
        config["config"] = path
        try:
            yield
        finally:
            config["config"] = saved


@tagged("post_install", "-at_install")
class TestQueueJobSettings(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.params = cls.env["ir.config_parameter"].sudo()
        for key in (PARAM_BATCH_SIZE, PARAM_RUNNER_COUNT, PARAM_CHANNELS):
            cls.params.set_param(key, False)
        cls.params.set_param(PARAM_API_KEY_HASH, False)

    def settings(self, **values):
        return self.env["res.config.settings"].create(values)

    def runner_crons(self):
        return self.env["ir.cron"]._dqj_runner_crons()

    # ------------------------------------------------------------------ values
    def test_defaults_come_from_runner_settings(self):
        settings = self.settings()
        self.assertEqual(settings.dqj_batch_size, 20)
        self.assertEqual(settings.dqj_max_seconds, 50)
        self.assertEqual(settings.dqj_runner_count, 2)
        self.assertEqual(settings.dqj_history_days, 30)
        self.assertFalse(settings.dqj_channels)
        self.assertFalse(settings.dqj_api_key_configured)

    def test_saved_values_are_what_the_runner_reads(self):
        self.settings(
            dqj_batch_size=7,
            dqj_max_seconds=12,
            dqj_history_days=3,
            dqj_channels=" root:4,root.mail:1 ",
        ).execute()
        runner = read_settings(self.env)
        self.assertEqual(runner.batch_size, 7)
        self.assertEqual(runner.max_seconds, 12)
        self.assertEqual(runner.history_days, 3)
        self.assertEqual(runner.channel_capacities, {"root": 4, "root.mail": 1})
        # and the form shows them back
        self.assertEqual(self.settings().dqj_batch_size, 7)

    def test_out_of_bounds_values_are_refused_with_the_setting_name(self):
        cases = [
            (
                "dqj_batch_size",
                0,
                "Batch Size must be a whole number between 1 and 1000",
            ),
            ("dqj_batch_size", 1001, "Batch Size"),
            ("dqj_max_seconds", 601, "Max Seconds must be a whole number between 1"),
            ("dqj_runner_count", 17, "Parallel Runners"),
            ("dqj_history_days", 0, "History Retention"),
        ]
        for fname, value, message in cases:
            with (
                self.subTest(fname=fname, value=value),
                self.assertRaisesRegex(ValidationError, message),
            ):
                self.settings(**{fname: value})
        self.assertFalse(self.params.get_param(PARAM_BATCH_SIZE))

    def test_invalid_channels_are_refused(self):
        with self.assertRaisesRegex(ValidationError, "Channel Capacities: invalid"):
            self.settings(dqj_channels="root:four")
        with self.assertRaisesRegex(ValidationError, "Channel Capacities"):
            self.settings(dqj_channels="root:0")

    def test_unparsable_channels_are_refused_naming_the_bad_part(self):
        for text, bad in (
            ("root:4,root.seq:1:sequentail", "'sequentail'"),
            ("root:4,root.sync:2:paused=yes", "'paused=yes'"),
            ("root:4,:2", "missing channel name"),
            ("root:4\nroot.x:1x", "'1x'"),
        ):
            with (
                self.subTest(text=text),
                self.assertRaisesRegex(ValidationError, "Channel Capacities") as caught,
            ):
                self.settings(dqj_channels=text)
            self.assertIn(bad, str(caught.exception))
        self.assertFalse(self.params.get_param(PARAM_CHANNELS))
        # queue_job's options that this runner does not apply are not errors.
        self.settings(dqj_channels="root:4,root.x:2:throttle=1").execute()
        self.assertEqual(read_settings(self.env).channels, "root:4,root.x:2:throttle=1")

    def test_unparsable_channels_are_logged_at_error_when_read(self):
        """A parameter edited by hand: the entries that parse apply, the others are
        named in an ERROR."""
        self.params.set_param(
            PARAM_CHANNELS, "root:3,root.seq:1:sequentail,root.mail:two,root.b:1"
        )
        with self.assertLogs(SETTINGS_LOGGER, "ERROR") as logs:
            runner = read_settings(self.env)
        self.assertEqual(runner.channel_capacities, {"root": 3, "root.b": 1})
        self.assertIn("'sequentail'", logs.output[0])
        self.assertIn("'two'", logs.output[0])

    def test_channels_are_taken_over_from_queue_jobs_configuration(self):
        """Switching from queue_job's jobrunner keeps its channels while this
        addon has none of its own: the environment variable first, then the
        configuration file, as queue_job reads them."""
        section = "root:2\n  root.seq:1:sequential\n  root.hold:1:paused,"
        with queue_job_configured(section=section):
            rules = self.env["queue.job"]._dqj_channel_rules()
            self.assertEqual(rules.capacities.get("root"), 2)
            self.assertIn("root.seq", rules.sequential)
            self.assertIn("root.hold", rules.paused)
            runner = read_settings(self.env)
            self.assertEqual(runner.channels_origin, "[queue_job] channels")
        # root:0 only stops queue_job's own jobrunner: it is not taken over; on
        # another channel, 0 is no limit of its own for queue_job.
        env = "root:0,root.seq:1:sequential,root.free:0,root.held:0:paused"
        with queue_job_configured(env=env, section=section):
            runner = read_settings(self.env)
            self.assertEqual(runner.channels_origin, QUEUE_JOB_CHANNELS_ENV)
            rules = runner.channel_rules
            self.assertEqual(rules.capacities, {"root.seq": 1, "root.held": 1})
            self.assertEqual(rules.sequential, {"root.seq"})
            self.assertEqual(rules.paused, {"root.held"})
            # The settings page says what applies.
            form = self.settings()
            self.assertEqual(form.dqj_queue_job_channels, env)
            self.assertEqual(form.dqj_queue_job_channels_origin, QUEUE_JOB_CHANNELS_ENV)
            # The addon's own setting wins.
            self.settings(dqj_channels="root:5").execute()
            runner = read_settings(self.env)
            self.assertEqual(
                (runner.channels, runner.channels_origin), ("root:5", PARAM_CHANNELS)
            )
        with queue_job_configured():
            self.params.set_param(PARAM_CHANNELS, False)
            runner = read_settings(self.env)
            self.assertEqual((runner.channels, runner.channels_origin), ("", None))

    def test_import_button_makes_queue_jobs_channels_the_addons_own(self):
        with queue_job_configured(env="root:0\nroot.seq:1:sequential\nroot.mail:3"):
            action = self.settings(
                dqj_batch_size=9
            ).action_dqj_import_queue_job_channels()
        self.assertIsInstance(action, dict)
        self.assertEqual(
            self.params.get_param(PARAM_CHANNELS), "root.seq:1:sequential,root.mail:3"
        )
        self.assertEqual(self.params.get_param(PARAM_BATCH_SIZE), "9", "saved too")
        with queue_job_configured():
            runner = read_settings(self.env)
            self.assertEqual(runner.channel_rules.sequential, {"root.seq"})
            with self.assertRaisesRegex(UserError, "no channels to import"):
                self.settings().action_dqj_import_queue_job_channels()
        with (
            queue_job_configured(section="root:4,root.seq:1:sequentail"),
            self.assertRaisesRegex(UserError, "'sequentail'"),
        ):
            self.settings().action_dqj_import_queue_job_channels()

    # ------------------------------------------------------------------ API key
    def test_generate_key_stores_only_its_hash_and_shows_it_once(self):
        settings = self.settings()
        action = settings.action_dqj_generate_api_key()
        key = action["context"]["default_api_key"]
        self.assertGreaterEqual(len(key), 40)
        self.assertEqual(action["res_model"], "queue.job.api.key.wizard")
        self.assertEqual(action["target"], "new")
        self.assertFalse(action.get("res_id"), "the dialog must not be a saved record")
        stored = self.params.get_param(PARAM_API_KEY_HASH)
        self.assertTrue(stored.startswith("hmac_sha256$"))
        self.assertNotIn(key, stored)
        self.assertTrue(verify_api_key(self.env, key))
        # nowhere in the parameters, nor in the wizard table
        self.assertFalse(self.params.search([("value", "ilike", key)]))
        wizard = (
            self.env["queue.job.api.key.wizard"]
            .with_context(**action["context"])
            .default_get(["api_key"])
        )
        self.assertEqual(wizard["api_key"], key)
        self.assertFalse(self.env["queue.job.api.key.wizard"].search([]))
        # closing the dialog saves it: still without the key
        closed = (
            self.env["queue.job.api.key.wizard"]
            .with_context(**action["context"])
            .create({"api_key": key})
        )
        self.assertFalse(closed.api_key)
        self.assertEqual(closed.action_done()["tag"], "reload")
        self.assertTrue(self.settings().dqj_api_key_configured)

    def test_regenerating_revokes_the_previous_key(self):
        settings = self.settings()
        first = settings.action_dqj_generate_api_key()["context"]["default_api_key"]
        second = settings.action_dqj_generate_api_key()["context"]["default_api_key"]
        self.assertNotEqual(first, second)
        self.assertFalse(verify_api_key(self.env, first))
        self.assertTrue(verify_api_key(self.env, second))

    def test_revoke_key_refuses_every_key(self):
        settings = self.settings()
        key = settings.action_dqj_generate_api_key()["context"]["default_api_key"]
        settings.action_dqj_revoke_api_key()
        self.assertFalse(verify_api_key(self.env, key))
        self.assertFalse(self.settings().dqj_api_key_configured)

    def test_saving_settings_keeps_the_key(self):
        settings = self.settings()
        key = settings.action_dqj_generate_api_key()["context"]["default_api_key"]
        self.settings(dqj_batch_size=9).execute()
        self.assertTrue(verify_api_key(self.env, key))

    # ------------------------------------------------------------------ runner crons
    def test_runner_count_syncs_the_runner_crons(self):
        data_crons = self.runner_crons()
        self.assertEqual(len(data_crons.filtered("active")), 2)

        self.settings(dqj_runner_count=4).execute()
        active = self.runner_crons().filtered("active")
        self.assertEqual(len(active), 4)
        new = active - data_crons
        self.assertEqual(len(new), 2)
        # copies of the first runner, with XML ids of this addon (removed on uninstall)
        self.assertEqual(set(new.mapped("code")), {"model._job_runner()"})
        xmlids = new.get_external_id()
        self.assertTrue(
            all(
                xmlids[cron.id].startswith("deltatech_queue_job.cron_queue_job_runner_")
                for cron in new
            ),
            xmlids,
        )
        self.assertEqual(self.params.get_param(PARAM_RUNNER_COUNT), "4")

        self.settings(dqj_runner_count=1).execute()
        active = self.runner_crons().filtered("active")
        self.assertEqual(active, data_crons[:1], "the oldest runner cron stays")
        self.assertEqual(len(self.runner_crons()), 4, "archived, not deleted")

        self.settings(dqj_runner_count=3).execute()
        self.assertEqual(len(self.runner_crons().filtered("active")), 3)
        self.assertEqual(len(self.runner_crons()), 4, "archived crons are reused")

    def test_cron_trigger_reaches_every_active_runner(self):
        self.settings(dqj_runner_count=3).execute()
        Trigger = self.env["ir.cron.trigger"].sudo()
        crons = self.runner_crons().filtered("active")
        before = Trigger.search_count([("cron_id", "in", crons.ids)])
        self.env["queue.job"]._cron_trigger()
        self.assertEqual(
            Trigger.search_count([("cron_id", "in", crons.ids)]), before + 3
        )

    # ------------------------------------------------------------------ access
    def test_only_administrators_manage_the_key(self):
        manager = new_test_user(
            self.env,
            login="dqj_manager_not_admin",
            groups="base.group_user,queue_job.group_queue_job_manager",
        )
        settings = self.settings()
        with self.assertRaises(AccessError):
            settings.with_user(manager).action_dqj_generate_api_key()
        with self.assertRaises(AccessError):
            settings.with_user(manager).action_dqj_revoke_api_key()
        with self.assertRaises(AccessError):
            self.env["res.config.settings"].with_user(manager).create({})
        self.assertFalse(self.params.get_param(PARAM_API_KEY_HASH))

    def test_settings_menu_is_for_administrators_under_queue_job(self):
        menu = self.env.ref("deltatech_queue_job.menu_queue_job_settings")
        self.assertEqual(menu.parent_id, self.env.ref("queue_job.menu_queue_job_root"))
        self.assertEqual(access_groups(menu), self.env.ref("base.group_system"))
        self.assertEqual(menu.action.res_model, "res.config.settings")
        self.assertIn("deltatech_queue_job", menu.action.context)
        view = self.env["res.config.settings"].get_view(view_type="form")
        self.assertIn("action_dqj_generate_api_key", view["arch"])
