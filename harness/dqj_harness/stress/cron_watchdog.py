"""Scenarios 7 to 9: the runner crons under Odoo's cron watchdog, in prefork.

Each starts a server of its own, ``--workers=2 --max-cron-threads=1
--limit-time-real-cron=75 --limit-time-real=120``, with Max Seconds 600 (so that the
cron worker's time limit, not the setting, bounds the runs) and the two runner crons
as the only runners (no API caller). Odoo's prefork master kills a cron worker 75 s
after its last heartbeat; the worker beats once per loop, before it sleeps (60 s plus
its pid mod 10, unless a NOTIFY wakes it) and before it runs every due cron one after
the other. Each scenario must finish every job, exactly once, with no cron worker
killed (no ``WorkerCron (...) timeout`` in the server's log), the runner crons'
``failure_count`` and their progress records' ``timed_out_counter`` at 0.

The heartbeat the runners count from is the scenario's: Odoo's other crons are set a
day away, the jobs are enqueued with the runner crons archived (no trigger), and the
scenario wakes the worker with the ``NOTIFY cron_trigger`` Odoo sends for a new
trigger, so that it runs an empty pass and beats; a second later the runner crons are
due, behind a scheduled action of the scenario's that runs first in the same pass and
sleeps: the runners get their turn that many seconds after the heartbeat, whatever
else wakes the worker meanwhile (every cron worker of a PostgreSQL cluster hears every
server's NOTIFY: on a shared machine a sleeping worker is woken at random, so the time
since its heartbeat cannot be set by letting it sleep).
"""

import contextlib
import time

import psycopg2

from .odoo_server import check, enqueue, job_group, settings, wait_for

LIMIT = 75
SERVER = {
    "workers": 2,
    "cron_threads": 1,
    "extra_args": (f"--limit-time-real-cron={LIMIT}", "--limit-time-real=120"),
}
PARAM_MAX_SECONDS = settings.PARAM_MAX_SECONDS

RUNNER_CRONS = "SELECT id FROM ir_cron WHERE dqj_queue_runner"
BEFORE_NAME = "dqj stress: a scheduled action before the runners"

# An ir.cron sleeping a while, first in its pass (priority 0; the runner crons have
# 5), inactive until the scenario needs it.
CREATE_BEFORE = f"""
cron = env["ir.cron"].create({{
    "name": {BEFORE_NAME!r},
    "model_id": env.ref("base.model_res_partner").id,
    "state": "code",
    "code": "pass",
    "user_id": env.ref("base.user_root").id,
    "interval_number": 1,
    "interval_type": "days",
    "priority": 0,
    "active": False,
}})
env.cr.commit()
print("RESULT", json.dumps(cron.id))
"""


def _size(st, short, full):
    return short if st.short else full


def _sleeping_jobs(kind, count, seconds):
    # The job writes its effect row (stamped with its start), then sleeps in Python,
    # its PostgreSQL session idle in transaction: a killed worker's transaction is
    # rolled back at once, effect row included.
    return job_group(kind, count, after=[f"!time.sleep({seconds})"])


def _set_param(st, key, value):
    st.db.sql(
        "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        [key, value],
    )


def _quiet_other_crons(st):
    # (dqj_queue_runner is NULL on the crons that existed before the addon.)
    st.db.sql(
        "UPDATE ir_cron SET nextcall = now() AT TIME ZONE 'UTC' + interval '1 day' "
        "WHERE dqj_queue_runner IS NOT TRUE"
    )
    st.db.sql(
        "DELETE FROM ir_cron_trigger WHERE cron_id NOT IN "
        "(SELECT id FROM ir_cron WHERE dqj_queue_runner)"
    )


def _scheduled_action_before(st):
    """The id of the scheduled action that runs before the runners (made once)."""
    rows = st.db.sql(
        "SELECT c.id FROM ir_cron c JOIN ir_act_server a "
        "ON a.id = c.ir_actions_server_id WHERE a.name->>'en_US' = %s",
        [BEFORE_NAME],
    )
    return rows[0][0] if rows else st.db.shell(CREATE_BEFORE)


