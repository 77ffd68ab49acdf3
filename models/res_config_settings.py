# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError

from ..engine.api_key import api_key_configured, generate_api_key, revoke_api_key
from ..engine.jobrunner_guard import queue_job_runner_attached
from ..engine.settings import (
    BOUNDS,
    CHANNEL_EXAMPLE,
    PARAM_ASYNC_COMMIT,
    PARAM_BATCH_SIZE,
    PARAM_CHANNELS,
    PARAM_HISTORY_DAYS,
    PARAM_MAX_SECONDS,
    PARAM_RUNNER_COUNT,
    SettingsError,
    channels_from_queue_job,
    check_int,
    parse_channel_rules,
    queue_job_channels,
    queue_job_runner_in_this_server,
)


def _bounded_setting(bound, param, string, help_text):
    """An integer setting kept in the parameter ``param``, its default the one of
    ``bound`` in engine.settings.BOUNDS (which the constraint below checks)."""
    return fields.Integer(
        string=string,
        config_parameter=param,
        default=BOUNDS[bound][0],
        help=help_text,
    )


# settings field -> name of its bounds in engine.settings.BOUNDS
INT_SETTINGS = {
    "dqj_batch_size": "batch_size",
    "dqj_max_seconds": "max_seconds",
    "dqj_runner_count": "runner_count",
    "dqj_history_days": "history_days",
}


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    dqj_batch_size = _bounded_setting(
        "batch_size",
        PARAM_BATCH_SIZE,
        string="Batch Size",
        help_text="The most jobs one run processes; the next run takes the rest.",
    )
    dqj_max_seconds = _bounded_setting(
        "max_seconds",
        PARAM_MAX_SECONDS,
        string="Max Seconds",
        help_text="Time budget of one run, in seconds: no job is started that would "
        "take the run past it. Runs started by the cron also end in time for the "
        "server's cron time limit.",
    )
    dqj_runner_count = _bounded_setting(
        "runner_count",
        PARAM_RUNNER_COUNT,
        string="Parallel Runners",
        help_text="Number of runner crons sharing the queue. Keep it at or below the "
        "server's cron threads (--max-cron-threads): more add nothing.",
    )
    dqj_channels = fields.Char(
        string="Channel Capacities",
        config_parameter=PARAM_CHANNELS,
        help="How many jobs of a channel may run at once, in queue_job's syntax, e.g. "
        "root:4,root.mail:1:sequential. Empty: the channels of queue_job's own "
        "configuration apply, if it has some.",
    )
    # queue_job's jobrunner channels (read by get_values, shown on the settings page
    # and imported by action_dqj_import_queue_job_channels).
    dqj_queue_job_channels = fields.Char(
        string="queue_job's Channels",
        readonly=True,
        help="The channels set in queue_job's own configuration. They apply while "
        "Channel Capacities is empty.",
    )
    dqj_queue_job_channels_origin = fields.Char(
        string="queue_job's Channels Origin", readonly=True
    )
    dqj_async_commit = fields.Boolean(
        string="Asynchronous Commit",
        config_parameter=PARAM_ASYNC_COMMIT,
        help="Faster commits, so that parallel runners scale. If the PostgreSQL server "
        "crashes, the last jobs may run again and repeat what they did outside the "
        "database (e-mails, calls to other systems).",
    )
    dqj_history_days = _bounded_setting(
        "history_days",
        PARAM_HISTORY_DAYS,
        string="History Retention (days)",
        help_text="Runs older than this many days are removed from the Runner History.",
    )
    # Read by get_values() (the settings' own way for values that are not a plain
    # parameter): a compute is not evaluated for the form's new record.
    dqj_api_key_configured = fields.Boolean(
        string="API Key Configured",
        readonly=True,
        help="Only a hash of the key is stored: the key is shown once, when it is "
        "generated.",
    )

    dqj_queue_job_runner_active = fields.Boolean(
        string="queue_job's Job Runner Active",
        readonly=True,
        help="queue_job's own job runner also works this database: it and this "
        "addon's runners compete for the same jobs. Keep one.",
    )

    @api.model
    def get_values(self):
        res = super().get_values()
        res["dqj_api_key_configured"] = api_key_configured(self.env)
        text, origin = queue_job_channels()
        res["dqj_queue_job_channels"] = text.strip() or False
        res["dqj_queue_job_channels_origin"] = origin or False
        res["dqj_queue_job_runner_active"] = queue_job_runner_in_this_server() or (
            queue_job_runner_attached(self.env.cr)
        )
        return res

    @api.constrains(*INT_SETTINGS)
    def _check_dqj_int_settings(self):
        for settings in self:
            for fname, bound in INT_SETTINGS.items():
                try:
                    check_int(bound, settings[fname])
                except SettingsError as err:
                    _default, low, high = BOUNDS[bound]
                    raise ValidationError(
                        _(
                            "%(setting)s must be a whole number between %(low)s and "
                            "%(high)s.",
                            setting=self._fields[fname].get_description(self.env)[
                                "string"
                            ],
                            low=low,
                            high=high,
                        )
                    ) from err

    @api.constrains("dqj_channels")
    def _check_dqj_channels(self):
        for settings in self:
            try:
                parse_channel_rules(settings.dqj_channels)
            except SettingsError as err:
                raise ValidationError(
                    _(
                        "Channel Capacities: %(error)s. Expected for example "
                        "%(example)s.",
                        error=str(err),
                        example=CHANNEL_EXAMPLE,
                    )
                ) from err

    def action_dqj_import_queue_job_channels(self):
        """Make queue_job's jobrunner channels this addon's own setting, and save
        the settings (as the Save button does)."""
        text, origin = queue_job_channels()
        channels = channels_from_queue_job(text)
        if not channels:
            raise UserError(
                _(
                    "queue_job's configuration has no channels to import "
                    "(ODOO_QUEUE_JOB_CHANNELS, or channels in the [queue_job] "
                    "section of the configuration file)."
                )
            )
        try:
            parse_channel_rules(channels)
        except SettingsError as err:
            raise UserError(
                _(
                    "queue_job's channels (%(origin)s) cannot be imported: %(error)s. "
                    "Type the channels in Channel Capacities instead.",
                    origin=origin,
                    error=str(err),
                )
            ) from err
        self.dqj_channels = channels
        return self.execute()

    def set_values(self):
        res = super().set_values()
        self.env["ir.cron"]._dqj_sync_runner_crons(self.dqj_runner_count)
        return res

    def _dqj_check_admin(self):
        if not self.env.is_admin():
            raise AccessError(_("Only administrators can manage the queue API key."))

    def action_dqj_generate_api_key(self):
        """Generate a new API key (the previous one stops working) and show it once.

        The key is handed to the dialog in its context, never written to a table:
        only its hash is stored.
        """
        self._dqj_check_admin()
        key = generate_api_key(self.env)
        # The form reloads this record when the dialog closes, however it is closed.
        self.write({"dqj_api_key_configured": True})
        return {
            "type": "ir.actions.act_window",
            "name": _("New API Key"),
            "res_model": "queue.job.api.key.wizard",
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
            "context": {"default_api_key": key},
        }

    def action_dqj_revoke_api_key(self):
        self._dqj_check_admin()
        revoke_api_key(self.env)
        self.write({"dqj_api_key_configured": False})
        return True
