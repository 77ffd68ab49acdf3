"""Scenario 7: queue_job's own jobrunner drains the queue beside this addon's runners.

A second server on the same database runs queue_job's jobrunner the standard way
(threaded, ``--load=base,web,queue_job``, ``ODOO_QUEUE_JOB_CHANNELS=root:4``): it is
notified of each job, enqueues it and calls ``/queue_job/runjob`` on that server, while
the runner crons (of both servers) and API callers take the same jobs. Without the
enqueue guard, the jobrunner overwrites jobs our runners just finished with 'enqueued'
and runs them again; here every job must end done, with exactly one effect.
"""

import contextlib
import json
import os
import time

from .harness import Stress
from .odoo_server import (
    Failure,
    OdooServer,
    check,
    job_group,
    log_lines,
    log_problems,
    wait_for,
)

JOBRUNNER_CHANNELS = "root:4"

# Enqueue in several commits, so that the jobrunner and the runner crons are already
# busy with the first batches when the next ones arrive.
ENQUEUE_BATCHES = """
group = json.loads({group!r})
env = env(context=dict(env.context, tracking_disable=True))
action = env["ir.actions.server"].create({{
    "name": "dqj stress: " + group["kind"],
    "model_id": env.ref("base.model_res_partner").id,
    "state": "code",
    "code": group["code"],
}})
env.cr.commit()
uuids = []
for _batch in range({batches}):
    uuids += [action.with_delay().run().uuid for _i in range({size})]
    env.cr.commit()
    time.sleep(0.2)
print("RESULT", json.dumps(uuids))
"""

ASKED = "queue_job.jobrunner.runner: asking Odoo to run job "
REFUSED = "was requested to run job "


def _size(st, short, full):
    return short if st.short else full


def start_jobrunner_server(st):
    """The database's second server, with queue_job's jobrunner in it; returns once
    the jobrunner is connected to the database."""
    server = OdooServer(
        st.db,
        workers=0,
        cron_threads=2,
        log_name="stress-jobrunner-server.log",
        extra_args=["--load=base,web,queue_job"],
        env={"ODOO_QUEUE_JOB_CHANNELS": JOBRUNNER_CHANNELS},
    )
    server.start()
    # The jobrunner thread waits 5 s after the server starts, then says so.
    wait_for(
        lambda: f"queue job runner ready for db {st.db.name}" in _log(server),
        60,
        "queue_job's jobrunner to connect to the database",
    )
    return server


def _log(server):
    if not os.path.exists(server.log):
        return ""
    with open(server.log, errors="replace") as log:
        return log.read()


def _count_uuids(lines, marker, uuids):
    """Lines with ``marker`` followed by one of ``uuids``."""
    return sum(
        1
        for line in lines
        if marker in line and line.split(marker, 1)[1].split()[0].strip(",") in uuids
    )


# The job's own row, as its body sees it: 'started' under queue_job's runjob (which
# commits that state before it runs the job), 'pending' under this addon's runners
# (which never commit it). Recorded in the effect row: who ran the job.
WHO_RAN = (
    "!env.cr.execute(\"UPDATE dqj_stress_effect SET kind = 'beside:' || (SELECT "
    'state FROM queue_job WHERE uuid = %s) WHERE uuid = %s", '
    "[env.context['job_uuid']] * 2)"
)


def jobrunner_beside(st):
    """queue_job's jobrunner, the runner crons and API callers drain the same jobs,
    enqueued in several commits: each job runs once."""
    batches, size = _size(st, (4, 50), (10, 200))
    n = batches * size
    st.reset()
    since = st.now()
    server = start_jobrunner_server(st)
    try:
        beside = Stress(st.db, server, st.key, st.short)
        start = time.monotonic()
        with beside.callers(2, batch_size=20, max_seconds=5) as api:
            uuids = st.db.shell(
                ENQUEUE_BATCHES.format(
                    group=json.dumps(job_group("beside", 1, after=[WHO_RAN])),
                    batches=batches,
                    size=size,
                )
            )
            check(len(uuids) == n, f"{len(uuids)} jobs enqueued, not {n}")
            st.wait_final(uuids, _size(st, 240, 900), interval=0.5)
        elapsed = time.monotonic() - start
        # Each enqueue of the jobrunner ends in a runjob call that runs the job or
        # refuses it; the last ones may still be on their way.
        with contextlib.suppress(Failure):
            wait_for(lambda: _accounted(st, server, uuids), 30, "the last runjob calls")
        asked, refused, by_jobrunner = _jobrunner_share(st, server, uuids)
        errors = log_problems(server.log)
    finally:
        server.stop()
    states = st.states(uuids)
    effects = st.effects(uuids)
    duplicates = st.duplicates(uuids, effects)
    lost = n - sum(1 for uuid in uuids if effects[uuid] == 1)
    runs = st.runs_since(since)
    by_source = {s: runs.get(s, (0, 0))[0] for s in ("api", "cron")}
    summary = (
        f"jobrunner beside: {n} jobs in {batches} commits, duplicates {duplicates}, "
        f"lost {lost}, done {states['done']}, failed {states['failed']}; ran by "
        f"queue_job's jobrunner {by_jobrunner} ({asked} enqueues, {refused} refused "
        f"by runjob) / api {by_source['api']} ({api['calls']} calls) / cron "
        f"{by_source['cron']}; jobrunner server errors {len(errors)}, {elapsed:.1f} s"
    )
    st.check_exactly_once(uuids, duplicates, lost, states["done"], summary)
    check(asked > 0, f"queue_job's jobrunner enqueued nothing, no race: {summary}")
    check(
        asked == by_jobrunner + refused,
        f"a jobrunner enqueue neither ran its job nor was refused: {summary}",
    )
    check(sum(by_source.values()) > 0, f"our runners ran nothing: {summary}")
    check(not errors, f"errors in {server.log}: {errors[:3]}")
    return summary


def _jobrunner_share(st, server, uuids):
    """The jobrunner's enqueues of these jobs, the runjob calls that refused one,
    and the jobs runjob ran (see WHO_RAN)."""
    mine = set(uuids)
    asked = _count_uuids(_log(server).splitlines(), ASKED, mine)
    refused = _count_uuids(log_lines(server.log, ("WARNING",)), REFUSED, mine)
    by_jobrunner = st.db.scalar(
        "SELECT count(*) FROM dqj_stress_effect WHERE uuid = ANY(%s) "
        "AND kind = 'beside:started'",
        [uuids],
    )
    return asked, refused, by_jobrunner


def _accounted(st, server, uuids):
    asked, refused, by_jobrunner = _jobrunner_share(st, server, uuids)
    return asked == by_jobrunner + refused