@contextlib.contextmanager
def _watchdog_scenario(st, name):
    """A clean slate for a scenario on a server of its own, yielded (with the id of
    the scheduled action that runs before the runners) once its cron worker is up:
    the runner crons archived (enqueuing triggers no cron and sends no NOTIFY),
    Odoo's other crons a day away, Max Seconds 600 (read by the server when it
    starts), the runner crons' failure and timeout counters from zero."""
    st.server.stop()
    st.reset()
    st.pause_runner_crons()
    before = _scheduled_action_before(st)
    _quiet_other_crons(st)
    previous = st.db.sql(
        "SELECT value FROM ir_config_parameter WHERE key = %s", [PARAM_MAX_SECONDS]
    )
    _set_param(st, PARAM_MAX_SECONDS, "600")
    st.db.sql(
        "UPDATE ir_cron SET failure_count = 0, first_failure_date = NULL "
        "WHERE dqj_queue_runner"
    )
    st.db.sql(f"DELETE FROM ir_cron_progress WHERE cron_id IN ({RUNNER_CRONS})")
    try:
        with st.own_server(name, **SERVER) as server:
            wait_for(server.cron_worker_pids, 60, "the cron worker")
            yield server, before
    finally:
        st.db.sql("UPDATE ir_cron SET active = false WHERE id = %s", [before])
        if previous:
            _set_param(st, PARAM_MAX_SECONDS, previous[0][0])
        else:
            st.db.sql(
                "DELETE FROM ir_config_parameter WHERE key = %s", [PARAM_MAX_SECONDS]
            )


def _wake_cron_worker(st):
    """What ``ir.cron._notifydb`` does: the sleeping cron worker wakes up, runs the
    due crons, pings its watchdog pipe and sleeps again. Returns the moment.

    Cron workers LISTEN on a connection to the ``postgres`` database: every cron
    worker of the PostgreSQL cluster wakes up, whatever its database.
    """
    with contextlib.closing(psycopg2.connect(dbname="postgres")) as conn:
        conn.autocommit = True
        with conn.cursor() as cr:
            cr.execute("SELECT pg_notify('cron_trigger', %s)", [st.db.name])
    return time.monotonic()


def _runners_after(st, before, seconds):
    """Make the cron worker beat, then run, in one pass, the scheduled action
    sleeping ``seconds`` and the runner crons: they start that long after the
    heartbeat. Returns the moment of the heartbeat (``time.monotonic()``)."""
    st.db.sql(
        "UPDATE ir_act_server SET code = %s WHERE id = "
        "(SELECT ir_actions_server_id FROM ir_cron WHERE id = %s)",
        [f"time.sleep({seconds})", before],
    )
    beat = _wake_cron_worker(st)  # an empty pass, then the heartbeat
    time.sleep(1)  # that pass is over: nothing was due
    st.db.sql(
        "UPDATE ir_cron SET active = true, "
        "nextcall = now() AT TIME ZONE 'UTC' - interval '1 minute' "
        f"WHERE id = %s OR id IN ({RUNNER_CRONS})",
        [before],
    )
    _wake_cron_worker(st)
    return beat


def _runner_crons_idle(st):
    # A cron worker holds the row of the cron it runs (FOR NO KEY UPDATE) until the
    # cron's run is over; probing with SKIP LOCKED never waits.
    with contextlib.closing(st.db.connect(autocommit=False)) as conn:
        with conn.cursor() as cr:
            cr.execute(
                "SELECT count(*) FROM (SELECT id FROM ir_cron WHERE dqj_queue_runner "
                "AND active FOR NO KEY UPDATE SKIP LOCKED) free"
            )
            free = cr.fetchone()[0]
            cr.execute("SELECT count(*) FROM ir_cron WHERE dqj_queue_runner AND active")
            total = cr.fetchone()[0]
        conn.rollback()
    return free == total


