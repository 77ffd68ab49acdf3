"""End-to-end benchmark on running servers: deltatech_queue_job against OCA's
queue_job_cron_jobrunner, same run, same machine.

Run by ``./dev.sh bench`` after dqj_harness.bench.bench (it reuses that command's two
databases), or directly::

    python -m dqj_harness.bench.bench_server --ours DB1 --baseline DB2 \\
        --addons-path P --data-dir D --log-dir L

Each database is served by a real ``odoo`` (``--workers=2 --max-cron-threads=2``) on a
free loopback port, stopped at the end. Jobs are trivial server actions that record
their start (``clock_timestamp()``) in a side table; they are enqueued by ``odoo
shell`` processes. Measured:

- API drain (ours only; cron_jobrunner has no API): N jobs drained by 1, 2 and 4
  concurrent callers of ``POST /api/v1/queue/process``, runner crons archived;
- cron drain: N jobs committed at once, drained by the runner crons the commit
  triggered;
- trigger latency: 200 jobs committed one at a time (0.1 s apart), from each commit
  to the job's start, median and 95th percentile, against the stock cron interval;
- several servers (ours only): N jobs committed at once, drained by 1, 2 and 3 servers
  on the one database (``--workers=2 --max-cron-threads=1`` each, as hosts behind a
  load balancer would be), each with 2 API callers (one per HTTP worker) and its cron
  worker running the runner crons, from the commit to the last job's start.
"""

import contextlib
import statistics
import sys
import threading
import time

from dqj_harness.bench.options import argument_parser
from dqj_harness.stress.odoo_server import (
    Database,
    OdooServer,
    check,
    enqueue,
    hash_api_key,
    job_group,
    settings,
    wait_for,
)

EFFECT_TABLE = (
    "CREATE TABLE IF NOT EXISTS dqj_stress_effect (uuid varchar PRIMARY KEY, "
    "kind varchar NOT NULL, backend integer, started timestamptz NOT NULL)"
)

# One job per transaction, each commit's time recorded right after it.
TRICKLE = """
env = env(context=dict(env.context, tracking_disable=True))
action = env["ir.actions.server"].create({{
    "name": "dqj bench: latency",
    "model_id": env.ref("base.model_res_partner").id,
    "state": "code",
    "code": {code!r},
}})
env.cr.commit()
committed = {{}}
for _i in range({count}):
    job = action.with_delay().run()
    env.cr.commit()
    committed[job.uuid] = time.time()
    time.sleep({gap})
print("RESULT", json.dumps(committed))
"""

ODOO_CRON_POLL = 60  # odoo.service.server.SLEEP_INTERVAL: cron workers' poll, s


