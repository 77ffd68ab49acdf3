"""Benchmark: deltatech_queue_job against OCA's queue_job_cron_jobrunner, same run.

Run it with ``./dev.sh bench`` (which prepares one database per runner: the two addons
exclude each other) or directly::

    python3 bench/bench.py --ours DB1 --baseline DB2 --addons-path P --data-dir D

Every figure comes from real Odoo processes (``odoo shell``) on real PostgreSQL:

- enqueue: N ``with_delay()`` calls in one transaction (trigger bookkeeping cost);
- drain: N trivial ``test_queue_job`` jobs by 1 and 2 runner processes, jobs/s, SQL
  statements per job, runner crashes (an exception escaping the runner, which a cron
  would have to restart), and jobs run more than once (``retry`` > 1);
- acquire: time to lock the next job with 1k, 100k and 1M pending jobs.
"""

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "stress"))
from odoo_server import Database, odoo_main, settings, start_with_input

ENQUEUE = """
import time
env = env(context=dict(env.context, tracking_disable=True))
model = env["test.queue.job"]
model.with_delay().testing_method(-1)  # warm the caches
env.cr.rollback()
env.cr.execute("DELETE FROM queue_job")
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

# Drains the queue; {runner} is the runner call. Crashes are counted and the runner
# restarted, as a cron would be on its next run.
DRAIN = """
import time
while time.time() < {start_at}:
    time.sleep(0.005)
crashes = 0
queries = env.cr.sql_log_count
start = time.perf_counter()
while True:
    try:
        {runner}
        env.cr.commit()
    except Exception as exc:
        crashes += 1
        env.cr.rollback()
        continue
    env.cr.execute(
        "SELECT count(*) FROM queue_job WHERE state = 'pending' "
        "AND (eta IS NULL OR eta <= now() at time zone 'utc')"
    )
    if not env.cr.fetchone()[0]:
        break
elapsed = time.perf_counter() - start
queries = env.cr.sql_log_count - queries
result = {{"seconds": elapsed, "crashes": crashes, "queries": queries}}
print("RESULT", json.dumps(result))
"""

OURS_RUNNER = (
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
    result_of(odoo_shell(args, db, ENQUEUE.format(jobs=args.jobs)))
    # Registry loading takes seconds; all processes start draining at one moment.
    start_at = time.time() + 8 + 2 * processes
    procs = [
        odoo_shell(args, db, DRAIN.format(start_at=start_at, runner=runner))
        for _i in range(processes)
    ]
    results = [result_of(proc) for proc in procs]
    wall = max(r["seconds"] for r in results)
    done = count(args, db, "state = 'done'")
    twice = count(args, db, "retry > 1")
    left = count(args, db, "state != 'done'")
    return {
        "jobs_per_s": done / wall,
        "queries_per_job": sum(r["queries"] for r in results) / max(done, 1),
        "crashes_per_1000": 1000 * sum(r["crashes"] for r in results) / max(done, 1),
        "ran_twice": twice,
        "not_done": left,
    }


def acquire(args, db, call):
    sizes = [int(s) for s in args.acquire_sizes.split(",")]
    script = ACQUIRE.format(sizes=sizes, acquire=call)
    return {int(k): v for k, v in result_of(odoo_shell(args, db, script)).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", required=True, help="database with this addon")
    parser.add_argument(
        "--baseline", required=True, help="database with cron_jobrunner"
    )
    parser.add_argument("--addons-path", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--acquire-sizes", default="1000,100000,1000000")
    args = parser.parse_args()

    rows = []

    def row(label, ours, base, unit, better="higher"):
        ratio = (
            (ours / base if better == "higher" else base / ours) if ours and base else 0
        )
        rows.append((label, ours, base, unit, ratio))
        print(
            f"{label:<44} ours {ours:>10.2f}  cron_jobrunner {base:>10.2f} {unit:<8}"
            f"  ratio {ratio:5.2f}x",
            flush=True,
        )

    print(f"benchmark: {args.jobs} trivial test_queue_job jobs per measurement")
    ours = enqueue(args, args.ours)
    base = enqueue(args, args.baseline)
    row(
        f"enqueue {args.jobs} with_delay() in one transaction",
        args.jobs / ours["seconds"],
        args.jobs / base["seconds"],
        "jobs/s",
    )
    print(f"  trigger rows: ours {ours['triggers']}, cron_jobrunner {base['triggers']}")

    for processes in (1, 2):
        ours = drain(args, args.ours, OURS_RUNNER, processes)
        base = drain(args, args.baseline, BASELINE_RUNNER, processes)
        row(
            f"drain, {processes} runner process(es)",
            ours["jobs_per_s"],
            base["jobs_per_s"],
            "jobs/s",
        )
        row(
            f"  SQL statements per job, {processes} process(es)",
            ours["queries_per_job"],
            base["queries_per_job"],
            "q/job",
            better="lower",
        )
        print(
            f"  runner crashes per 1000 jobs: ours {ours['crashes_per_1000']:.0f}, "
            f"cron_jobrunner {base['crashes_per_1000']:.0f}; jobs run twice: ours "
            f"{ours['ran_twice']}, cron_jobrunner {base['ran_twice']}; not done: ours "
            f"{ours['not_done']}, cron_jobrunner {base['not_done']}",
            flush=True,
        )
        if processes == 1:
            one = ours["jobs_per_s"]
        else:
            print(f"  ours, 2 processes / 1 process: {ours['jobs_per_s'] / one:.2f}x")

    # The opt-in "Asynchronous Commit" setting: commits stop waiting for their WAL
    # flush, which is what two runners on a small machine otherwise queue behind.
    set_async = (
        "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    )
    sql(args, args.ours, set_async, [settings.PARAM_ASYNC_COMMIT, "True"])
    try:
        fast = {n: drain(args, args.ours, OURS_RUNNER, n) for n in (1, 2)}
    finally:
        sql(args, args.ours, set_async, [settings.PARAM_ASYNC_COMMIT, "False"])
    for n, result in fast.items():
        label = f"drain, asynchronous commit, {n} process(es)"
        print(
            f"{label:<44} ours {result['jobs_per_s']:>10.2f} jobs/s; crashes "
            f"{result['crashes_per_1000']:.0f}/1000, run twice {result['ran_twice']}, "
            f"not done {result['not_done']}",
            flush=True,
        )
    ratio = fast[2]["jobs_per_s"] / fast[1]["jobs_per_s"]
    print(f"  ours with asynchronous commit, 2 processes / 1 process: {ratio:.2f}x")

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
