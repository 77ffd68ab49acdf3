# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from .engine.job_locks import drop_acquire_index
from .takeover import absorb_cron_jobrunner


def pre_init_hook(env):
    """Installed where OCA's queue_job_cron_jobrunner runs: take its place (see
    takeover.py), or its overrides of queue.job would sit in front of the engine."""
    absorb_cron_jobrunner(env)


def uninstall_hook(env):
    """Drop the acquire index: the ORM does not know it (created in init())."""
    drop_acquire_index(env.cr)
