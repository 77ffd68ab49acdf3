# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Upgrade from the original deltatech_queue_job (19.0.1.x, up to 19.0.1.4.3):
the takeover both series share, see takeover.py."""

from odoo.addons.deltatech_queue_job import hooks, takeover


def migrate(cr, version):
    # Odoo calls an addon's post_load when it imports the addon itself, before or
    # after this script: this script imports it first, so Odoo will not.
    hooks.post_load()
    takeover.pre_migrate(cr, version)
