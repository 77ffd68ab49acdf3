# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Taking over a database that ran the original deltatech_queue_job (Terrabit's: on
18.0 up to 18.0.1.3.0, on 19.0 up to 19.0.1.4.3) and OCA's ``queue_job_cron_jobrunner``,
which the original depends on in both series.

The original leaves the same footprint on both series (the same parameters and XML
ids, no cron of its own, the same method names), so one takeover serves both:
``migrations/18.0.2.0.0`` and ``migrations/19.0.2.0.0`` (Odoo runs a folder only on
its own series, see :func:`pre_migrate`) both call :func:`pre_migrate` and
:func:`post_migrate`; the pre-init hook calls :func:`absorb_cron_jobrunner` on an
install beside ``queue_job_cron_jobrunner``. All but :func:`resume_queue` run before
this addon's models are loaded (a pre-migration or a pre-init hook), with SQL where
the ORM does not know a column yet. The README's "Migrating from the original" says
what each step does for the user.
"""

import logging

from odoo import SUPERUSER_ID, api
from odoo.exceptions import UserError
from odoo.tools.sql import column_exists, create_column

from odoo.addons.base.models.ir_model import MODULE_UNINSTALL_FLAG

from .engine.api_key import hash_api_key
from .engine.names import CRON_JOBRUNNER, MODULE
from .engine.settings import (
    BOUNDS,
    PARAM_API_KEY_HASH,
    PARAM_BATCH_SIZE,
    PARAM_MAX_SECONDS,
    PARAM_RUNNER_COUNT,
    SettingsError,
    check_int,
)

_logger = logging.getLogger(__name__)


# The original's parameters: (its key, the XML id of its data file that owns it, the
# port's parameter). The data file is not loaded any more, so an upgrade would delete
# them at its end (ir.model.data._process_end): they are read before, in pre-migrate.
ORIGINAL_API_KEY = ("queue_job_processor.api_key", "queue_processor_api_key")
ORIGINAL_INT_PARAMS = {
    "batch_size": (
        "queue_job_processor.batch_size",
        "queue_processor_batch_size",
        PARAM_BATCH_SIZE,
    ),
    "max_seconds": (
        "queue_job_processor.max_seconds",
        "queue_processor_max_seconds",
        PARAM_MAX_SECONDS,
    ),
}
# The key the original's data file shipped to every database up to 19.0.1.4.2: no
# secret at all (its 19.0.1.4.3 deletes it; an older database may still hold it).
PLACEHOLDER_KEY_PREFIX = "sk_live_CHANGE_ME"

# The original's UI that the port does not carry, children first. Its other XML ids
# (the form, list and search views of jobs, the settings view) are the port's too:
# the port's data files rewrite those records in place.
ORIGINAL_UI_DROPPED = (
    "menu_queue_job_config",
    "action_queue_job_config",
    "view_queue_job_tree_enhanced",
)

# A cron of queue_job_cron_jobrunner's kind: flagged as a runner and calling the runner.
RUNNER_CODE_PATTERN = "%_job_runner()%"


# ---------------------------------------------------------------- migration
def pre_migrate(cr, version):
    """Before this addon's models and data are loaded, on an upgrade from the original
    (``version``: the one installed; Odoo runs ``migrations/<series>.2.0.0`` only when
    it is of that series and older, so 18.0.1.x on 18.0 and 19.0.1.x on 19.0)."""
    if not version:
        return
    env = api.Environment(cr, SUPERUSER_ID, {})
    # Refused before anything changes when another module needs the cron runner.
    absorb_cron_jobrunner(env)
    carry_over_settings(env)
    drop_original_ui(env)


def post_migrate(cr, version):
    """After this addon's models and data are loaded: the queue resumes."""
    if not version:
        return
    resume_queue(api.Environment(cr, SUPERUSER_ID, {}))


