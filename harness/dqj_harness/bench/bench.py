"""Benchmark: deltatech_queue_job against OCA's queue_job_cron_jobrunner, same run.

Run it with ``./dev.sh bench`` (which prepares one database per runner: the two addons
exclude each other) or directly::

    python -m dqj_harness.bench.bench --ours DB1 --baseline DB2 --addons-path P \\
        --data-dir D [--only defaults,backlog] [--jobs N] [--backlog N]

Every figure comes from real Odoo processes (``odoo shell``) on real PostgreSQL:

- ceiling: PostgreSQL alone (psycopg2, no Odoo), the rate of one-row transactions
  committed with 1, 2 and 4 connections: what no runner can beat;
- enqueue: N ``with_delay()`` calls in one transaction (trigger bookkeeping cost);
- drain: N trivial ``test_queue_job`` jobs by 1 and 2 runner processes, jobs/s, SQL
  statements per job (each run's own statements included), runner crashes (an
  exception escaping the runner, which a cron would have to restart), and jobs run
  more than once (``retry`` > 1); with the default settings (batch 20, 50 s: what
  users run, the runner called again and again), then tuned (batch 1000);
- backlog: the default settings draining N jobs at the head of a queue of 1,000,000
  more (``--backlog``), against the same N alone;
- async: the default settings with the opt-in asynchronous commit;
- acquire: time to lock the next job with 1k, 100k and 1M pending jobs.
"""

import json
import statistics
import sys
import threading
import time

import psycopg2

from dqj_harness.bench.options import argument_parser
from dqj_harness.stress.odoo_server import (
    Database,
    odoo_main,
    settings,
    start_with_input,
)

ENQUEUE = """
import time
env = env(context=dict(env.context, tracking_disable=True))
model = env["test.queue.job"]
model.with_delay().testing_method(-1)  # warm the caches
env.cr.rollback()
# A backlog (pending, priority 20: see BACKLOG) stays; everything else goes.
env.cr.execute("DELETE FROM queue_job WHERE state != 'pending' OR priority <= 10")
env.cr.execute("DELETE FROM ir_cron_trigger")
env.cr.commit()
start = time.perf_counter()
for i in range({jobs}):
    model.with_delay().testing_method(i)
env.flush_all()
env.cr.commit()
elapsed = time.perf_counter() - start
env.cr.execute("SELECT count(*) FROM ir_cron_trigger")
triggers = env.cr.fetchone()[0]
print("RESULT", json.dumps({{"seconds": elapsed, "triggers": triggers}}))
"""

# Drains the queue; {runner} is the runner call, repeated until no job of priority
# {priority} or less is left eligible (the backlog measurements leave lower-priority
# jobs behind). Crashes are counted and the runner restarted, as a cron would be on its
# next run. Only the runner's statements are counted, not this loop's own check.
DRAIN = """
import time
while time.time() < {start_at}:
    time.sleep(0.005)
crashes = 0
queries = 0
calls = 0
start = time.perf_counter()
while True:
    before = env.cr.sql_log_count
    try:
        {runner}
        env.cr.commit()
    except Exception as exc:
        crashes += 1
        env.cr.rollback()
        continue
    finally:
        queries += env.cr.sql_log_count - before
        calls += 1
    env.cr.execute(
        "SELECT EXISTS (SELECT 1 FROM queue_job WHERE state = 'pending' AND "
        "(eta IS NULL OR eta <= now() at time zone 'utc') AND priority <= {priority})"
    )
    if not env.cr.fetchone()[0]:
        break
elapsed = time.perf_counter() - start
result = {{"seconds": elapsed, "crashes": crashes, "queries": queries, "calls": calls}}
print("RESULT", json.dumps(result))
"""

# A backlog of {size} more jobs, copies of a real job at a lower priority (20) than
# the measured ones (10): the runner works at the head of a queue of that size.
BACKLOG = """
env.cr.execute(
    "INSERT INTO queue_job (uuid, user_id, company_id, name, model_name, method_name, "
    "records, args, kwargs, dependencies, func_string, state, priority, date_created, "
    "channel, job_function_id, channel_method_name, retry, max_retries) "
    "SELECT md5(random()::text || i::text), t.user_id, t.company_id, t.name, "
    "t.model_name, t.method_name, t.records, t.args, t.kwargs, t.dependencies, "
    "t.func_string, "
    "'pending', 20, t.date_created + i * interval '1 microsecond', t.channel, "
    "t.job_function_id, t.channel_method_name, 0, t.max_retries "
    "FROM (SELECT * FROM queue_job ORDER BY id LIMIT 1) t, generate_series(1, %s) i",
    [{size}],
)
env.cr.execute("ANALYZE queue_job")
env.cr.commit()
print("RESULT", json.dumps({{"backlog": {size}}}))
"""

