"""Scenario "graphs and poison": what months of production traffic bring.

One queue, on the shared prefork server, drained by API callers and the runner crons
at once:

- job graphs built with queue_job's delayable API: ``chain(group(a, b, c), group(d,
  e), f)`` and ``group(a, b).on_done(c)``, whose parallel parents run at the same time
  on different runners: every child must run once, after all its parents;
- jobs whose outcome PostgreSQL refuses to store (a string with a NUL character):
  each must end failed with the storage error, the queue going on;
- poison jobs that SIGKILL the worker running them (as the OOM killer would), at
  priority 1 ahead of the others, with ``max_retries`` 2: each must end failed as
  ``WorkerDied`` after exactly 2 tries, and the neighbour jobs behind it be done;
- jobs allowed to commit in a sequential channel of capacity 1: their recorded
  spans (start committed, then end committed) must never overlap.

The job methods live in the test-only addon ``stress/addons/dqj_stress`` of the harness
(a server action cannot import ``os``), which the stress harness alone installs.
"""

import contextlib
import json
import threading
import time

import requests

from dqj_harness.kit import threads_running

from .odoo_server import Failure, check, settings, wait_for

MAX_RETRIES = 2
CHANNEL = "root.dqjstressseq"

SETUP = """
CREATE TABLE IF NOT EXISTS dqj_stress_graph (
    uuid varchar NOT NULL,
    kind varchar NOT NULL,
    started timestamptz NOT NULL,
    ended timestamptz
);
TRUNCATE dqj_stress_graph;
"""

ENQUEUE = """
from odoo.addons.queue_job.delay import chain, group
spec = json.loads({spec!r})
env = env(context=dict(env.context, tracking_disable=True))
model = env["dqj.stress.job"]
function = env["queue.job.function"].search(
    [("name", "=", "<dqj.stress.job>.committing")])
if not function:
    function = env["queue.job.function"].create({{
        "model_id": env["ir.model"]._get_id("dqj.stress.job"), "method": "committing"}})
function.allow_commit = True
params = env["ir.config_parameter"].sudo()
channels = params.get_param({param!r}) or ""
params.set_param({param!r}, ",".join(filter(None, [channels, {channel_rule!r}])))
# Running servers cache job functions and parameters: a shell must tell them.
env.cr.commit()
env.registry.signal_changes()

def work(seconds):
    return model.delayable().work("graph", seconds)

uuids = {{"graph": [], "root": [], "poison": [], "unstorable": [], "sequential": [],
          "neighbour": []}}
for g in range(spec["graphs"]):
    if g % 2:
        roots = [work(spec["parent_seconds"]) for _i in range(2)]
        children = [work(0)]
        group(*roots).on_done(*children).delay()
    else:
        roots = [work(spec["parent_seconds"]) for _i in range(3)]
        children = [work(0.2), work(0.2), work(0)]
        chain(group(*roots), group(*children[:2]), children[2]).delay()
    uuids["graph"] += [node._generated_job.uuid for node in roots + children]
    uuids["root"] += [node._generated_job.uuid for node in roots]
for _i in range(spec["poison"]):
    job = model.with_delay(priority=1, max_retries={max_retries}).poison()
    uuids["poison"].append(job.uuid)
for _i in range(spec["unstorable"]):
    uuids["unstorable"].append(model.with_delay(priority=3).unstorable().uuid)
for _i in range(spec["sequential"]):
    job = model.with_delay(channel={channel!r}).committing(spec["sequential_seconds"])
    uuids["sequential"].append(job.uuid)
for _i in range(spec["neighbours"]):
    uuids["neighbour"].append(model.with_delay(priority=5).work("neighbour").uuid)
env.cr.commit()
print("RESULT", json.dumps({{"uuids": uuids, "channels": channels}}))
"""

RESET = """
env["ir.config_parameter"].sudo().set_param({param!r}, {channels!r})
env.cr.commit()
env.registry.signal_changes()
print("RESULT", json.dumps({{"ok": True}}))
"""

# Pairs of spans of the sequential channel's jobs where the second started before
# the first ended (a span without end: its worker died before it ended).
OVERLAPS = """
SELECT count(*) FROM dqj_stress_graph a JOIN dqj_stress_graph b
  ON a.kind = 'sequential' AND b.kind = 'sequential' AND a.uuid != b.uuid
 AND b.started >= a.started AND b.started < coalesce(a.ended, 'infinity')
"""


def _size(st, short, full):
    return short if st.short else full


