"""Taking over from the original deltatech_queue_job, end to end, on real databases.

Run by ``./dev.sh test``, or directly::

    python -m dqj_harness.stress.takeover_check --template DB --addons-path P \\
        --data-dir D --log-dir L

1. **Upgrade.** A copy of the template gets OCA's ``queue_job_cron_jobrunner``,
   then the footprint the original leaves in a database on this Odoo series
   (18.0.1.3.0 on 18.0, 19.0.1.4.3 on 19.0), built from what is known of it (its
   code is not used): its module record and version, its dependency on
   ``queue_job_cron_jobrunner``, its three parameters owned by XML ids of its data
   file, its views, action and menu, a runner cron copied by hand, and jobs in every
   state. Then ``odoo -u deltatech_queue_job`` runs this checkout's code; its log
   must hold no WARNING and no ERROR. The database is checked (module records,
   parameters, crons, the original's XML ids, jobs), then a real server answers the
   scheduler that called the original, with the original's key and bodies, and its
   runner crons process the rest of the queue.
2. **Install beside queue_job_cron_jobrunner** (without the original): ``odoo -i``
   takes its place the same way, with a clean log. Installing it again afterwards
   from the command line (which Odoo cannot refuse) logs an error saying so.

OCA publishes ``queue_job_cron_jobrunner`` up to 18.0 only, while the original
19.0.1.4.3 depends on it: on a series without it on the addons path, the stand-in of
``takeover_addons`` beside this file (its footprint under its names) takes its place.

Each step prints one line; the databases are dropped at the end.
"""

import json
import os
import pathlib
import secrets
import signal
import sys
import time
import traceback

import requests

from odoo.release import series as SERIES

from .odoo_server import (
    PROCESS_ROUTE,
    STATS_ROUTE,
    Database,
    OdooServer,
    addon_version,
    check,
    log_problems,
    run_parser,
    run_step,
    settings,
    wait_for,
)

MODULE = "deltatech_queue_job"
CRON_JOBRUNNER = "queue_job_cron_jobrunner"
# The newest release of the original on each series.
ORIGINAL_VERSIONS = {"18.0": "18.0.1.3.0", "19.0": "19.0.1.4.3"}
# This checkout's version on the running series, which the upgrade and the install
# must record.
VERSION = addon_version(SERIES)
# queue_job_cron_jobrunner's stand-in, for a series OCA publishes no release of it for.
STAND_IN_ADDONS = pathlib.Path(__file__).resolve().parent / "takeover_addons"

# The original's views on each series (the same XML ids; their content as its
# views/queue_job_views.xml of that series has it). The enhanced list view inherits
# the original's own list on 18.0, queue_job's on 19.0.
BUTTONS_18 = (
    '<button name="start_cron_trigger" type="object" string="Cron Trigger"/>'
    '<button name="process_jobs" type="object" string="Process"/>'
    '<button name="action_process_api_thread" type="object" '
    'string="Process (Thread)"/>'
)
BUTTONS_19 = (
    '<button name="start_cron_trigger" type="object" string="Cron Trigger" '
    'display="always"/><button name="action_process_api_thread" type="object" '
    'string="Process Background" display="always"/>'
    '<button name="process_jobs" type="object" string="Process"/>'
)
FORM_18 = f'<data><xpath expr="//header" position="inside">{BUTTONS_18}</xpath></data>'
LIST_18 = (
    '<data><xpath expr="//field[@name=\'name\']" position="before"><header>'
    f"{BUTTONS_18}</header></xpath><xpath expr=\"//field[@name='uuid']\" "
    'position="after"><field name="identity_key" optional="show"/></xpath></data>'
)
# At a button the port's list does not have.
LIST_ENHANCED_18 = (
    '<data><xpath expr="//button[@name=\'process_jobs\']" position="after">'
    '<button name="action_process_api_thread" type="object" string="Thread"/>'
    "</xpath></data>"
)
SEARCH_18 = (
    '<data><xpath expr="//filter[@name=\'pending\']" position="before">'
    '<filter name="with_identity" string="With identity key" '
    "domain=\"[('identity_key', '!=', False)]\"/></xpath></data>"
)
LIST_19 = (
    f'<data><xpath expr="//list" position="inside"><header>{BUTTONS_19}</header>'
    '</xpath><xpath expr="//list" position="inside">'
    '<field name="identity_key" optional="hide"/></xpath></data>'
)
LIST_ENHANCED_19 = (
    '<data><field name="priority" position="after"><field name="date_created"/>'
    "</field></data>"
)
SEARCH_19 = (
    '<data><xpath expr="//filter[@name=\'group_by_graph\']" position="inside">'
    '<filter name="group_by_model_name" string="Model" '
    "context=\"{'group_by': 'model_name'}\"/></xpath></data>"
)
# name: (the view it inherits, its arch), in the order of its data file.
ORIGINAL_VIEWS = {
    "18.0": {
        "view_queue_job_form": ("queue_job.view_queue_job_form", FORM_18),
        "view_queue_job_tree": ("queue_job.view_queue_job_tree", LIST_18),
        "view_queue_job_tree_enhanced": (
            f"{MODULE}.view_queue_job_tree",
            LIST_ENHANCED_18,
        ),
        "view_queue_job_search": ("queue_job.view_queue_job_search", SEARCH_18),
    },
    "19.0": {
        "view_queue_job_tree": ("queue_job.view_queue_job_tree", LIST_19),
        "view_queue_job_form": ("queue_job.view_queue_job_form", FORM_18),
        "view_queue_job_tree_enhanced": (
            "queue_job.view_queue_job_tree",
            LIST_ENHANCED_19,
        ),
        "view_queue_job_search": ("queue_job.view_queue_job_search", SEARCH_19),
    },
}

