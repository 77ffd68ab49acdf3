"""The six scenarios. Each takes a :class:`harness.Stress`, returns its one-line
summary, and raises :class:`odoo_server.Failure` on any violated expectation."""

import contextlib
import os
import signal
import time

from .odoo_server import (
    RUNNING_LOCK_NS,
    Failure,
    check,
    enqueue,
    job_group,
    wait_for,
)


def _size(st, short, full):
    return short if st.short else full


def _elapsed(start):
    return time.monotonic() - start


# ---------------------------------------------------------------- 1. exactly once
def exactly_once(st):
    """N jobs drained by 4 API callers, the runner crons and a background thread at
    once; the effect table's primary key turns any second run into a failure."""
    n = _size(st, 500, 5000)
    st.reset()
    since = st.now()
    session = st.server.admin_session()  # logged in before the race starts
    uuids, _committed = enqueue(st.db, [job_group("once", n)])
    uuids = uuids["once"]
    start = time.monotonic()
    # The commit triggered the runner crons; now the background thread and the API.
    action = st.server.call_kw(
        session, "queue.job", "action_process_in_background", [[]]
    )
    check(
        action.get("tag") == "display_notification"
        and action["params"]["type"] == "success",
        f"the background runner did not start: {action}",
    )
    api = st.drive(
        lambda: not st.states(uuids)["pending"],
        _size(st, 180, 600),
        "the API callers to empty the queue",
        callers=4,
        batch_size=100,
        max_seconds=5,
    )
    st.wait_final(uuids, 120, "the runs in flight to finish")
    elapsed = _elapsed(start)
    states, effects, duplicates, lost = st.tally(uuids)
    runs = st.runs_since(since)
    by_source = {s: runs.get(s, (0, 0))[0] for s in ("api", "cron", "thread")}
    summary = (
        f"exactly-once: {n} jobs, duplicates {duplicates}, lost {lost}, "
        f"failed {states['failed']}, pending {states['pending']}, effects "
        f"{len(effects)}/{n}; ran by api {by_source['api']} "
        f"({api['calls']} calls) / cron {by_source['cron']} / thread "
        f"{by_source['thread']}, {elapsed:.1f} s"
    )
    st.check_exactly_once(uuids, duplicates, lost, states["done"], summary)
    check(len(effects) == n, f"effects: {summary}")
    for source, count in by_source.items():
        check(count > 0, f"the {source} runner took no job, not a race: {summary}")
    return summary


# ---------------------------------------------------------------- 2. crash mid-job
# Jobs a runner holds while their body sleeps, with the Odoo process running them.
RUNNING_IN_SLEEP = """
SELECT l.objid::integer, a.pid
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2 AND l.granted
  AND a.datname = current_database() AND a.state = 'active'
  AND a.query LIKE '%%pg_sleep%%'
"""


def _kill_workers_mid_job(st, wanted, deadline):
    """SIGKILL the Odoo process of a job in its sleep, ``wanted`` times."""
    killed = {}  # job id -> PostgreSQL backend of the killed run
    kinds = []
    while len(killed) < wanted:
        check(
            time.monotonic() < deadline,
            f"only {len(killed)} of {wanted} workers could be killed mid-job",
        )
        rows = st.db.sql(RUNNING_IN_SLEEP, [RUNNING_LOCK_NS])
        rows = [(job_id, backend) for job_id, backend in rows if job_id not in killed]
        if not rows:
            time.sleep(0.05)
            continue
        target = _pick_target(st, rows, kinds)
        if target is None:
            time.sleep(0.05)  # the jobs ended meanwhile, or their worker is gone
            continue
        job_id, backend, pid, kind = target
        os.kill(pid, signal.SIGKILL)
        killed[job_id] = backend
        kinds.append(kind)
    return killed, kinds