class Bench:
    def __init__(self, db, server, key=None):
        self.db = db
        self.server = server
        self.key = key

    def reset(self):
        self.db.sql("DELETE FROM queue_job")
        self.db.sql("TRUNCATE dqj_stress_effect")

    def runner_crons(self, active):
        column = "dqj_queue_runner" if self.key else "queue_job_runner"
        self.db.sql(f"UPDATE ir_cron SET active = %s WHERE {column}", [active])
        self.db.sql(
            "DELETE FROM ir_cron_trigger WHERE cron_id IN "
            f"(SELECT id FROM ir_cron WHERE {column})"
        )

    def cron_interval(self):
        column = "dqj_queue_runner" if self.key else "queue_job_runner"
        number, unit = self.db.sql(
            f"SELECT interval_number, interval_type FROM ir_cron WHERE {column} "
            "ORDER BY id LIMIT 1"
        )[0]
        return f"{number} {unit.rstrip('s') if number == 1 else unit}"

    def all_done(self, n):
        return (
            self.db.scalar("SELECT count(*) FROM queue_job WHERE state = 'done'") == n
        )

    # ------------------------------------------------------------ measurements
    def api_drain(self, n, callers):
        """Jobs/s of ``callers`` concurrent API callers (runner crons archived)."""
        self.reset()
        self.runner_crons(False)
        enqueue(self.db, [job_group("drain", n)])
        ends = []
        errors = []
        barrier = threading.Barrier(callers + 1)

        def loop():
            barrier.wait()
            try:
                while True:
                    status, result, _wall = self.server.api(
                        params={"api_key": self.key, "batch_size": 200}
                    )
                    check(status == 200, f"API call refused: {result}")
                    if not result["pending_count"]:
                        break
            except Exception as err:  # noqa: BLE001 -- reported below
                errors.append(err)
            ends.append(time.monotonic())

        threads = [threading.Thread(target=loop) for _i in range(callers)]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.monotonic()
        for thread in threads:
            thread.join(timeout=900)
        check(not errors, f"API caller failed: {errors[:1]}")
        wait_for(lambda: self.all_done(n), 60, "every job done")
        self.runner_crons(True)
        return n / (max(ends) - start)

    def cron_drain(self, n):
        """Jobs/s of the runner crons the jobs' commit triggered."""
        self.reset()
        self.runner_crons(True)
        _uuids, committed = enqueue(self.db, [job_group("drain", n)])
        wait_for(lambda: self.all_done(n), 900, "the crons to drain the queue")
        last = self.db.scalar(
            "SELECT extract(epoch FROM max(started)) FROM dqj_stress_effect"
        )
        return n / (float(last) - committed)

    def trigger_latency(self, count, gap):
        """Seconds from each job's commit to its start, driven by cron triggers."""
        self.reset()
        self.runner_crons(True)
        code = (
            'env.cr.execute("INSERT INTO dqj_stress_effect VALUES '
            "(%s, 'latency', pg_backend_pid(), clock_timestamp())\", "
            "[env.context['job_uuid']])"
        )
        committed = self.db.shell(TRICKLE.format(code=code, count=count, gap=gap))
        wait_for(lambda: self.all_done(count), 120, "every latency job done")
        started = dict(
            self.db.sql(
                "SELECT uuid, extract(epoch FROM started)::float FROM dqj_stress_effect"
            )
        )
        latencies = sorted(started[uuid] - at for uuid, at in committed.items())
        check(len(latencies) == count, "latency jobs missing")
        p95 = latencies[max(0, round(0.95 * count) - 1)]
        return statistics.median(latencies), p95


# The servers of the several-servers drain, and the API callers of each.
SEVERAL = {"workers": 2, "cron_threads": 1}
CALLERS_PER_SERVER = 2
MOST_SERVERS = 3


def servers_drain(bench, n):
    """Jobs/s of 1, 2 ... MOST_SERVERS servers on the database, the jobs the API
    callers ran of them (the rest, the runner crons), by number of servers. The
    database's own server must be stopped: its cron workers would take jobs too."""
    figures = {}
    servers = []
    try:
        for count in range(1, MOST_SERVERS + 1):
            server = OdooServer(
                bench.db, log_name=f"bench-server-ours-{count}-of-3.log", **SEVERAL
            )
            servers.append(server.start())
            figures[count] = _drain_on(bench, servers, n)
    finally:
        for server in servers:
            server.stop()
    return figures


def _drain_on(bench, servers, n):
    """Every server's API callers and runner crons drain ``n`` jobs committed at once;
    the callers poll from before the commit, as the crons are woken by it."""
    bench.reset()
    bench.runner_crons(True)
    stop = threading.Event()
    lock = threading.Lock()
    errors = []
    by_api = [0]

    def loop(server):
        try:
            while not stop.is_set():
                status, result, _wall = server.api(
                    params={"api_key": bench.key, "batch_size": 200}
                )
                check(status == 200, f"API call refused: {result}")
                with lock:
                    by_api[0] += result["processed"]
                if not result["processed"]:
                    time.sleep(0.2)
        except Exception as err:  # noqa: BLE001 -- reported below
            errors.append(err)

    threads = [
        threading.Thread(target=loop, args=(server,))
        for server in servers
        for _i in range(CALLERS_PER_SERVER)
    ]
    for thread in threads:
        thread.start()
    try:
        _uuids, committed = enqueue(bench.db, [job_group("drain", n)])
        wait_for(lambda: bench.all_done(n) or errors, 900, "the servers to drain")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
    check(not errors, f"API caller failed: {errors[:1]}")
    last = bench.db.scalar(
        "SELECT extract(epoch FROM max(started)) FROM dqj_stress_effect"
    )
    return n / (float(last) - committed), by_api[0]