# The original's footprint, built in an ``odoo shell`` of the database where
# queue_job_cron_jobrunner is installed (the original's code is not on the addons path
# under its name: this checkout is, so the module is recorded as installed last, in
# SQL, once this shell no longer needs a registry).
FIXTURE = r"""
env = env(context=dict(env.context, tracking_disable=True))
cr = env.cr
key = {key!r}
Data = env["ir.model.data"]


def xmlid(name, record):
    Data.create({{"module": "{module}", "name": name, "model": record._name,
                  "res_id": record.id, "noupdate": False}})


# Its data file's parameters.
Param = env["ir.config_parameter"]
for name, param, value in (
    ("queue_processor_api_key", "queue_job_processor.api_key", key),
    ("queue_processor_batch_size", "queue_job_processor.batch_size", "7"),
    ("queue_processor_max_seconds", "queue_job_processor.max_seconds", "45"),
):
    xmlid(name, Param.create({{"key": param, "value": value}}))


# Its views: inserted as rows, as its install left them (the methods their buttons
# call belong to its code, which this registry does not have, so the ORM would refuse
# to create them).
def view(name, model, parent, arch):
    kind = next(k for k in ("form", "search", "tree") if k in name)
    cr.execute(
        "INSERT INTO ir_ui_view (name, model, type, arch_db, inherit_id, mode, "
        "priority, active) VALUES (%s, %s, %s, %s, %s, 'extension', 16, true) "
        "RETURNING id",
        [name, model, kind.replace("tree", "list"), json.dumps({{"en_US": arch}}),
         env.ref(parent).id],
    )
    xmlid(name, env["ir.ui.view"].browse(cr.fetchone()[0]))


for name, (parent, arch) in json.loads({views!r}).items():
    view(name, "queue.job", parent, arch)
view("res_config_settings_view_form", "res.config.settings",
     "base.res_config_settings_view_form",
     '<data><xpath expr="//form" position="inside"><app string="Queue Job" '
     'name="queue_job"><block title="Queue Job Processor"><setting '
     'string="External Processor"><field name="queue_job_processor_api_key"/>'
     '<button name="action_generate_queue_job_processor_api_key" type="object" '
     'string="Generate Key"/><field name="queue_job_processor_batch_size"/>'
     '<field name="queue_job_processor_max_seconds"/></setting></block></app>'
     "</xpath></data>")

# Its settings fields, reflected as its install left them.
settings_model = env["ir.model"]._get("res.config.settings")
for fname, ttype, column in (
    ("queue_job_processor_api_key", "char", "varchar"),
    ("queue_job_processor_batch_size", "integer", "int4"),
    ("queue_job_processor_max_seconds", "integer", "int4"),
):
    cr.execute(f"ALTER TABLE res_config_settings ADD COLUMN {{fname}} {{column}}")
    cr.execute(
        "INSERT INTO ir_model_fields (model_id, model, name, field_description, "
        "ttype, state, store) VALUES (%s, 'res.config.settings', %s, %s, %s, "
        "'base', true) RETURNING id",
        [settings_model.id, fname, json.dumps({{"en_US": fname}}), ttype],
    )
    xmlid(f"field_res_config_settings__{{fname}}",
          env["ir.model.fields"].browse(cr.fetchone()[0]))

# Its settings action and menu.
action = env["ir.actions.act_window"].create({{
    "name": "Settings", "res_model": "res.config.settings", "view_mode": "form",
    "target": "current", "context": "{{'module': '{module}'}}",
}})
xmlid("action_queue_job_config", action)
xmlid("menu_queue_job_config", env["ir.ui.menu"].create({{
    "name": "Settings", "parent_id": env.ref("queue_job.menu_queue_job_root").id,
    "action": f"ir.actions.act_window,{{action.id}}", "sequence": 100,
}}))

# A second runner cron, copied by hand from queue_job_cron_jobrunner's (the way to run
# two runners in parallel with it).
runner = env.ref("{cron_jobrunner}.queue_job_cron")
copy = runner.copy({{"name": "Queue Job Runner (2)"}})
assert copy.queue_job_runner

# Jobs in every state.
model = env["test.queue.job"]
jobs = {{}}
for state, count in (("pending", 4), ("failed", 1), ("cancelled", 1), ("done", 1)):
    jobs[state] = [
        model.with_delay(identity_key=f"takeover-{{state}}-{{i}}").testing_method(i).uuid
        for i in range(count)
    ]
env.flush_all()
cr.execute(
    "UPDATE queue_job SET state = 'failed', retry = 1, date_started = date_created, "
    "exc_name = 'odoo.exceptions.UserError', exc_message = 'boom', "
    "exc_info = 'Traceback (most recent call last): boom' WHERE uuid IN %s",
    [tuple(jobs["failed"])],
)
cr.execute(
    "UPDATE queue_job SET state = 'cancelled', result = 'Cancelled by hand', "
    "date_cancelled = date_created WHERE uuid IN %s",
    [tuple(jobs["cancelled"])],
)
cr.execute(
    "UPDATE queue_job SET state = 'done', date_done = date_created, "
    "result = 'done before' WHERE uuid IN %s",
    [tuple(jobs["done"])],
)

# Last, the module record of the original, installed, with its dependencies.
cr.execute("SELECT id FROM ir_module_module WHERE name = '{module}'")
module_id = cr.fetchone()[0]
cr.execute(
    "UPDATE ir_module_module SET state = 'installed', latest_version = %s "
    "WHERE id = %s",
    ["{version}", module_id],
)
cr.execute("DELETE FROM ir_module_module_dependency WHERE module_id = %s", [module_id])
cr.execute("DELETE FROM ir_module_module_exclusion WHERE module_id = %s", [module_id])
for dependency in ("queue_job", "{cron_jobrunner}"):
    cr.execute(
        "INSERT INTO ir_module_module_dependency (module_id, name, "
        "auto_install_required) VALUES (%s, %s, true)",
        [module_id, dependency],
    )
env.cr.commit()
print("RESULT", json.dumps({{"jobs": jobs, "copy": copy.id}}))
"""