def _pick_target(st, rows, kinds):
    """A running job and its worker, preferring the kind of worker (cron or HTTP)
    killed less often so far: both kinds of death get exercised."""
    cron_pids = st.server.cron_worker_pids()
    wanted = "cron" if kinds.count("cron") <= kinds.count("http") else "http"
    found = None
    for job_id, backend in rows:
        # Only ever a worker of the server under test (never its master).
        pid = st.server.process_of_backend(backend)
        if pid is None:
            continue
        kind = "cron" if pid in cron_pids else "http"
        found = found or (job_id, backend, pid, kind)
        if kind == wanted:
            return job_id, backend, pid, kind
    return found


def crash_mid_job(st):
    """Kill -9 the process running a job, many times: nothing lost, no partial
    effect, every killed job done exactly once later."""
    wanted = _size(st, 4, 20)
    n = _size(st, 20, 90)
    st.reset()
    start = time.monotonic()
    uuids, _committed = enqueue(
        st.db, [job_group("crash", n, after=["SELECT pg_sleep(1.5)"])]
    )
    uuids = uuids["crash"]
    # The crons (triggered by the jobs' creation) and one API caller run the jobs;
    # killing an HTTP worker cuts that caller's call, which it survives.
    with st.callers(1, tolerate_cuts=True, batch_size=5, max_seconds=10) as api:
        killed, kinds = _kill_workers_mid_job(
            st, wanted, time.monotonic() + _size(st, 120, 400)
        )
        st.wait_final(uuids, _size(st, 180, 400), "the killed jobs to be run again")
    elapsed = _elapsed(start)
    check(st.server.proc.poll() is None, "the server died")
    states = st.states(uuids)
    effects = st.effects(uuids)
    rows = st.db.sql(
        "SELECT q.id, q.state, e.backend FROM queue_job q "
        "LEFT JOIN dqj_stress_effect e ON e.uuid = q.uuid WHERE q.id = ANY(%s)",
        [list(killed)],
    )
    partial = [job_id for job_id, _state, backend in rows if backend == killed[job_id]]
    rerun = [job_id for job_id, state, backend in rows if state == "done" and backend]
    lost = n - states["done"] - states["failed"]
    summary = (
        f"crash mid-job: {n} jobs, {len(killed)} workers killed mid-job "
        f"({kinds.count('cron')} cron, {kinds.count('http')} http), "
        f"killed jobs done once later {len(rerun)}/{len(killed)}, partial effects "
        f"{len(partial)}, lost {lost}, duplicates "
        f"{sum(1 for c in effects.values() if c > 1)}, failed {states['failed']}, "
        f"api calls cut {api['cut']}, {elapsed:.1f} s"
    )
    check(not partial, f"a killed run's write was committed: {summary}")
    check(len(rerun) == len(killed), f"killed jobs not run again: {summary}")
    check(states["done"] == n and not lost, f"jobs lost or failed: {summary}")
    check(len(effects) == n and st.stray_effects(uuids) == 0, f"effects: {summary}")
    return summary


# ---------------------------------------------------------------- 3. neighbours
def _neighbour_groups(st):
    pairs = _size(st, 4, 10)
    groups = []
    for pair in range(pairs):
        # Two jobs updating one row at the same time: the second one's snapshot
        # predates the first one's commit, so REPEATABLE READ refuses its update.
        conflict = [
            "SELECT pg_sleep(0.2)",
            f"UPDATE dqj_stress_shared SET n = n + 1 WHERE id = {100 + pair}",
            "SELECT pg_sleep(0.3)",
        ]
        groups.append(job_group("conflict", 2, before=conflict, priority=1))
    retryable = [
        "!job = env['queue.job'].search([('uuid', '=', env.context['job_uuid'])])",
        "!if job.retry < 2: raise RetryableJobError('stress: not yet', seconds=1)",
    ]
    groups += [
        job_group("good", _size(st, 40, 300)),
        job_group(
            "raise",
            _size(st, 10, 60),
            after=["!raise UserError('stress: planned failure')"],
        ),
        job_group("retryable", _size(st, 4, 10), before=retryable),
        job_group(
            "nothing",
            _size(st, 4, 10),
            after=["!raise NothingToDoJob('stress: nothing to do')"],
            effect=False,
        ),
    ]
    return pairs, groups


