# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo.tools import SQL

from .models.queue_job import ACQUIRE_INDEX


def uninstall_hook(env):
    """Drop the acquire index: the ORM does not know it (created in init())."""
    env.cr.execute(SQL("DROP INDEX IF EXISTS %s", SQL.identifier(ACQUIRE_INDEX)))