HAND_MADE_RUNNER = r"""
runner = env.ref("{cron_jobrunner}.queue_job_cron")
copy = runner.copy({{"name": "Queue Job Runner (2)"}})
env.cr.commit()
print("RESULT", json.dumps({{"copy": copy.id}}))
"""


def run_odoo(db, flag, log_name, module=MODULE, expected=()):
    """``odoo -i|-u MODULE --stop-after-init``: its log must be clean (no WARNING
    or worse), but for one line holding each of the ``expected`` texts."""
    log = db.odoo_init(flag, module, log_name, log_level="info")
    problems = log_problems(log, "WARNING")
    for text in expected:
        found = [line for line in problems if text in line]
        check(found, f"odoo {flag} {module} did not log {text!r}, see {log}")
        problems = [line for line in problems if text not in line]
    check(
        not problems,
        f"odoo {flag} {module} logged {len(problems)} problem(s):\n  "
        + "\n  ".join(problems[:20]),
    )
    return log


def module_states(db):
    return dict(
        db.sql(
            "SELECT name, state || ' ' || coalesce(latest_version, '-') "
            "FROM ir_module_module WHERE name IN %s",
            [(MODULE, CRON_JOBRUNNER)],
        )
    )


def check_cron_jobrunner_gone(db, copy_id):
    """queue_job_cron_jobrunner uninstalled and nothing of it left; its hand-made
    runner cron adopted as one of ours."""
    states = module_states(db)
    check(states[MODULE] == f"installed {VERSION}", f"modules: {states}")
    check(states[CRON_JOBRUNNER] == "uninstalled -", f"modules: {states}")
    left = db.sql(
        "SELECT model, name FROM ir_model_data WHERE module = %s", [CRON_JOBRUNNER]
    )
    check(not left, f"records of {CRON_JOBRUNNER} left: {left}")
    check(
        not db.sql(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_name = 'ir_cron' AND column_name = 'queue_job_runner'"
        ),
        "ir_cron.queue_job_runner is left",
    )
    adopted = db.sql("SELECT dqj_queue_runner FROM ir_cron WHERE id = %s", [copy_id])
    check(adopted == [(True,)], f"the hand-made runner cron is not adopted: {adopted}")
    crons = db.scalar("SELECT count(*) FROM ir_cron WHERE dqj_queue_runner AND active")
    count = db.scalar(
        "SELECT value FROM ir_config_parameter WHERE key = %s",
        [settings.PARAM_RUNNER_COUNT],
    )
    check(
        crons == 3 and count == "3",
        f"runner crons: {crons} active, runner_count {count!r} (expected 3 and 3)",
    )
    deps = db.sql(
        "SELECT d.name FROM ir_module_module_dependency d "
        "JOIN ir_module_module m ON m.id = d.module_id WHERE m.name = %s",
        [MODULE],
    )
    check(deps == [("queue_job",)], f"dependencies of {MODULE}: {deps}")