def failing_neighbours(st):
    """Good, raising, conflicting, retryable and nothing-to-do jobs in one queue."""
    st.reset()
    pairs, groups = _neighbour_groups(st)
    st.db.sql(
        "INSERT INTO dqj_stress_shared SELECT 100 + i, 0 FROM generate_series(0, %s) i",
        [pairs - 1],
    )
    since = st.now()
    start = time.monotonic()
    uuids, _committed = enqueue(st.db, groups)
    every = [uuid for kind in uuids.values() for uuid in kind]
    api = st.drain(
        every,
        _size(st, 180, 300),
        callers=2,
        batch_size=50,
        max_seconds=5,
    )
    elapsed = _elapsed(start)
    rows = st.db.sql(
        "SELECT uuid, state, retry, coalesce(exc_info, ''), coalesce(result, '') "
        "FROM queue_job WHERE uuid = ANY(%s)",
        [every],
    )
    job = {
        uuid: (state, retry, exc, result) for uuid, state, retry, exc, result in rows
    }
    effects = st.effects(every)

    def states_of(kind):
        return sorted({job[uuid][0] for uuid in uuids[kind]})

    raised = uuids["raise"]
    with_traceback = sum(
        1
        for uuid in raised
        if "Traceback" in job[uuid][2] and "stress: planned failure" in job[uuid][2]
    )
    shared = dict(st.db.sql("SELECT id, n FROM dqj_stress_shared"))
    postponed = sum(p for _processed, p in st.runs_since(since).values())
    retried = [job[uuid][1] for uuid in uuids["retryable"]]
    serialization = postponed - 2 * len(retried)
    failed = sum(1 for state, *_rest in job.values() if state == "failed")
    summary = (
        f"failing neighbours: {len(every)} jobs: good {len(uuids['good'])} "
        f"{'/'.join(states_of('good'))}, raising {len(raised)} "
        f"{'/'.join(states_of('raise'))} ({with_traceback} with traceback, effects "
        f"{sum(effects[u] for u in raised)}), conflicting {2 * pairs} "
        f"{'/'.join(states_of('conflict'))} after {serialization} serialization "
        f"retries, retryable {len(retried)} {'/'.join(states_of('retryable'))}, "
        f"nothing-to-do {len(uuids['nothing'])} {'/'.join(states_of('nothing'))}; "
        f"failed {failed}, api calls {api['calls']}, {elapsed:.1f} s"
    )
    for kind in ("good", "conflict", "retryable", "nothing"):
        check(states_of(kind) == ["done"], f"{kind} jobs not all done: {summary}")
        if kind != "nothing":
            check(
                all(effects[uuid] == 1 for uuid in uuids[kind]),
                f"{kind} effects: {summary}",
            )
    check(states_of("raise") == ["failed"], f"raising jobs: {summary}")
    check(with_traceback == len(raised), f"tracebacks missing: {summary}")
    check(not any(effects[uuid] for uuid in raised), f"raised writes kept: {summary}")
    check(failed == len(raised), f"a neighbour failed: {summary}")
    check(set(shared.values()) == {2}, f"conflicting updates lost: {shared}")
    check(serialization >= 1, f"no serialization failure happened: {summary}")
    check(set(retried) == {3}, f"retryable jobs ran {retried} times, not 3")
    check(
        all(job[u][3] == "stress: nothing to do" for u in uuids["nothing"]),
        f"nothing-to-do results: {summary}",
    )
    return summary


# ---------------------------------------------------------------- 4. budget
JOB_SECONDS = 0.5
# Client-side time beyond the runner's own: HTTP, key check, database pick.
HTTP_SLACK = 0.5


