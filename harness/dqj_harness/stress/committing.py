"""Scenario "committing jobs": jobs that commit, with and without "Allow Commit",
beside plain jobs, while workers are killed in the middle of committing jobs."""

import collections
import os
import signal
import time

from .odoo_server import RUNNING_LOCK_NS, check

# A job's runs are recorded here, one row per run (the effect table of the other
# scenarios keys rows by job: a committing job that ran twice could not say so).
SETUP = """
CREATE TABLE IF NOT EXISTS dqj_stress_run (uuid varchar NOT NULL, backend integer);
TRUNCATE dqj_stress_run;
"""

RUN = (
    'env.cr.execute("INSERT INTO dqj_stress_run VALUES (%s, pg_backend_pid())", '
    "[env.context['job_uuid']])"
)

# Server actions allowed to commit (their job function, <ir.actions.server>.run, gets
# "Allow Commit"); crons run as jobs (<ir.cron>.method_direct_trigger, not allowed),
# some of which commit. One cron per job: a cron runs once at a time.
ENQUEUE = """
env = env(context=dict(env.context, tracking_disable=True))
function = env["queue.job.function"].search([("name", "=", "<ir.actions.server>.run")])
if not function:
    function = env["queue.job.function"].create({{
        "model_id": env.ref("base.model_ir_actions_server").id, "method": "run"}})
function.allow_commit = True
# Running servers cache job functions: a shell must tell them (the UI's request does),
# before the jobs exist.
env.cr.commit()
env.registry.signal_changes()
partner_model = env.ref("base.model_res_partner").id
allowed = env["ir.actions.server"].create({{
    "name": "dqj stress: allowed to commit", "model_id": partner_model,
    "state": "code", "code": {allowed_code!r}}})
uuids = {{"allowed": [], "refused": [], "plain": []}}
crons = {{}}
for kind, count, code in (("refused", {refused}, {refused_code!r}),
                          ("plain", {plain}, {plain_code!r})):
    for i in range(count):
        cron = env["ir.cron"].create({{
            "name": f"dqj stress: {{kind}} {{i}}", "model_id": partner_model,
            "state": "code", "code": "pass", "active": False,
            "interval_number": 1, "interval_type": "days"}})
        uuid = cron.with_delay().method_direct_trigger().uuid
        # A cron runs its code with a context of its own: the job's uuid is written
        # in the code instead of read from the context.
        cron.code = code.replace("env.context['job_uuid']", repr(uuid))
        uuids[kind].append(uuid)
for i in range({allowed_count}):
    uuids["allowed"].append(allowed.with_delay().run().uuid)
env.cr.commit()
print("RESULT", json.dumps({{"uuids": uuids}}))
"""

RESET_FUNCTION = """
function = env["queue.job.function"].search([("name", "=", "<ir.actions.server>.run")])
function.allow_commit = False
env["ir.cron"].with_context(active_test=False).search(
    [("name", "like", "dqj stress: %")]).unlink()
env.cr.commit()
env.registry.signal_changes()
print("RESULT", json.dumps({"ok": True}))
"""

# A committing job in the middle of its run: committed as 'started', its first run
# row committed, its worker's session lock held.
COMMITTING_NOW = """
SELECT q.id, q.uuid, l.pid FROM queue_job q
JOIN pg_locks l ON l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2
     AND l.objid = q.id AND l.granted
WHERE q.state = 'started' AND q.dqj_committing AND q.uuid = ANY(%s)
  AND EXISTS (SELECT 1 FROM dqj_stress_run r WHERE r.uuid = q.uuid)
"""


def _crons_run_in_their_own_transaction(st):
    """From Odoo 19.0 on, a cron run as a job (``method_direct_trigger``) runs on a
    cursor of its own, as the scheduler runs it; on 18.0, in the caller's."""
    version = st.db.scalar(
        "SELECT latest_version FROM ir_module_module WHERE name = 'base'"
    )
    return int(version.split(".")[0]) >= 19


def _size(st, short, full):
    return short if st.short else full


def _kill_committing_workers(st, uuids, wanted, deadline):
    killed = {}  # job uuid -> worker pid
    while len(killed) < wanted and time.monotonic() < deadline:
        rows = st.db.sql(COMMITTING_NOW, [RUNNING_LOCK_NS, list(uuids)])
        for _job_id, uuid, backend in rows:
            if uuid in killed:
                continue
            pid = st.server.process_of_backend(backend)
            if pid is None:
                continue
            os.kill(pid, signal.SIGKILL)
            killed[uuid] = pid
            break
        else:
            time.sleep(0.05)
    return killed


