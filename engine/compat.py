# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""What differs between the Odoo series the addon serves (18.0, 19.0), in one place.

The rest of the addon calls these and never asks which Odoo it runs on. Each helper
looks for what the running Odoo offers, not at its version number.
"""

import configparser
import functools

import odoo
from odoo.tools import config


def server_wide_modules():
    """The server-wide modules (``--load``, ``server_wide_modules``) of this server.

    18.0 keeps the parsed list in ``odoo.conf``; 19.0 has no ``odoo.conf`` and its
    configuration option is the list itself.
    """
    conf = getattr(odoo, "conf", None)
    if conf is not None:
        return list(conf.server_wide_modules)
    modules = config["server_wide_modules"]
    if isinstance(modules, str):
        modules = modules.split(",")
    return [module.strip() for module in modules if module.strip()]


def report_cron_progress(env, done, remaining, commit):
    """Report a runner cron call's progress to Odoo's cron machinery; with
    ``commit``, commit the run's transaction with it.

    ``remaining`` > 0 asks Odoo to call the cron again at once in the same pass
    (``ir.cron._run_job`` on 19.0, ``_process_job`` on 18.0), 0 says this call
    finished. On 18.0 ``_notify_progress`` writes the progress in the transaction.
    On 19.0 ``_notify_progress`` is deprecated for ``_commit_progress``, which writes
    and commits; the seconds it returns are Odoo's own wish to stop calling the cron
    (10 s after the cron's start, and only after 10 calls): no time limit, so the
    runner's budget keeps counting from the watchdog's heartbeat
    (engine/watchdog.py) and the value is not used. A caller that owns the
    transaction (``commit`` false) gets the progress written, uncommitted, as
    ``_notify_progress`` writes it.
    """
    cron = env["ir.cron"]
    if not hasattr(cron, "_commit_progress"):  # 18.0
        cron._notify_progress(done=done, remaining=remaining)
        if commit:
            env.cr.commit()  # pylint: disable=invalid-commit
    elif commit:
        cron._commit_progress(done, remaining=remaining)
    else:
        progress = env["ir.cron.progress"].sudo()
        progress.browse(env.context["ir_cron_progress_id"]).write(
            {"done": done, "remaining": remaining}
        )


def config_section(name):
    """The ``[name]`` section of Odoo's configuration file, as a dict (empty when the
    file has none).

    18.0 parses every section at start-up into ``config.misc``; 19.0 keeps only
    ``[options]``, and the other sections are read from the file itself, as queue_job
    19.0 reads its own ``[queue_job]``.
    """
    misc = getattr(config, "misc", None)
    if misc is not None:
        return dict(misc.get(name) or {})
    path = config.get("config")
    return dict(_file_section(path, name)) if path else {}


@functools.lru_cache(maxsize=8)
def _file_section(path, name):
    """The section as the file holds it, read once per process (the settings are read
    at every run; Odoo reads its file once, at start-up, too)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return tuple(parser[name].items()) if parser.has_section(name) else ()