def budget_holds(st):
    """API calls with a budget return in time; the continuation trigger makes the
    runner crons finish the queue without further calls."""
    n = _size(st, 40, 120)
    budgets = _size(st, [2, 3], [2, 3, 2, 3, 2, 3])
    st.reset()
    st.pause_runner_crons()  # the jobs' creation triggers no cron
    uuids, _committed = enqueue(
        st.db,
        [job_group("budget", n, before=[f"SELECT pg_sleep({JOB_SECONDS})"])],
    )
    uuids = uuids["budget"]
    # Counted from before the crons are back: a run's start is the runner's own, a
    # little after the moment its cron was taken.
    since = st.now()
    st.resume_runner_crons()  # active, but with no trigger they stay idle
    time.sleep(2)
    check(st.states(uuids)["done"] == 0, "jobs ran before any runner was started")
    start = time.monotonic()
    calls = []
    for budget in budgets:
        result, wall = st.process(batch_size=1000, max_seconds=budget)
        calls.append((budget, wall, result))
    api_done = sum(result["processed"] for _b, _w, result in calls)
    st.wait_final(
        uuids,
        _size(st, 120, 240),
        "the runner crons to finish the queue without API calls",
    )
    elapsed = _elapsed(start)
    overshoot = max(wall - budget for budget, wall, _r in calls)
    by_time = sum(1 for _b, _w, result in calls if result["stopped_by"] == "time")

    def cron_done():
        return st.runs_since(since).get("cron", (0, 0))[0]

    # A run that found the queue empty committed its last job before its own record
    # (that commit comes after its last, empty, look): the jobs are all done a moment
    # before the last run says so. Wait for the records, bounded; the check below
    # says what is missing.
    with contextlib.suppress(Failure):
        wait_for(lambda: api_done + cron_done() >= n, 15, "the runs' records")
    cron = cron_done()
    states = st.states(uuids)
    summary = (
        f"budget: {n} jobs of {JOB_SECONDS} s, {len(calls)} API calls with "
        f"max_seconds {'/'.join(map(str, budgets))}: longest {overshoot:+.2f} s past "
        f"its budget (limit +{JOB_SECONDS + HTTP_SLACK:.1f}), stopped by time "
        f"{by_time}/{len(calls)}, {api_done} jobs by the API, {cron} by the cron "
        f"continuation; done {states['done']}, pending {states['pending']}, "
        f"{elapsed:.1f} s"
    )
    for budget, wall, result in calls:
        check(
            wall <= budget + JOB_SECONDS + HTTP_SLACK,
            f"a call with max_seconds={budget} took {wall:.2f} s: {summary}",
        )
        check(
            result["time_elapsed"] <= budget + JOB_SECONDS,
            f"the runner ran {result['time_elapsed']} s for {budget}: {summary}",
        )
    check(by_time == len(calls), f"a call did not stop by its budget: {summary}")
    check(states["done"] == n, f"jobs not done: {summary}")
    check(
        cron > 0 and api_done + cron == n,
        f"the runs do not add up to the jobs: {summary}; runs since "
        f"{since:%H:%M:%S.%f}: {st.run_log_since(since)}",
    )
    return summary