# ---------------------------------------------------------------- settings
def carry_over_settings(env):
    """The original's API key, batch size and max seconds into this addon's settings.

    The key is stored as this addon's salted hash (the caller's scheduler keeps
    working with the same key), stretched with PBKDF2 as it was chosen by hand (see
    engine/api_key.py); its plain text is deleted, and so are the other two
    parameters once copied. The placeholder key of the original's data is dropped,
    which leaves no key: the API refuses every call until one is generated. Values the
    port already has are kept; a value out of the port's bounds is not copied.
    Returns the names of the settings carried over.
    """
    cr = env.cr
    keys = [ORIGINAL_API_KEY[0]] + [key for key, _x, _p in ORIGINAL_INT_PARAMS.values()]
    cr.execute(
        "SELECT key, value FROM ir_config_parameter WHERE key IN %s", [tuple(keys)]
    )
    found = dict(cr.fetchall())
    if not found:
        return []
    params = env["ir.config_parameter"].sudo()
    carried = []
    key = (found.get(ORIGINAL_API_KEY[0]) or "").strip()
    if key.startswith(PLACEHOLDER_KEY_PREFIX):
        _logger.info(
            "%s: the original's placeholder API key is dropped, not carried over: "
            "generate a key in Queue Job > Settings to use the external API",
            MODULE,
        )
    elif key and not params.get_param(PARAM_API_KEY_HASH):
        params.set_param(PARAM_API_KEY_HASH, hash_api_key(key, stretched=True))
        carried.append("api_key")
    for name, (original, _xmlid, ours) in ORIGINAL_INT_PARAMS.items():
        raw = found.get(original)
        if raw in (None, "") or params.get_param(ours):
            continue
        try:
            value = check_int(name, raw)
        except SettingsError as err:
            _logger.info("%s: %s not carried over: %s", MODULE, original, err)
            continue
        params.set_param(ours, str(value))
        carried.append(name)
    # unlink() takes their XML ids along: nothing is left for the end of the upgrade.
    params.search([("key", "in", keys)]).unlink()
    _logger.info(
        "%s: settings of the original carried over: %s (the plain-text key is deleted)",
        MODULE,
        ", ".join(carried) or "none",
    )
    return carried


# ---------------------------------------------------------------- UI
def drop_original_ui(env):
    """Delete the original's menu, action and view that the port has no use for.

    Done before the port's views are loaded: a view of the original inheriting one
    that the port rewrites could otherwise fail the rewrite's validation. Views
    inheriting the dropped one go with it, as on an uninstall.
    """
    dropped = []
    for name in ORIGINAL_UI_DROPPED:
        record = env.ref(f"{MODULE}.{name}", raise_if_not_found=False)
        if record:
            record.with_context(**{MODULE_UNINSTALL_FLAG: True}).unlink()
            dropped.append(name)
    if dropped:
        _logger.info("%s: the original's %s removed", MODULE, ", ".join(dropped))
    return dropped


