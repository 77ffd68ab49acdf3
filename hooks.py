# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

import logging

from .engine.attempts import drop_table as drop_attempt_table
from .engine.job_locks import drop_acquire_index
from .engine.jobrunner_guard import drop_enqueue_guard
from .engine.settings import queue_job_runner_in_this_server
from .engine.watchdog import install_heartbeat
from .takeover import absorb_cron_jobrunner

_logger = logging.getLogger(__name__)


def post_load():
    """Once per process, when the addon's code is first loaded (at server start when
    the database is given, else at its first request): record the prefork watchdog's
    heartbeats (see engine/watchdog.py), and say so when queue_job's own jobrunner
    runs in this server too."""
    install_heartbeat()
    if queue_job_runner_in_this_server():
        _logger.warning(
            "queue_job's own jobrunner also runs in this server (queue_job is a "
            "server-wide module): it and deltatech_queue_job's runners work the same "
            "queue. No job runs twice (the enqueue guard refuses the jobrunner's stale "
            "enqueues), but the two compete for every job: keep one. To keep this "
            "addon's runners only, remove queue_job from server_wide_modules (--load) "
            "or set ODOO_QUEUE_JOB_CHANNELS=root:0."
        )


def pre_init_hook(env):
    """Installed where OCA's queue_job_cron_jobrunner runs: take its place (see
    takeover.py), or its overrides of queue.job would sit in front of the engine."""
    absorb_cron_jobrunner(env)


def uninstall_hook(env):
    """Drop what init() created and the ORM does not know: the acquire index, the
    enqueue guard (trigger and function) and the table of attempts."""
    drop_acquire_index(env.cr)
    drop_enqueue_guard(env.cr)
    drop_attempt_table(env.cr)