# ---------------------------------------------------------------- upgrade
def upgrade(base, name, key):
    db = base.clone(name)
    db.create(None)
    fixture = db.shell(
        FIXTURE.format(
            key=key,
            module=MODULE,
            cron_jobrunner=CRON_JOBRUNNER,
            version=ORIGINAL_VERSIONS[SERIES],
            views=json.dumps(ORIGINAL_VIEWS[SERIES]),
        )
    )
    jobs = fixture["jobs"]
    start = time.monotonic()
    run_odoo(db, "-u", "takeover-upgrade.log")
    seconds = time.monotonic() - start
    check_cron_jobrunner_gone(db, fixture["copy"])
    check_settings(db, key)
    check_original_ui(db)
    check_jobs_kept(db, jobs)
    api = check_old_key_and_callers(db, key, jobs)
    cron = check_runner_crons_drain(db, jobs)
    return (
        f"upgrade from {ORIGINAL_VERSIONS[SERIES]}: clean log ({seconds:.0f} s); "
        f"{CRON_JOBRUNNER} absorbed; settings carried over; the old key answered "
        f"{api}; the runner crons processed the other {cron} pending job(s)"
    )


def check_settings(db, key):
    leaks = db.sql(
        "SELECT key FROM ir_config_parameter WHERE value LIKE %s", [f"%{key}%"]
    )
    check(not leaks, f"the plain-text key is still stored: {leaks}")
    params = dict(
        db.sql(
            "SELECT key, value FROM ir_config_parameter "
            "WHERE key LIKE 'queue_job_processor.%%' OR key LIKE %s",
            [settings.PARAM_PREFIX + "%"],
        )
    )
    check(
        not [k for k in params if k.startswith("queue_job_processor.")],
        f"the original's parameters are left: {sorted(params)}",
    )
    stored = params.get(settings.PARAM_API_KEY_HASH, "")
    check(stored.startswith("pbkdf2_sha256$"), f"no hashed key: {stored!r}")
    check(
        (
            params.get(settings.PARAM_BATCH_SIZE),
            params.get(settings.PARAM_MAX_SECONDS),
        )
        == ("7", "45"),
        f"batch size / max seconds not carried over: {params}",
    )


