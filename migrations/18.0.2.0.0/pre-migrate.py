# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Upgrade from the original deltatech_queue_job (18.0.1.x): see takeover.py."""

from odoo import SUPERUSER_ID, api

from odoo.addons.deltatech_queue_job import takeover


def migrate(cr, version):
    if not version:
        return
    env = api.Environment(cr, SUPERUSER_ID, {})
    # Refused before anything changes when another module needs the cron runner.
    takeover.absorb_cron_jobrunner(env)
    takeover.carry_over_settings(env)
    takeover.drop_original_ui(env)
