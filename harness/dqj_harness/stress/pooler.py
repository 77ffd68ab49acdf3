"""Scenario "pooler": an Odoo server behind a real pgbouncer.

pgbouncer (Debian's package) is started on a free loopback port, in front of the
database's own PostgreSQL, and a server of the scenario's own connects through it
(``--db_host``/``--db_port``). In session mode (one server connection per client
connection, for its life) the queue must drain exactly once, as without a pooler.
In transaction mode (a server connection per transaction) the runner must refuse:
its runs stop with ``stopped_by = pooler``, log the ERROR that names the pooler, and
the API answers 503 with the same reason; no job runs twice, none is lost (the jobs
the refused runs left are drained afterwards by a runner connected directly).

Both pools start with a few idle server connections and hand them out in turn
(``server_round_robin``): a busy production pool does that on its own; with this
scenario's few clients, a pool handing the last used connection back (the default)
could give one cursor the same connection for a while.
"""

import contextlib
import os
import time

from .odoo_server import PgBouncer, check, enqueue, job_group, log_lines

# The ERROR of a refused run (engine/runner.py's POOLER_MESSAGE).
REFUSAL_LOG = "connection pooler in transaction mode is in front of PostgreSQL"


def _size(st, short, full):
    return short if st.short else full


@contextlib.contextmanager
def _behind(st, mode):
    """A pgbouncer in ``mode`` and a server of the scenario's own behind it."""
    log = os.path.join(st.db.log_dir, f"stress-pgbouncer-{mode}.log")
    bouncer = PgBouncer(st.db.name, mode, log)
    try:
        bouncer.start()
        # A few idle server connections from the start, handed out in turn (see
        # tooling's PgBouncer): what a busy pool does on its own.
        bouncer.open_server_connections(3)
        # No database filter: Odoo then serves the -d database, instead of listing
        # the databases its PostgreSQL user owns (pgbouncer logs in as another user
        # when run by root, see PgBouncer).
        args = ["--db_host=127.0.0.1", f"--db_port={bouncer.port}", "--db-filter="]
        with st.own_server(f"pooler-{mode}", extra_args=args) as server:
            yield bouncer, server
    finally:
        bouncer.stop()


def _session_mode(st, n):
    """Session mode: the queue drains exactly once, nothing refused."""
    uuids, _committed = enqueue(st.db, [job_group("pooled", n)])
    uuids = uuids["pooled"]
    with _behind(st, "session") as (bouncer, server):
        st.server, shared = server, st.server  # st.drive calls st.server
        try:
            api = st.drain(
                uuids,
                _size(st, 120, 300),
                "the jobs to be done through pgbouncer (session mode)",
                callers=2,
                batch_size=20,
                max_seconds=5,
            )
        finally:
            st.server = shared
        transactions = int(bouncer.stats().get("total_xact_count", 0))
        refusals = len(
            [line for line in log_lines(server.log, {"ERROR"}) if REFUSAL_LOG in line]
        )
    states, _effects, duplicates, lost = st.tally(uuids)
    summary = (
        f"session mode: {n} jobs, done {states['done']}, duplicates {duplicates}, "
        f"lost {lost}, refusals {refusals}, api calls {api['calls']}, "
        f"{transactions} transactions through pgbouncer"
    )
    st.check_exactly_once(uuids, duplicates, lost, states["done"], summary)
    check(refusals == 0, f"a run refused in session mode: {summary}")
    check(transactions > n, f"the jobs did not go through pgbouncer: {summary}")
    return summary


def _transaction_mode(st, n, calls):
    """Transaction mode: the runs refuse, loudly; nothing runs twice or is lost."""
    st.pause_runner_crons()  # only the API's runs: their answers are counted
    uuids, _committed = enqueue(st.db, [job_group("pooled", n)])
    uuids = uuids["pooled"]
    answers = []
    with _behind(st, "transaction") as (_bouncer, server):
        for _i in range(calls):
            status, result, _elapsed = server.api(
                params={"api_key": st.key, "batch_size": 5, "max_seconds": 5}
            )
            answers.append((status, result))
        refusal_lines = [
            line for line in log_lines(server.log, {"ERROR"}) if REFUSAL_LOG in line
        ]
    refused = [
        result
        for status, result in answers
        if status == 503 and "transaction mode" in result.get("message", "")
    ]
    accepted = sum(
        result.get("processed", 0) for status, result in answers if status == 200
    )
    recorded = dict(
        st.db.sql(
            "SELECT stopped_by, count(*) FROM queue_job_run WHERE source = 'api' "
            "AND stopped_by = 'pooler' GROUP BY stopped_by"
        )
    )
    before_drain = st.states(uuids)
    # What the refused runs left is drained by a runner connected directly.
    st.resume_runner_crons()
    st.db.shell(
        "env['queue.job']._job_runner(batch_size=1000, max_seconds=120, "
        "source='manual')\nenv.cr.commit()\nprint('RESULT', json.dumps({}))"
    )
    states, _effects, duplicates, lost = st.tally(uuids)
    summary = (
        f"transaction mode: {n} jobs, {len(refused)}/{calls} api calls refused "
        f"(503), runs recorded as stopped by the pooler {recorded.get('pooler', 0)}, "
        f"ERROR lines {len(refusal_lines)}, jobs processed before a refusal "
        f"{before_drain['done']} (by accepted calls {accepted}), then drained "
        f"directly: done {states['done']}, duplicates {duplicates}, lost {lost}"
    )
    check(refused, f"no run refused in transaction mode: {summary}; {answers[:2]}")
    check(refusal_lines, f"the refusal was not logged at ERROR: {summary}")
    check(recorded.get("pooler", 0) >= len(refused), f"runs not recorded: {summary}")
    st.check_exactly_once(uuids, duplicates, lost, states["done"], summary)
    return summary


def pooler(st):
    """pgbouncer in session mode (works) then in transaction mode (refused)."""
    check(os.path.exists(PgBouncer.BINARY), f"pgbouncer not found ({PgBouncer.BINARY})")
    start = time.monotonic()
    # The shared server stops first (own_server would stop it later): a run of it
    # still going must not hold the runner crons' rows while st.reset() updates them.
    st.server.stop()
    st.reset()
    try:
        session = _session_mode(st, _size(st, 100, 1000))
        st.reset()
        transaction = _transaction_mode(st, _size(st, 60, 300), _size(st, 6, 20))
    finally:
        st.resume_runner_crons()
    return f"pooler: {session}; {transaction}; {time.monotonic() - start:.1f} s"