def committing_jobs(st):
    allowed_n = _size(st, 12, 60)
    refused_n = _size(st, 4, 15)
    plain_n = _size(st, 12, 60)
    wanted = _size(st, 2, 6)
    st.reset()
    st.db.sql(SETUP)
    start = time.monotonic()
    result = st.db.shell(
        ENQUEUE.format(
            allowed_code=RUN
            + "\nenv.cr.commit()\nenv.cr.execute('SELECT pg_sleep(1.5)')\n"
            + "env.cr.execute(\"UPDATE queue_job SET exc_message = 'half way' "
            "WHERE uuid = %s\", [env.context['job_uuid']])\nenv.cr.commit()",
            allowed_count=allowed_n,
            refused=refused_n,
            refused_code=RUN + "\nenv.cr.commit()",
            plain=plain_n,
            plain_code=RUN,
        )
    )
    uuids = result["uuids"]
    everything = [uuid for group in uuids.values() for uuid in group]
    try:
        with st.callers(1, tolerate_cuts=True, batch_size=5, max_seconds=10) as api:
            killed = _kill_committing_workers(
                st, uuids["allowed"], wanted, time.monotonic() + _size(st, 120, 300)
            )
            # A dead worker's committing job is requeued by the next run that looks
            # (each process looks at most once a minute), then runs again.
            st.wait_final(
                everything, _size(st, 240, 480), "every committing job to end"
            )
    finally:
        st.db.shell(RESET_FUNCTION)
    elapsed = time.monotonic() - start
    runs = collections.Counter(
        dict(
            st.db.sql(
                "SELECT uuid, count(*) FROM dqj_stress_run GROUP BY uuid",
            )
        )
    )
    states = {
        kind: collections.Counter(
            dict(
                st.db.sql(
                    "SELECT state, count(*) FROM queue_job WHERE uuid = ANY(%s) "
                    "GROUP BY state",
                    [group],
                )
            )
        )
        for kind, group in uuids.items()
    }
    refused_messages = st.db.scalar(
        "SELECT count(*) FROM queue_job WHERE uuid = ANY(%s) "
        "AND exc_info LIKE '%%Commit is forbidden in queue jobs%%'",
        [uuids["refused"]],
    )
    documented = [uuid for uuid in killed if runs[uuid] == 2]
    duplicates = [
        uuid for uuid, count in runs.items() if count > 1 and uuid not in killed
    ]
    lost = len(everything) - sum(sum(counter.values()) for counter in states.values())
    lost += sum(
        states[kind][state]
        for kind in states
        for state in states[kind]
        if state not in ("done", "failed")
    )
    refused_writes = sum(runs[uuid] for uuid in uuids["refused"])
    summary = (
        f"committing jobs: {len(everything)} jobs ({allowed_n} allowed to commit, "
        f"{refused_n} committing without it, {plain_n} plain), {len(killed)} workers "
        f"killed mid-job, killed jobs requeued and run again "
        f"{len(documented)}/{len(killed)} (the documented case), duplicates "
        f"{len(duplicates)}, lost {lost}, refused commits failed "
        f"{states['refused']['failed']}/{refused_n} (writes kept {refused_writes}), "
        f"api calls cut {api['cut']}, {elapsed:.1f} s"
    )
    check(len(killed) == wanted, f"not enough workers killed: {summary}")
    check(not duplicates and not lost, f"duplicates or lost jobs: {summary}")
    check(len(documented) == len(killed), f"killed jobs not rerun once: {summary}")
    failures = st.db.sql(
        "SELECT uuid = ANY(%s), exc_message FROM queue_job "
        "WHERE uuid = ANY(%s) AND state = 'failed' LIMIT 3",
        [uuids["plain"], uuids["allowed"] + uuids["plain"]],
    )
    check(
        states["allowed"]["done"] == allowed_n and states["plain"]["done"] == plain_n,
        f"jobs not done: {summary}; states {states}; failures {failures}",
    )
    if _crons_run_in_their_own_transaction(st):
        # Odoo 19.0's ir.cron.method_direct_trigger runs the cron as the scheduler
        # does, on a cursor of its own: its commits never reach the runner's
        # transaction, so there is nothing to refuse (the commit guard itself is
        # tested by the addon's suite on every series).
        check(
            states["refused"]["done"] == refused_n and refused_writes == refused_n,
            f"crons run as jobs (their own transaction) not done once: {summary}",
        )
    else:
        check(
            states["refused"]["failed"] == refused_n and refused_messages == refused_n,
            f"committing jobs without Allow Commit not failed as such: {summary}",
        )
        check(refused_writes == 0, f"a refused commit kept its writes: {summary}")
    check(
        all(runs[uuid] == 1 for uuid in uuids["plain"])
        and all(runs[uuid] >= 1 for uuid in uuids["allowed"]),
        f"runs: {summary}",
    )
    return summary