def check_original_ui(db):
    rows = dict(
        db.sql(
            "SELECT name, model FROM ir_model_data WHERE module = %s AND name IN %s",
            [
                MODULE,
                (
                    "view_queue_job_form",
                    "view_queue_job_tree",
                    "view_queue_job_tree_enhanced",
                    "view_queue_job_search",
                    "res_config_settings_view_form",
                    "action_queue_job_config",
                    "menu_queue_job_config",
                    "queue_processor_api_key",
                    "queue_processor_batch_size",
                    "queue_processor_max_seconds",
                    "field_res_config_settings__queue_job_processor_api_key",
                ),
            ],
        )
    )
    kept = {
        "view_queue_job_form",
        "view_queue_job_tree",
        "view_queue_job_search",
        "res_config_settings_view_form",
    }
    check(set(rows) == kept, f"the original's XML ids after the upgrade: {rows}")
    arch = db.scalar(
        "SELECT v.arch_db->>'en_US' FROM ir_ui_view v JOIN ir_model_data d "
        "ON d.res_id = v.id AND d.model = 'ir.ui.view' "
        "WHERE d.module = %s AND d.name = 'view_queue_job_form'",
        [MODULE],
    )
    check("action_dqj_process" in arch, "the job form view is not the port's")
    check(
        not db.sql(
            "SELECT 1 FROM information_schema.columns WHERE table_name = "
            "'res_config_settings' AND column_name LIKE 'queue_job_processor%%'"
        ),
        "the original's settings columns are left",
    )


def check_jobs_kept(db, jobs):
    for state, uuids in jobs.items():
        states = {
            s
            for (s,) in db.sql(
                "SELECT state FROM queue_job WHERE uuid IN %s", [tuple(uuids)]
            )
        }
        check(states == {state}, f"{state} jobs are now {states}")
    failed = db.sql(
        "SELECT exc_info, exc_message, retry FROM queue_job WHERE uuid IN %s",
        [tuple(jobs["failed"])],
    )
    check(failed[0][1] == "boom" and failed[0][2] == 1, f"failed job: {failed}")
    cancelled = db.sql(
        "SELECT result, date_cancelled IS NOT NULL FROM queue_job WHERE uuid IN %s",
        [tuple(jobs["cancelled"])],
    )
    check(cancelled == [("Cancelled by hand", True)], f"cancelled job: {cancelled}")


def check_old_key_and_callers(db, key, jobs):
    """A server without cron workers: the scheduler's calls, as it sent them to the
    original, are served with the original's key."""
    server = OdooServer(db, workers=2, cron_threads=0, log_name="takeover-server.log")
    try:
        server.start()
        url = server.url
        stats = requests.get(url + STATS_ROUTE, headers={"X-Api-Key": key}, timeout=60)
        check(stats.status_code == 200, f"GET stats: {stats.status_code} {stats.text}")
        block = stats.json()["result"]["stats"]
        check(block["pending"] == 4 and block["failed"] == 1, f"stats: {block}")
        # The original's JSON-RPC body, the key in its params (its settings page).
        rpc = {"jsonrpc": "2.0", "id": 1, "params": {"api_key": key}}
        stats = requests.post(url + STATS_ROUTE, json=rpc, timeout=60)
        check(stats.status_code == 200, f"POST stats: {stats.status_code} {stats.text}")
        again = stats.json()["result"]["stats"]
        check((again["pending"], again["failed"]) == (4, 1), f"POST stats: {again}")
        # cron-job.org's body for the original, plus a parameter the port ignores.
        body = {"params": {"api_key": key, "batch_size": 2, "priority": "high"}}
        response = requests.post(url + PROCESS_ROUTE, json=body, timeout=120)
        result = response.json()["result"]
        check(response.status_code == 200, f"process: {response.status_code} {result}")
        check(
            (result["processed"], result["done"]) == (2, 2),
            f"process result: {result}",
        )
        check(result.get("warnings"), f"no warning for the unknown param: {result}")
        wrong = requests.post(
            url + PROCESS_ROUTE,
            json={"params": {"api_key": "not-" + key}},
            timeout=60,
        )
        check(wrong.status_code == 401, f"a wrong key got {wrong.status_code}")
    finally:
        server.stop()
    # The wrong key above is logged as a warning, on purpose; nothing else may be.
    problems = log_problems(server.log, "WARNING", excused=["queue API: refused"])
    check(not problems, "server log problems:\n  " + "\n  ".join(problems[:20]))
    done = done_count(db, jobs["pending"])
    check(done == 2, f"{done} of the pending jobs are done after the call")
    return "200 (GET and POST stats, then POST process: 2 jobs done)"