# What users run: the settings' defaults (batch 20, 50 s), called again and again
# (each call is what one cron run or one API call does).
OURS_DEFAULT = 'env["queue.job"]._job_runner(source="manual")'
# A large batch, for the tuned figures beside the default ones.
OURS_TUNED = (
    'env["queue.job"]._job_runner(batch_size=1000, max_seconds=600, source="manual")'
)
BASELINE_RUNNER = 'env["queue.job"]._job_runner(commit=True)'

ACQUIRE = """
import time, statistics
env.cr.execute("DELETE FROM queue_job")
env.cr.commit()
results = {{}}
have = 0
for size in {sizes}:
    env.cr.execute(
        "INSERT INTO queue_job (uuid, state, priority, date_created, channel, "
        "model_name, method_name) "
        "SELECT md5(random()::text || i::text), 'pending', 10, "
        "now() at time zone 'utc' - i * interval '1 millisecond', 'root', "
        "'test.queue.job', 'testing_method' "
        "FROM generate_series(%s, %s) AS i",
        [have + 1, size],
    )
    have = size
    env.cr.execute("ANALYZE queue_job")
    env.cr.commit()
    timings = []
    for _i in range(25):
        start = time.perf_counter()
        job = {acquire}
        timings.append((time.perf_counter() - start) * 1000)
        assert job, "no job acquired"
        env.cr.rollback()
    results[size] = statistics.median(timings[5:])
env.cr.execute("DELETE FROM queue_job")
env.cr.commit()
print("RESULT", json.dumps(results))
"""


def odoo_shell(args, db, script):
    cmd = [*odoo_main(), "shell", "-d", db]
    cmd += ["--addons-path", args.addons_path, "--data-dir", args.data_dir]
    cmd += ["--no-http", "--log-level", "error"]
    return start_with_input(cmd, "import json\n" + script)


def result_of(proc, timeout=1800):
    out, err = proc.communicate(timeout=timeout)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"benchmark process failed:\n{out}\n{err}")


def sql(args, db, query, params=None):
    """Run ``query`` on the database ``db``; rows for a SELECT."""
    return Database(db, None, args.addons_path, args.data_dir, None).sql(query, params)


def count(args, db, where):
    return sql(args, db, f"SELECT count(*) FROM queue_job WHERE {where}")[0][0]


def enqueue(args, db):
    return result_of(odoo_shell(args, db, ENQUEUE.format(jobs=args.jobs)))


def drain(args, db, runner, processes):
    """Enqueue ``args.jobs`` jobs and drain them with ``processes`` runner processes
    (a backlog behind them, if the database has one, stays)."""
    result_of(odoo_shell(args, db, ENQUEUE.format(jobs=args.jobs)))
    # Registry loading takes seconds; all processes start draining at one moment.
    start_at = time.time() + 8 + 2 * processes
    script = DRAIN.format(start_at=start_at, runner=runner, priority=10)
    procs = [odoo_shell(args, db, script) for _i in range(processes)]
    results = [result_of(proc) for proc in procs]
    wall = max(r["seconds"] for r in results)
    done = count(args, db, "state = 'done'")
    twice = count(args, db, "retry > 1")
    left = count(args, db, "state != 'done' AND priority <= 10")
    return {
        "jobs_per_s": done / wall,
        "queries_per_job": sum(r["queries"] for r in results) / max(done, 1),
        "calls": sum(r["calls"] for r in results),
        "crashes_per_1000": 1000 * sum(r["crashes"] for r in results) / max(done, 1),
        "ran_twice": twice,
        "not_done": left,
    }


def drain_pairs(args, first, second, processes):
    """``args.repeat`` measurements of two drains, ``first`` and ``second`` (each a
    ``(database, runner)``), alternating which goes first: on a shared machine the
    load moves under a single measurement, the medians of pairs taken side by side
    are what can be compared. Returns both lists of results."""
    results = ([], [])
    for rep in range(args.repeat):
        order = (0, 1) if rep % 2 == 0 else (1, 0)
        for index in order:
            db, runner = (first, second)[index]
            results[index].append(drain(args, db, runner, processes))
    return results