@contextlib.contextmanager
def _callers(st, count):
    """API callers in a loop, tolerant of everything (a poison job kills the HTTP
    worker of its call); yields their counts: calls, cut, and answers not 200."""
    totals = {"calls": 0, "cut": 0, "refused": 0, "processed": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                status, result, _elapsed = st.server.api(
                    params={"api_key": st.key, "batch_size": 10, "max_seconds": 5},
                    timeout=60,
                )
            except (requests.RequestException, ValueError):
                with lock:
                    totals["cut"] += 1
                time.sleep(0.5)
                continue
            with lock:
                totals["calls"] += 1
                if status != 200:
                    totals["refused"] += 1
                else:
                    totals["processed"] += result.get("processed", 0)
            if status != 200 or not result.get("processed"):
                time.sleep(0.3)

    with threads_running(loop, count, stop, join_timeout=90):
        yield totals


def graphs_and_poison(st):
    spec = {
        "graphs": _size(st, 8, 40),
        "parent_seconds": 0.4,
        "poison": _size(st, 2, 4),
        "unstorable": _size(st, 3, 10),
        "sequential": _size(st, 3, 6),
        "sequential_seconds": 1.0,
        "neighbours": _size(st, 10, 60),
    }
    st.reset()
    st.db.sql(SETUP)
    start = time.monotonic()
    result = st.db.shell(
        ENQUEUE.format(
            spec=json.dumps(spec),
            param=settings.PARAM_CHANNELS,
            channel=CHANNEL,
            channel_rule=f"{CHANNEL}:1:sequential",
            max_retries=MAX_RETRIES,
        )
    )
    uuids = result["uuids"]
    every = [uuid for kind, group in uuids.items() if kind != "root" for uuid in group]
    timed_out = None
    try:
        with _callers(st, 3) as api:
            try:
                wait_for(
                    lambda: st.all_final(every),
                    _size(st, 150, 480),
                    "every job to end",
                    interval=0.5,
                )
            except Failure as err:
                timed_out = str(err)
    finally:
        st.db.shell(
            RESET.format(param=settings.PARAM_CHANNELS, channels=result["channels"])
        )
    elapsed = time.monotonic() - start
    return _verdict(st, uuids, api, timed_out, elapsed)


def _verdict(st, uuids, api, timed_out, elapsed):
    every = [uuid for kind, group in uuids.items() if kind != "root" for uuid in group]
    rows = st.db.sql(
        "SELECT uuid, state, exc_name, "
        "coalesce(exc_message, '') || coalesce(exc_info, '') FROM queue_job "
        "WHERE uuid = ANY(%s)",
        [every],
    )
    job = {uuid: (state, exc_name, error) for uuid, state, exc_name, error in rows}
    runs = {
        (uuid, kind): count
        for uuid, kind, count in st.db.sql(
            "SELECT uuid, kind, count(*) FROM dqj_stress_graph GROUP BY uuid, kind"
        )
    }
    roots = set(uuids["root"])
    children = [uuid for uuid in uuids["graph"] if uuid not in roots]
    children_lost = sum(1 for uuid in children if job[uuid][0] != "done")
    graph_not_done = sum(1 for uuid in uuids["graph"] if job[uuid][0] != "done")
    duplicates = sum(
        1
        for (uuid, kind), count in runs.items()
        if kind in ("graph", "neighbour", "sequential") and count > 1
    )
    overlaps = st.db.scalar(OVERLAPS)
    tries = [runs.get((uuid, "poison try"), 0) for uuid in uuids["poison"]]
    poison_failed = [
        uuid
        for uuid, count in zip(uuids["poison"], tries, strict=True)
        if job[uuid][:2] == ("failed", "WorkerDied") and count == MAX_RETRIES
    ]
    unstorable_failed = [
        uuid
        for uuid in uuids["unstorable"]
        if job[uuid][0] == "failed" and "NUL" in job[uuid][2]
    ]
    neighbours_done = sum(1 for uuid in uuids["neighbour"] if job[uuid][0] == "done")
    sequential_done = sum(1 for uuid in uuids["sequential"] if job[uuid][0] == "done")
    summary = (
        f"graphs and poison: {len(every)} jobs; graphs {len(uuids['graph'])} jobs "
        f"({len(children)} children): children lost {children_lost}, graph jobs not "
        f"done {graph_not_done}, duplicates {duplicates}; overlaps in sequential "
        f"channels {overlaps} ({sequential_done}/{len(uuids['sequential'])} "
        f"committing jobs done); poison jobs failed after {MAX_RETRIES} tries "
        f"(WorkerDied) {len(poison_failed)}/{len(uuids['poison'])} (tries "
        f"{'/'.join(map(str, tries))}); unstorable failed with the storage error "
        f"{len(unstorable_failed)}/{len(uuids['unstorable'])}; neighbours done "
        f"{neighbours_done}/{len(uuids['neighbour'])}; api calls {api['calls']} "
        f"(cut {api['cut']}, not 200 {api['refused']}), {elapsed:.1f} s"
    )
    check(children_lost == 0, f"children lost: {summary}")
    check(graph_not_done == 0, f"graph jobs not done: {summary}")
    check(duplicates == 0, f"jobs ran twice: {summary}")
    check(overlaps == 0, f"a sequential channel overlapped: {summary}")
    check(
        len(poison_failed) == len(uuids["poison"]),
        f"poison jobs not failed after {MAX_RETRIES} tries: {summary}",
    )
    check(
        len(unstorable_failed) == len(uuids["unstorable"]),
        f"unstorable outcomes not failed with the storage error: {summary}",
    )
    check(
        neighbours_done == len(uuids["neighbour"])
        and sequential_done == len(uuids["sequential"]),
        f"neighbours not done: {summary}",
    )
    check(api["refused"] == 0, f"API calls answered with an error: {summary}")
    check(timed_out is None, f"{timed_out}: {summary}")
    return summary
