"""What the scenarios share: the server under test, its database, the API key, and
the questions they ask PostgreSQL about jobs and their side effects."""

import collections
import contextlib
import secrets
import threading
import time

import requests

from dqj_harness.kit import threads_running

from .odoo_server import (
    Failure,
    OdooServer,
    check,
    hash_api_key,
    settings,
    wait_for,
)

# The side effects of the stress jobs: one row per successful run, keyed by the job's
# uuid, so a second run of a job cannot commit (it fails on the primary key instead).
SETUP_SQL = """
CREATE TABLE IF NOT EXISTS dqj_stress_effect (
    uuid varchar PRIMARY KEY,
    kind varchar NOT NULL,
    backend integer,
    started timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS dqj_stress_shared (id integer PRIMARY KEY, n integer);
"""

FINAL_STATES = ("done", "failed", "cancelled")


class Stress:
    """The running server, its database and the API key, for the scenarios."""

    def __init__(self, db, server, key, short):
        self.db = db
        self.server = server
        self.key = key
        self.short = short
        # Logs of the servers scenarios started for themselves (see own_server).
        self.extra_logs = []

    @contextlib.contextmanager
    def own_server(self, name, **options):
        """A server of the scenario's own, with its options (``OdooServer``'s), alone
        on the database: the shared server is stopped first (run.py starts it again
        if a later scenario needs it). Stopped when the block ends."""
        self.server.stop()
        server = OdooServer(self.db, log_name=f"stress-{name}-server.log", **options)
        self.extra_logs.append(server.log)
        try:
            yield server.start()
        finally:
            server.stop()

    # ------------------------------------------------------------ setup
    @staticmethod
    def prepare(db, addons_path):
        """Settings and tables, written before the server starts (it caches
        ``ir.config_parameter``). Returns the API key."""
        key = secrets.token_urlsafe(32)
        params = {
            settings.PARAM_API_KEY_HASH: hash_api_key(addons_path, key),
            # Runner crons take small batches: they hand over to a fresh cron run
            # often, which is what a busy production queue looks like.
            settings.PARAM_BATCH_SIZE: "20",
            settings.PARAM_MAX_SECONDS: "30",
        }
        with contextlib.closing(db.connect()) as conn, conn.cursor() as cr:
            cr.execute(SETUP_SQL)
            for name, value in params.items():
                cr.execute(
                    "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    [name, value],
                )
        return key

    def reset(self):
        """A clean slate between scenarios: no job left to run, no effects, runner
        crons active and driven by triggers only."""
        self.db.sql(
            "UPDATE queue_job SET state = 'cancelled', "
            "date_cancelled = now() AT TIME ZONE 'UTC' "
            "WHERE state NOT IN ('done', 'failed', 'cancelled')"
        )
        self.db.sql("TRUNCATE dqj_stress_effect")
        self.db.sql("DELETE FROM dqj_stress_shared")
        self.resume_runner_crons()

    def pause_runner_crons(self):
        """Archive the runner crons: no trigger is created, none runs; only the API
        processes jobs. Waits (bounded) for a cron run in progress to end."""
        with contextlib.closing(self.db.connect()) as conn, conn.cursor() as cr:
            cr.execute("SET lock_timeout = '60s'")
            cr.execute("UPDATE ir_cron SET active = false WHERE dqj_queue_runner")
            cr.execute(
                "DELETE FROM ir_cron_trigger WHERE cron_id IN "
                "(SELECT id FROM ir_cron WHERE dqj_queue_runner)"
            )

    def resume_runner_crons(self):
        """Runner crons active again, their next interval run a day away: from now on
        only triggers (job creation, a runner leaving work) start them.

        Triggers left while they were paused go too, in the same transaction: a
        request whose snapshot predates the pause still saw them active and may
        have left one (a cut API call of an earlier scenario ends its run later).
        The crons' rows are locked first, as a cron worker does (it holds its
        cron's row for the whole pass, and deletes that cron's triggers at the
        end): deleting the triggers first deadlocked with a pass in progress."""
        connection = contextlib.closing(self.db.connect(autocommit=False))
        with connection as conn, conn, conn.cursor() as cr:  # one transaction
            cr.execute("SET LOCAL lock_timeout = '60s'")
            cr.execute(
                "UPDATE ir_cron SET active = true, "
                "nextcall = now() AT TIME ZONE 'UTC' + interval '1 day' "
                "WHERE dqj_queue_runner"
            )
            cr.execute(
                "DELETE FROM ir_cron_trigger WHERE cron_id IN "
                "(SELECT id FROM ir_cron WHERE dqj_queue_runner)"
            )

    # ------------------------------------------------------------ API
    def process(self, timeout=180, **params):
        status, result, elapsed = self.server.api(
            params={"api_key": self.key, **params}, timeout=timeout
        )
        check(status == 200, f"process call refused: {status} {result}")
        return result, elapsed

    @contextlib.contextmanager
    def callers(self, count=1, tolerate_cuts=False, **params):
        """``count`` threads POSTing /api/v1/queue/process in a loop while the block
        runs; yields their summed stats (a Counter, also ``calls`` and ``cut``: calls
        whose connection died, e.g. their worker was killed)."""
        params.setdefault("batch_size", 200)
        params.setdefault("max_seconds", 10)
        totals = collections.Counter()
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        def loop():
            while not stop.is_set():
                try:
                    result, _elapsed = self.process(**params)
                except requests.ConnectionError as err:
                    if not tolerate_cuts:
                        errors.append(err)
                        totals["errors"] += 1
                        return
                    with lock:
                        totals["cut"] += 1
                    time.sleep(0.5)
                    continue
                except (requests.RequestException, Failure, ValueError) as err:
                    errors.append(err)
                    totals["errors"] += 1
                    return
                with lock:
                    for name in ("processed", "done", "failed", "postponed"):
                        totals[name] += result[name]
                    totals["calls"] += 1
                if not result["processed"]:
                    time.sleep(0.3)

        with threads_running(loop, count, stop, join_timeout=200) as threads:
            yield totals
        check(not errors, f"an API caller failed: {errors[:1]}")
        check(not any(t.is_alive() for t in threads), "an API caller hangs")

    def drive(self, done, timeout, what, callers=1, **params):
        """API callers in a loop until ``done()``; returns their summed stats."""
        with self.callers(callers, **params) as totals:
            wait_for(lambda: done() or totals["errors"], timeout, what, interval=0.3)
        return totals

    def drain(self, uuids, timeout, what="every job to end", callers=1, **params):
        """API callers in a loop until every job of ``uuids`` is done or failed."""
        return self.drive(
            lambda: self.all_final(uuids), timeout, what, callers=callers, **params
        )

    # ------------------------------------------------------------ questions
    def states(self, uuids):
        rows = self.db.sql(
            "SELECT state, count(*) FROM queue_job WHERE uuid = ANY(%s) GROUP BY state",
            [list(uuids)],
        )
        return collections.Counter(dict(rows))

    def all_final(self, uuids):
        states = self.states(uuids)
        return sum(states[s] for s in FINAL_STATES) == len(uuids)

    def wait_final(self, uuids, timeout, what="every job to end", interval=0.1):
        """Wait (bounded) until every job of ``uuids`` is done or failed."""
        wait_for(lambda: self.all_final(uuids), timeout, what, interval=interval)

    def effects(self, uuids):
        """uuid -> number of effect rows (0 or 1: the key is the primary key)."""
        rows = self.db.sql(
            "SELECT uuid, count(*) FROM dqj_stress_effect WHERE uuid = ANY(%s) "
            "GROUP BY uuid",
            [list(uuids)],
        )
        return collections.Counter(dict(rows))

    def duplicates(self, uuids, effects):
        """Runs of these jobs beyond their first: a second run cannot commit its
        effect (the primary key), it fails on it instead; ``effects`` as above."""
        failed_reruns = self.db.scalar(
            "SELECT count(*) FROM queue_job WHERE uuid = ANY(%s) "
            "AND exc_info LIKE '%%dqj_stress_effect_pkey%%'",
            [list(uuids)],
        )
        return failed_reruns + sum(1 for count in effects.values() if count > 1)

    def tally(self, uuids):
        """What a drain of ``uuids`` ended with: their states, effects (as above),
        duplicates (as above) and lost jobs (neither done nor failed)."""
        states = self.states(uuids)
        effects = self.effects(uuids)
        duplicates = self.duplicates(uuids, effects)
        lost = len(uuids) - states["done"] - states["failed"]
        return states, effects, duplicates, lost

    def check_exactly_once(self, uuids, duplicates, lost, done, summary):
        """The verdict every drain scenario ends with: no job ran twice, every one
        done once, no effect of a job outside ``uuids``."""
        check(duplicates == 0, f"jobs ran twice: {summary}")
        check(lost == 0 and done == len(uuids), f"jobs not done once: {summary}")
        check(self.stray_effects(uuids) == 0, f"stray effects: {summary}")

    def stray_effects(self, uuids):
        return self.db.scalar(
            "SELECT count(*) FROM dqj_stress_effect WHERE uuid != ALL(%s)",
            [list(uuids)],
        )

    def runs_since(self, since):
        """Runner executions recorded since ``since`` (UTC), by source."""
        rows = self.db.sql(
            "SELECT source, sum(processed), sum(postponed) FROM queue_job_run "
            "WHERE date_start >= %s GROUP BY source",
            [since],
        )
        return {source: (processed, postponed) for source, processed, postponed in rows}

    def run_log_since(self, since):
        """The runs since ``since``, one ``source@start+duration:processed`` each: what
        a failure message shows."""
        rows = self.db.sql(
            "SELECT source, date_start, duration, processed FROM queue_job_run "
            "WHERE date_start >= %s ORDER BY date_start, id",
            [since],
        )
        return ", ".join(
            f"{source}@{start:%H:%M:%S.%f}+{duration}s:{processed}"
            for source, start, duration, processed in rows
        )

    def now(self):
        return self.db.scalar("SELECT now() AT TIME ZONE 'UTC'")

    def pending_ids(self):
        rows = self.db.sql(
            "SELECT id FROM queue_job WHERE state = 'pending' ORDER BY id"
        )
        return [row[0] for row in rows]
