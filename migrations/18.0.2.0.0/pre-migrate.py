# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Upgrade from the original deltatech_queue_job (18.0.1.x): see takeover.py."""

from odoo import SUPERUSER_ID, api

from odoo.addons.deltatech_queue_job import hooks, takeover


def migrate(cr, version):
    # Odoo calls an addon's post_load when it imports the addon itself, before or
    # after this script: this script imports it first, so Odoo will not.
    hooks.post_load()
    if not version:
        return
    env = api.Environment(cr, SUPERUSER_ID, {})
    # Refused before anything changes when another module needs the cron runner.
    takeover.absorb_cron_jobrunner(env)
    takeover.carry_over_settings(env)
    takeover.drop_original_ui(env)