@contextlib.contextmanager
def serving(args, name, ours):
    db = Database(name, None, args.addons_path, args.data_dir, args.log_dir)
    db.sql(EFFECT_TABLE)
    db.sql("DELETE FROM queue_job")
    db.sql("DELETE FROM ir_cron_trigger")
    db.sql("VACUUM ANALYZE queue_job")
    key = None
    if ours:
        key = "bench-" + name
        db.sql(
            "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [settings.PARAM_API_KEY_HASH, hash_api_key(args.addons_path, key)],
        )
    server = OdooServer(db, log_name=f"bench-server-{'ours' if ours else 'base'}.log")
    try:
        server.start()
        yield Bench(db, server, key)
    finally:
        server.stop()


def measure(args, name, ours):
    figures = {}
    with serving(args, name, ours) as bench:
        figures["interval"] = bench.cron_interval()
        if ours:
            for callers in (1, 2, 4):
                figures[f"api{callers}"] = bench.api_drain(args.jobs, callers)
        figures["cron"] = bench.cron_drain(args.jobs)
        figures["latency"] = bench.trigger_latency(args.latency_jobs, args.gap)
    if ours:  # its own server stopped: the servers of the drain are alone
        figures["servers"] = servers_drain(bench, args.jobs)
    return figures


def main():
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.1, help="s between commits")
    args = parser.parse_args()

    print(
        f"end-to-end on running servers (--workers=2 --max-cron-threads=2): "
        f"{args.jobs} trivial server-action jobs per drain",
        flush=True,
    )
    ours = measure(args, args.ours, True)
    base = measure(args, args.baseline, False)

    def line(label, mine, theirs, unit):
        print(f"{label:<48} ours {mine:>8}  cron_jobrunner {theirs:>8} {unit}")

    for callers in (1, 2, 4):
        line(
            f"drain, {callers} API caller(s)",
            f"{ours[f'api{callers}']:.1f}",
            "n/a",
            "jobs/s",
        )
    line(
        "drain, runner crons (triggered)",
        f"{ours['cron']:.1f}",
        f"{base['cron']:.1f}",
        "jobs/s",
    )
    for index, label in ((0, "median"), (1, "95th percentile")):
        line(
            f"commit -> start, cron trigger, {label}",
            f"{ours['latency'][index]:.2f}",
            f"{base['latency'][index]:.2f}",
            "s",
        )
    print(
        f"  over {args.latency_jobs} jobs committed {args.gap} s apart; stock cron "
        f"interval: ours {ours['interval']}, cron_jobrunner {base['interval']}, and "
        f"without a trigger Odoo's cron workers only look every {ODOO_CRON_POLL} s "
        f"(a job would wait {ODOO_CRON_POLL / 2:.0f} s on average)",
        flush=True,
    )
    for count, (rate, _by_api) in ours["servers"].items():
        servers = f"{count} server{'s' if count > 1 else ''}"
        line(
            f"drain, {servers}, {count * CALLERS_PER_SERVER} API callers + crons",
            f"{rate:.1f}",
            "n/a",
            "jobs/s",
        )
    print(
        f"  one database, servers of --workers={SEVERAL['workers']} "
        f"--max-cron-threads={SEVERAL['cron_threads']} each, {CALLERS_PER_SERVER} "
        "API callers per server and its runner crons; jobs run by the API callers: "
        + " / ".join(
            f"{by_api}/{args.jobs}" for _rate, by_api in ours["servers"].values()
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