def done_count(db, uuids):
    return db.scalar(
        "SELECT count(*) FROM queue_job WHERE uuid IN %s AND state = 'done'",
        [tuple(uuids)],
    )


def check_runner_crons_drain(db, jobs):
    """The runner crons (the API run left a trigger: work was left) process the rest."""
    # Prefork: a cron worker finishes its job on SIGTERM (threaded mode closes its
    # cursor under it).
    server = OdooServer(db, workers=1, cron_threads=1, log_name="takeover-cron.log")
    try:
        server.start()
        wait_for(
            lambda: done_count(db, jobs["pending"]) == len(jobs["pending"]),
            120,
            "the runner crons to process the pending jobs",
        )
    finally:
        server.stop()
    problems = log_problems(server.log, "WARNING")
    check(not problems, "server log problems:\n  " + "\n  ".join(problems[:20]))
    check_jobs_kept(db, {k: v for k, v in jobs.items() if k != "pending"})
    return len(jobs["pending"]) - 2


# ---------------------------------------------------------------- install beside it
def install_beside(base, name):
    db = base.clone(name)
    db.create(None)
    copy = db.shell(HAND_MADE_RUNNER.format(cron_jobrunner=CRON_JOBRUNNER))["copy"]
    start = time.monotonic()
    run_odoo(db, "-i", "takeover-install.log")
    seconds = time.monotonic() - start
    check_cron_jobrunner_gone(db, copy)
    # The other way round, from the command line, Odoo cannot refuse it (only base
    # is loaded when it marks the module): the server says what is wrong.
    run_odoo(
        db,
        "-i",
        "takeover-install-cron-jobrunner.log",
        module=CRON_JOBRUNNER,
        expected=[f"{CRON_JOBRUNNER} is installed beside {MODULE}"],
    )
    return (
        f"install beside {CRON_JOBRUNNER}: clean log ({seconds:.0f} s); it is "
        f"uninstalled, its hand-made runner cron adopted; {CRON_JOBRUNNER} installed "
        "afterwards from the command line is reported as an error"
    )


def with_cron_jobrunner(addons_path):
    """The addons path, with queue_job_cron_jobrunner's stand-in after it when none
    of its folders holds the module (OCA publishes no release of it for 19.0)."""
    folders = [pathlib.Path(folder) for folder in addons_path.split(",") if folder]
    if any(
        (folder / CRON_JOBRUNNER / "__manifest__.py").exists() for folder in folders
    ):
        return addons_path
    print(
        f"{CRON_JOBRUNNER} is not on the addons path (no release for Odoo {SERIES}): "
        f"its stand-in takes its place ({STAND_IN_ADDONS.name}/)",
        flush=True,
    )
    return f"{addons_path},{STAND_IN_ADDONS}"


def main():
    parser = run_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(143))
    os.makedirs(args.log_dir, exist_ok=True)
    start = time.monotonic()
    prefix = f"dqj_takeover_{os.getpid()}"
    base = Database(
        prefix,
        args.template,
        with_cron_jobrunner(args.addons_path),
        args.data_dir,
        args.log_dir,
    )
    steps = (
        ("upgrade", lambda: upgrade(base, prefix + "_up", secrets.token_urlsafe(24))),
        ("install", lambda: install_beside(base, prefix + "_in")),
    )
    failures = 0
    try:
        base.create(CRON_JOBRUNNER)
        for name, step in steps:
            failures += run_step(name, step)
    except Exception:  # noqa: BLE001
        failures += 1
        print(f"FAIL setup:\n{traceback.format_exc()}", flush=True)
    finally:
        if os.environ.get("DQJ_KEEP_DB") != "1":
            for suffix in ("", "_up", "_in"):
                base.clone(prefix + suffix).drop()
    verdict = "FAILED" if failures else "passed"
    print(
        f"takeover: {verdict}, {failures} failure(s), {time.monotonic() - start:.0f} s",
        flush=True,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
