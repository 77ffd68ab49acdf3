# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Upgrade from the original deltatech_queue_job (18.0.1.x, up to 18.0.1.3.0):
the takeover both series share, see takeover.py."""

from odoo.addons.deltatech_queue_job import takeover


def migrate(cr, version):
    takeover.post_migrate(cr, version)