# ---------------------------------------------------------------- 6. slow database
def slow_database(st):
    """An outside transaction locks a job's row and rows that jobs update: the
    locked job is skipped, jobs hitting lock_timeout / statement_timeout are
    re-queued (the latter using a retry), the others are done meanwhile."""
    n = _size(st, 10, 50)
    st.reset()
    st.pause_runner_crons()  # the row lock must be taken before any runner looks
    st.db.sql("INSERT INTO dqj_stress_shared VALUES (2, 0), (3, 0)")
    uuids, _committed = enqueue(
        st.db,
        [
            job_group("locked", 1, priority=0),
            job_group(
                "lock_timeout",
                1,
                before=[
                    "SET LOCAL lock_timeout = '500ms'",
                    "UPDATE dqj_stress_shared SET n = n + 1 WHERE id = 2",
                ],
                priority=1,
            ),
            job_group(
                "statement_timeout",
                1,
                before=[
                    "SET LOCAL statement_timeout = '500ms'",
                    "UPDATE dqj_stress_shared SET n = n + 1 WHERE id = 3",
                ],
                priority=1,
            ),
            job_group("good", n),
        ],
    )
    (locked,) = uuids["locked"]
    (lock_to,) = uuids["lock_timeout"]
    (stmt_to,) = uuids["statement_timeout"]
    every = [uuid for kind in uuids.values() for uuid in kind]
    outside = st.db.connect(autocommit=False)
    try:
        with outside.cursor() as cr:
            cr.execute("SELECT id FROM queue_job WHERE uuid = %s FOR UPDATE", [locked])
            cr.execute("SELECT id FROM dqj_stress_shared WHERE id IN (2, 3) FOR UPDATE")
        # Runner crons stay archived while the lock is held: the re-queued jobs'
        # triggers (at their eta, to the minute) would add attempts at random.
        first, first_wall = st.process(batch_size=1000, max_seconds=30)
        after_first = _job_rows(st, [locked, lock_to, stmt_to])
        locked_effect = st.effects([locked])[locked]
        goods = st.states(uuids["good"])
        # The re-queued jobs are due again 5 s later: a second attempt, lock held.
        wait_for(
            lambda: _due(st, [lock_to, stmt_to]),
            30,
            "the re-queued jobs to be due again",
        )
        second, _wall = st.process(batch_size=1000, max_seconds=30)
        after_second = _job_rows(st, [lock_to, stmt_to])
    finally:
        outside.rollback()
        outside.close()
    st.resume_runner_crons()
    st.drain(every, 90, "every job to end after the release")
    final = _job_rows(st, every)
    effects = st.effects(every)
    summary = (
        f"slow database: {n + 3} jobs; row lock held outside: call took "
        f"{first_wall:.2f} s, {goods['done']}/{n} others done, locked job "
        f"{after_first[locked][0]} (skipped, not waited on); lock_timeout job "
        f"re-queued twice, retry {after_second[lock_to][1]}; statement_timeout job "
        f"re-queued twice, retry {after_second[stmt_to][1]}; after the release: "
        f"done {sum(1 for row in final.values() if row[0] == 'done')}/{n + 3}, "
        f"effects {len(effects)}/{n + 3}"
    )
    check(first_wall < 10, f"the runner waited on the locked row: {summary}")
    check(goods["done"] == n, f"the other jobs were not done: {summary}")
    check(after_first[locked][0] == "pending", f"locked job touched: {summary}")
    check(not locked_effect, f"the locked job ran: {summary}")
    for uuid, kind in ((lock_to, "lock timeout"), (stmt_to, "statement timeout")):
        state, _retry, result = after_first[uuid]
        check(state == "pending" and kind in result, f"{kind} job: {after_first}")
        check(after_second[uuid][0] == "pending", f"{kind} job: {after_second}")
    check(first["postponed"] == 2 and second["postponed"] == 2, f"{first} {second}")
    check(after_second[lock_to][1] == 0, f"lock_timeout used a retry: {summary}")
    check(after_second[stmt_to][1] == 2, f"statement_timeout retries: {summary}")
    check(
        all(row[0] == "done" for row in final.values()),
        f"jobs not done after the release: {summary}",
    )
    check(len(effects) == n + 3, f"effects: {summary}")
    return summary


def _job_rows(st, uuids):
    rows = st.db.sql(
        "SELECT uuid, state, retry, coalesce(result, '') FROM queue_job "
        "WHERE uuid = ANY(%s)",
        [list(uuids)],
    )
    return {uuid: (state, retry, result) for uuid, state, retry, result in rows}


def _due(st, uuids):
    return st.db.scalar(
        "SELECT bool_and(eta <= now() AT TIME ZONE 'UTC') FROM queue_job "
        "WHERE uuid = ANY(%s)",
        [list(uuids)],
    )