def median_of(results, key="jobs_per_s"):
    return statistics.median(r[key] for r in results)


def spread(results, key="jobs_per_s"):
    values = [r[key] for r in results]
    return f"{min(values):.0f}-{max(values):.0f}"


def acquire(args, db, call):
    sizes = [int(s) for s in args.acquire_sizes.split(",")]
    script = ACQUIRE.format(sizes=sizes, acquire=call)
    return {int(k): v for k, v in result_of(odoo_shell(args, db, script)).items()}


PARTS = ("ceiling", "enqueue", "defaults", "tuned", "backlog", "async", "acquire")


def main():
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="drains measured side by side this many times (medians are printed)",
    )
    parser.add_argument("--acquire-sizes", default="1000,100000,1000000")
    parser.add_argument(
        "--backlog",
        type=int,
        default=1000000,
        help="pending jobs behind the drained ones, backlog measurement (0: none)",
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to measure, among {', '.join(PARTS)}",
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")

    print(f"benchmark: {args.jobs} trivial test_queue_job jobs per measurement")
    if "ceiling" in parts:
        measure_ceiling(args)
    if "enqueue" in parts:
        measure_enqueue(args)
    if "defaults" in parts:
        print(
            "default settings (batch 20, 50 s), the runner called until the queue is "
            "empty, as each cron run or API call calls it:"
        )
        measure_drains(args, "defaults", OURS_DEFAULT)
    if "tuned" in parts:
        print("tuned (batch 1000, 600 s):")
        measure_drains(args, "batch 1000", OURS_TUNED)
    if "backlog" in parts and args.backlog:
        measure_backlog(args)
    if "async" in parts:
        measure_async(args)
    if "acquire" in parts:
        measure_acquire(args)
    return 0


def row(label, ours, base, unit, better="higher"):
    ratio = (ours / base if better == "higher" else base / ours) if ours and base else 0
    print(
        f"{label:<44} ours {ours:>10.2f}  cron_jobrunner {base:>10.2f} {unit:<8}"
        f"  ratio {ratio:5.2f}x",
        flush=True,
    )


def measure_ceiling(args, commits=2000):
    """PostgreSQL alone, no Odoo: the rate of the smallest job-like transaction (one
    row updated, committed, waiting for its WAL flush), with 1, 2 and 4 connections.
    No runner commits faster than this; the scaling model (docs/scaling.rst) starts
    here."""
    sql(args, args.ours, "CREATE TABLE IF NOT EXISTS dqj_bench_ceiling (id int)")
    sql(args, args.ours, "TRUNCATE dqj_bench_ceiling")
    sql(args, args.ours, "INSERT INTO dqj_bench_ceiling SELECT generate_series(1, 4)")
    rates = {n: _commit_rate(args.ours, n, commits) for n in (1, 2, 4)}
    sql(args, args.ours, "DROP TABLE dqj_bench_ceiling")
    print(
        "PostgreSQL alone, one-row UPDATE + COMMIT per transaction: "
        + ", ".join(
            f"{rate:.0f}/s with {n} connection(s)" for n, rate in rates.items()
        ),
        flush=True,
    )


def _commit_rate(db, connections, commits):
    """Commits/s of ``connections`` sessions, each updating its own row."""
    conns = [psycopg2.connect(dbname=db) for _i in range(connections)]
    barrier = threading.Barrier(connections)

    def commit_loop(conn, row):
        barrier.wait()
        with conn.cursor() as cur:
            for _i in range(commits // connections):
                cur.execute("UPDATE dqj_bench_ceiling SET id = id WHERE id = %s", [row])
                conn.commit()

    threads = [
        threading.Thread(target=commit_loop, args=(conn, row + 1))
        for row, conn in enumerate(conns)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = commits / (time.perf_counter() - start)
    for conn in conns:
        conn.close()
    return rate


def measure_enqueue(args):
    ours = enqueue(args, args.ours)
    base = enqueue(args, args.baseline)
    row(
        f"enqueue {args.jobs} with_delay() in one transaction",
        args.jobs / ours["seconds"],
        args.jobs / base["seconds"],
        "jobs/s",
    )
    print(f"  trigger rows: ours {ours['triggers']}, cron_jobrunner {base['triggers']}")


def measure_drains(args, label, ours_runner):
    """Ours with ``ours_runner`` and cron_jobrunner, 1 then 2 processes, side by
    side (see drain_pairs)."""
    rates = {}
    for processes in (1, 2):
        ours, base = drain_pairs(
            args,
            (args.ours, ours_runner),
            (args.baseline, BASELINE_RUNNER),
            processes,
        )
        rates[processes] = median_of(ours)
        row(
            f"drain, {label}, {processes} process(es)",
            median_of(ours),
            median_of(base),
            "jobs/s",
        )
        print(
            f"  medians of {args.repeat} side by side; ranges: ours {spread(ours)}, "
            f"cron_jobrunner {spread(base)}",
            flush=True,
        )
        row(
            f"  SQL statements per job, {processes} process(es)",
            median_of(ours, "queries_per_job"),
            median_of(base, "queries_per_job"),
            "q/job",
            better="lower",
        )
        print(
            f"  runner calls: ours {ours[-1]['calls']}, cron_jobrunner "
            f"{base[-1]['calls']}; runner crashes per 1000 jobs: ours "
            f"{median_of(ours, 'crashes_per_1000'):.0f}, cron_jobrunner "
            f"{median_of(base, 'crashes_per_1000'):.0f}; jobs run twice: ours "
            f"{sum(r['ran_twice'] for r in ours)}, cron_jobrunner "
            f"{sum(r['ran_twice'] for r in base)}; not done: ours "
            f"{sum(r['not_done'] for r in ours)}, cron_jobrunner "
            f"{sum(r['not_done'] for r in base)}",
            flush=True,
        )
    print(f"  ours, 2 processes / 1 process: {rates[2] / rates[1]:.2f}x")


def measure_backlog(args):
    """The default settings at the head of a queue of ``args.backlog`` more jobs,
    against the same without: a copy of the database gets the backlog, and the two
    are measured side by side."""
    name = f"{args.ours}_backlog"
    backlog_db = Database(name, args.ours, args.addons_path, args.data_dir, None)
    backlog_db.create([])
    try:
        result_of(odoo_shell(args, name, ENQUEUE.format(jobs=10)))
        result_of(odoo_shell(args, name, BACKLOG.format(size=args.backlog)))
        plain, backlog = drain_pairs(
            args, (args.ours, OURS_DEFAULT), (name, OURS_DEFAULT), 1
        )
    finally:
        backlog_db.drop()
    label = f"drain, defaults, {args.backlog} more pending"
    print(
        f"{label:<44} ours {median_of(backlog):>10.2f} jobs/s, "
        f"{median_of(backlog, 'queries_per_job'):.2f} q/job (range "
        f"{spread(backlog)}); run twice {sum(r['ran_twice'] for r in backlog)}, "
        f"not done {sum(r['not_done'] for r in backlog)}",
        flush=True,
    )
    print(
        f"  ours with {args.backlog} more pending / with {args.jobs} pending (range "
        f"{spread(plain)}, side by side): "
        f"{median_of(backlog) / median_of(plain):.2f}x",
        flush=True,
    )


def measure_async(args):
    """The opt-in "Asynchronous Commit" setting: commits stop waiting for their WAL
    flush, which is what two runners on a small machine otherwise queue behind."""
    set_async = (
        "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    )
    sql(args, args.ours, set_async, [settings.PARAM_ASYNC_COMMIT, "True"])
    try:
        fast = {n: drain(args, args.ours, OURS_DEFAULT, n) for n in (1, 2)}
    finally:
        sql(args, args.ours, set_async, [settings.PARAM_ASYNC_COMMIT, "False"])
    for n, result in fast.items():
        label = f"drain, defaults, asynchronous commit, {n} process(es)"
        print(
            f"{label:<44} ours {result['jobs_per_s']:>10.2f} jobs/s; crashes "
            f"{result['crashes_per_1000']:.0f}/1000, run twice {result['ran_twice']}, "
            f"not done {result['not_done']}",
            flush=True,
        )
    ratio = fast[2]["jobs_per_s"] / fast[1]["jobs_per_s"]
    print(f"  ours with asynchronous commit, 2 processes / 1 process: {ratio:.2f}x")


def measure_acquire(args):
    ours = acquire(args, args.ours, 'env["queue.job"]._acquire_one_job()')
    base = acquire(args, args.baseline, 'env["queue.job"]._acquire_one_job()')
    for size in sorted(ours):
        row(
            f"acquire one job, {size} pending",
            ours[size],
            base[size],
            "ms",
            better="lower",
        )


if __name__ == "__main__":
    sys.exit(main())
