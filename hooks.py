# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from .engine.job_locks import drop_acquire_index


def uninstall_hook(env):
    """Drop the acquire index: the ORM does not know it (created in init())."""
    drop_acquire_index(env.cr)