# ---------------------------------------------------------------- cron runner
def absorb_cron_jobrunner(env):
    """Take the place of OCA's queue_job_cron_jobrunner, as a module merge does.

    Its runner crons made by hand (copies of its cron, for parallel runners) become
    this addon's runner crons; the number of parallel runners is set to include them.
    The module itself is marked 'to remove': at the end of this install or upgrade
    Odoo uninstalls it -- its cron, its ``ir.cron.queue_job_runner`` field and its view
    go -- and reloads the registry without it, so none of its overrides of queue.job
    (``_job_runner``, ``_acquire_one_job``, ``_process``, without ``super()``) is left
    in front of this addon's engine. Refused when another installed module depends on
    it: uninstalling it would break that module.

    Returns True when queue_job_cron_jobrunner was installed.
    """
    cr = env.cr
    cr.execute("SELECT state FROM ir_module_module WHERE name = %s", [CRON_JOBRUNNER])
    row = cr.fetchone()
    if not row or row[0] not in ("installed", "to upgrade"):
        return False
    dependents = _cron_jobrunner_dependents(cr)
    if dependents:
        raise UserError(
            env._(
                "%(module)s replaces queue_job_cron_jobrunner, which it uninstalls; "
                "but these installed modules depend on queue_job_cron_jobrunner: "
                "%(dependents)s. Make them depend on %(module)s instead, or uninstall "
                "them, then try again.",
                module=MODULE,
                dependents=", ".join(dependents),
            )
        )
    adopted, adopted_active = _adopt_runner_crons(cr)
    if adopted_active:
        # This addon's data file brings the default number of runner crons.
        params = env["ir.config_parameter"].sudo()
        if not params.get_param(PARAM_RUNNER_COUNT):
            default, _low, high = BOUNDS["runner_count"]
            params.set_param(
                PARAM_RUNNER_COUNT, str(min(high, default + adopted_active))
            )
    cr.execute(
        "UPDATE ir_module_module SET state = 'to remove' WHERE name = %s",
        [CRON_JOBRUNNER],
    )
    env["ir.module.module"].invalidate_model(["state"])
    _logger.info(
        "%s: takes over from %s (%s runner cron(s) made by hand adopted); "
        "%s is uninstalled at the end of this update",
        MODULE,
        CRON_JOBRUNNER,
        adopted,
        CRON_JOBRUNNER,
    )
    return True


def _cron_jobrunner_dependents(cr):
    cr.execute(
        """
        SELECT m.name
          FROM ir_module_module_dependency d
          JOIN ir_module_module m ON m.id = d.module_id
         WHERE d.name = %s AND m.name != %s
           AND m.state IN ('installed', 'to upgrade', 'to install')
         ORDER BY m.name
        """,
        [CRON_JOBRUNNER, MODULE],
    )
    return [name for (name,) in cr.fetchall()]


def _adopt_runner_crons(cr):
    """Flag queue_job_cron_jobrunner's hand-made runner crons as this addon's; return
    how many, and how many of them are active. Its own cron (its XML id) is not
    adopted: its uninstall deletes it, this addon's runner crons replace it."""
    if not column_exists(cr, "ir_cron", "queue_job_runner"):
        return 0, 0
    if not column_exists(cr, "ir_cron", "dqj_queue_runner"):
        # This addon's field, created now so that the crons can be flagged before its
        # models are loaded (the ORM then finds the column it would have made).
        create_column(cr, "ir_cron", "dqj_queue_runner", "boolean")
    cr.execute(
        """
        UPDATE ir_cron cron SET dqj_queue_runner = true
          FROM ir_act_server action
          -- The action's model by its id: its model_name is stored on 18.0 only.
          JOIN ir_model model ON model.id = action.model_id
         WHERE action.id = cron.ir_actions_server_id
           AND cron.queue_job_runner
           AND model.model = 'queue.job'
           AND action.code LIKE %s
           AND NOT EXISTS (
                SELECT 1 FROM ir_model_data data
                 WHERE data.model = 'ir.cron' AND data.res_id = cron.id
                   AND data.module = %s)
        RETURNING cron.active
        """,
        [RUNNER_CODE_PATTERN, CRON_JOBRUNNER],
    )
    actives = [active for (active,) in cr.fetchall()]
    return len(actives), sum(1 for active in actives if active)


# ---------------------------------------------------------------- jobs
def resume_queue(env):
    """After the upgrade: the jobs are queue_job's and stay as they were (pending ones
    pending, failed and cancelled ones with their history); the runner crons, which
    replace the original's cron and its triggers, are triggered for the pending ones."""
    env.cr.execute("SELECT state, count(*) FROM queue_job GROUP BY state")
    counts = dict(env.cr.fetchall())
    if counts.get("pending"):
        env["queue.job"]._cron_trigger()
    _logger.info(
        "%s: jobs kept as they were: %s",
        MODULE,
        ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
        or "none",
    )
