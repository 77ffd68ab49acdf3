"""Stress and chaos suite: the addon under load and faults, on a real server.

Run it with ``./dev.sh stress [--short]``, or directly::

    python -m dqj_harness.stress.run --template DB --addons-path P --data-dir D \\
        --log-dir L

It copies the template database, installs the addon, starts ``odoo`` with
``--workers=2 --max-cron-threads=2`` on a free loopback port and drives it from
outside (HTTP and PostgreSQL), one scenario after the other; each prints one summary
line, or FAIL and why. The cron watchdog scenarios start servers of their own (other
time limits, one cron thread), after the others. Servers are always stopped and the
database dropped at the end. ``--short`` runs every scenario with fewer jobs (the CI
run).
"""

import os
import signal
import sys
import time
import traceback

from .battery import bad_input
from .committing import committing_jobs
from .cron_watchdog import backlog_after_long_sleep, issue_case, slow_jobs
from .graphs_poison import graphs_and_poison
from .harness import Stress
from .jobrunner_beside import jobrunner_beside
from .odoo_server import (
    Database,
    OdooServer,
    log_problems,
    run_parser,
    run_step,
)
from .pooler import REFUSAL_LOG, pooler
from .scenarios import (
    budget_holds,
    crash_mid_job,
    exactly_once,
    failing_neighbours,
    slow_database,
)
from .several_servers import several_servers

# Job methods some scenarios need beyond what server actions can do (a job that kills
# its worker, see graphs_poison.py): a test-only addon, on the addons path of the
# stress runs only, installed in their database only.
STRESS_ADDONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addons")

# The scenarios marked OWN start a server of their own (other options), with the
# shared server stopped: they come last.
SHARED, OWN = False, True
SCENARIOS = [
    ("exactly-once", exactly_once, SHARED),
    ("crash", crash_mid_job, SHARED),
    ("neighbours", failing_neighbours, SHARED),
    ("budget", budget_holds, SHARED),
    ("bad-input", bad_input, SHARED),
    ("slow-db", slow_database, SHARED),
    ("committing", committing_jobs, SHARED),
    ("jobrunner-beside", jobrunner_beside, SHARED),
    ("graphs-poison", graphs_and_poison, SHARED),
    ("several-servers", several_servers, OWN),
    ("watchdog", issue_case, OWN),
    ("watchdog-sleep", backlog_after_long_sleep, OWN),
    ("watchdog-slow", slow_jobs, OWN),
    ("pooler", pooler, OWN),
]

# Lines of the server log at ERROR that the scenarios cause on purpose.
EXPECTED_ERRORS = (
    " failed:",  # a job that raised (its traceback follows), see _job_failed
    "timed out",  # a runner cron whose worker was killed three times in a row
    # Odoo's cursor logs the statement a job's serialization failure, lock timeout
    # or statement timeout interrupted (the engine re-queues the job).
    "bad query: b'UPDATE dqj_stress_shared",
    # The same for the outcome of graphs-poison's unstorable jobs (a NUL character:
    # "A string literal cannot contain NUL" follows the statement).
    'odoo.sql_db: bad query:  UPDATE "queue_job"',
    REFUSAL_LOG,  # the runs refused behind pgbouncer in transaction mode (pooler)
)


def main():
    parser = run_parser(__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="fewer jobs (CI)")
    parser.add_argument("--db", default=f"dqj_stress_{os.getpid()}")
    parser.add_argument(
        "--only",
        help="comma-separated scenario names: "
        + ", ".join(name for name, *_rest in SCENARIOS),
    )
    args = parser.parse_args()
    # A SIGTERM (a CI timeout) still stops the server and drops the database.
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(143))
    names = [name for name, *_rest in SCENARIOS]
    wanted = names if not args.only else args.only.split(",")
    unknown = set(wanted) - set(names)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    start = time.monotonic()
    os.makedirs(args.log_dir, exist_ok=True)
    addons_path = f"{args.addons_path},{STRESS_ADDONS}"
    db = Database(args.db, args.template, addons_path, args.data_dir, args.log_dir)
    server = OdooServer(db, log_name="stress-server.log")
    failures = 0
    st = None
    mode = "short" if args.short else "full"
    print(f"stress ({mode}): database {db.name}, log {server.log}", flush=True)
    try:
        db.create("deltatech_queue_job,dqj_stress")
        key = Stress.prepare(db, addons_path)
        st = Stress(db, server, key, args.short)
        for name, scenario, own_server in SCENARIOS:
            if name not in wanted:
                continue
            if not own_server and server.proc is None:
                server.start()
                print(
                    f"stress: server up at {server.url} in "
                    f"{time.monotonic() - start:.0f} s",
                    flush=True,
                )
            failures += run_step(name, lambda scenario=scenario: scenario(st))
    except Exception:  # noqa: BLE001
        failures += 1
        print(f"FAIL setup:\n{traceback.format_exc()}", flush=True)
    finally:
        server.stop()
        problems = log_problems(server.log, excused=EXPECTED_ERRORS)
        for log in st.extra_logs if st else ():
            problems += log_problems(log, excused=EXPECTED_ERRORS)
        if os.environ.get("DQJ_KEEP_DB") != "1":
            db.drop()
    if problems:
        failures += 1
        print(f"FAIL server log: {len(problems)} unexpected error line(s):")
        for line in problems[:20]:
            print("  " + line)
    verdict = "FAILED" if failures else "passed"
    print(
        f"stress ({mode}): {verdict}, {failures} failure(s), "
        f"{time.monotonic() - start:.0f} s",
        flush=True,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