def _wait_for_the_queue(st, uuids, timeout):
    """Poll until every job ended or ``timeout``; never raises (the summary tells)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not st.all_final(uuids):
        time.sleep(1)
    if st.all_final(uuids):
        wait_for(lambda: _runner_crons_idle(st), 120, "the runner crons to be idle")


def _outcome(st, server, uuids, since, beat):
    states = st.states(uuids)
    effects = st.effects(uuids)
    failure_count = st.db.scalar(
        "SELECT coalesce(max(failure_count), 0) FROM ir_cron WHERE dqj_queue_runner"
    )
    timed_out = st.db.scalar(
        "SELECT coalesce(max(timed_out_counter), 0) FROM ir_cron_progress "
        f"WHERE cron_id IN ({RUNNER_CRONS})"
    )
    runs, by_time = st.db.sql(
        "SELECT count(*), count(*) FILTER (WHERE stopped_by = 'time') "
        "FROM queue_job_run WHERE source = 'cron' AND date_start >= %s",
        [since],
    )[0]
    # When the first job started, in seconds after the heartbeat.
    first_job = st.db.scalar(
        "SELECT extract(epoch FROM clock_timestamp() - min(started)) "
        "FROM dqj_stress_effect WHERE uuid = ANY(%s)",
        [list(uuids)],
    )
    return {
        "n": len(uuids),
        "done": states["done"],
        "left": len(uuids) - states["done"],
        "effects": len(effects),
        "duplicates": st.duplicates(uuids, effects),
        "killed": server.cron_worker_timeouts(),
        "failure_count": failure_count,
        "timed_out": timed_out,
        "runs": runs,
        "by_time": by_time,
        "first_job": None if first_job is None else time.monotonic() - beat - first_job,
        "elapsed": time.monotonic() - beat,
    }


def _verdict(st, uuids, out, summary):
    check(out["killed"] == 0, f"cron workers killed by the watchdog: {summary}")
    check(out["done"] == out["n"], f"jobs not done: {summary}")
    check(
        out["effects"] == out["n"] and st.stray_effects(uuids) == 0,
        f"effects: {summary}",
    )
    check(out["duplicates"] == 0, f"jobs ran twice: {summary}")
    check(out["failure_count"] == 0, f"a runner cron counts failures: {summary}")
    check(out["timed_out"] == 0, f"a runner cron run timed out: {summary}")
    return summary


def _figures(out):
    first = "-" if out["first_job"] is None else f"{out['first_job']:.0f} s"
    return (
        f"done {out['done']}/{out['n']} ({out['left']} left), effects "
        f"{out['effects']}/{out['n']}, duplicates {out['duplicates']}, cron workers "
        f"killed {out['killed']}, failure_count {out['failure_count']}, "
        f"timed_out_counter {out['timed_out']}; first job started {first} after the "
        f"heartbeat; {out['runs']} runner cron runs ({out['by_time']} stopped by "
        f"time), {out['elapsed']:.1f} s"
    )


def _scenario(st, name, kind, count, seconds, after, timeout, what):
    """Jobs of ``seconds``; the runner crons' turn ``after`` s after a heartbeat.
    The summary line is ``what``, then the figures; the verdict fails on any fault."""
    with _watchdog_scenario(st, name) as (server, before):
        since = st.now()
        uuids, _committed = enqueue(st.db, [_sleeping_jobs(kind, count, seconds)])
        uuids = uuids[kind]
        beat = _runners_after(st, before, after)
        _wait_for_the_queue(st, uuids, timeout)
        out = _outcome(st, server, uuids, since, beat)
    return _verdict(st, uuids, out, f"cron watchdog: {what}: {_figures(out)}")


# ---------------------------------------------------------------- 7. the issue's case
def issue_case(st):
    """Jobs of 6 s whose runner crons get their turn a while after the heartbeat
    (the issue's first runner started 13 s after it): the runs must end before the
    watchdog, and the second runner cron, next in the same pass, gets only what the
    first left."""
    n, seconds, after = _size(st, 8, 12), 6, _size(st, 35, 15)
    what = (
        f"{n} jobs of {seconds} s, the runner crons' turn {after} s after the cron "
        f"worker's heartbeat (limit_time_real_cron {LIMIT}, one cron thread, two "
        "runner crons)"
    )
    timeout = _size(st, 240, 360)
    return _scenario(st, "watchdog", "watchdog", n, seconds, after, timeout, what)


# ---------------------------------------------------------------- 8. no time left
def backlog_after_long_sleep(st):
    """The backlog is waiting when the runner crons get their turn with no time
    left: 65 s after the heartbeat, as when the worker wakes from its full sleep (60
    s plus its pid mod 10) without a notification. The runner must not start a job;
    the work goes on in a fresh pass."""
    n, seconds, after = _size(st, 3, 8), 6, 65
    what = (
        f"{n} jobs of {seconds} s waiting when the runner crons get their turn "
        f"{after} s after the heartbeat (as after the worker's full sleep)"
    )
    timeout = _size(st, 240, 360)
    return _scenario(st, "watchdog-sleep", "sleep", n, seconds, after, timeout, what)


# ---------------------------------------------------------------- 9. slow jobs
def slow_jobs(st):
    """Jobs of 28 s right after a heartbeat: after two of them the next one is
    longer than the time left; the runner must leave it to a fresh pass, and so
    must the second runner cron, next in the same pass."""
    n, seconds = _size(st, 3, 4), 28
    what = f"{n} slow jobs of {seconds} s right after the heartbeat"
    timeout = _size(st, 300, 420)
    return _scenario(st, "watchdog-slow", "slow", n, seconds, 0, timeout, what)
