# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""What the queue holds, counted without reading the whole backlog: the jobs running
now, the pending ones (due now, or waiting for their eta), how long the oldest due one
has waited. The statistics, the runner's "pending" figure and the buttons read them;
none takes a lock. The rows they read are the ones engine/job_locks.py locks: the
pending jobs, through its ACQUIRE_INDEX, and the 'running' advisory locks
(RUNNING_LOCK_NS) in ``pg_locks``.
"""

import json

from odoo.tools import SQL

from .job_locks import ELIGIBLE, RUNNING_LOCK_NS


def running_job_ids(cr):
    """Ids of the jobs some runner holds right now."""
    cr.execute(
        """
        SELECT objid::integer FROM pg_locks
        WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2 AND granted
          AND database = (SELECT oid FROM pg_database
                          WHERE datname = current_database())
        """,
        (RUNNING_LOCK_NS,),
    )
    return {row[0] for row in cr.fetchall()}


# Pending counts are exact up to here. Above, an exact count would read the whole
# backlog at every run (112 ms at 1,000,000 pending, against ~2 ms for a run's 20
# jobs): PostgreSQL's planner estimate is given instead, said to be one.
EXACT_COUNT_LIMIT = 1000


def bounded_count(cr, query, limit=None):
    """``(count, estimated)`` of the rows of ``query`` (an SQL ``SELECT``).

    Exact up to ``limit``: one statement that reads at most ``limit + 1`` rows. Above,
    ``estimated`` is True and the count is the planner's estimate of ``query`` (from
    the table's statistics, which autovacuum keeps current), never less than
    ``limit + 1``: a second statement, planned, not run. ``limit`` defaults to
    EXACT_COUNT_LIMIT.
    """
    if limit is None:
        limit = EXACT_COUNT_LIMIT
    cr.execute(SQL("SELECT count(*) FROM (%s LIMIT %s) AS bounded", query, limit + 1))
    count = cr.fetchone()[0]
    if count <= limit:
        return count, False
    cr.execute(SQL("EXPLAIN (FORMAT JSON) %s", query))
    plan = cr.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return max(count, round(plan[0]["Plan"]["Plan Rows"])), True


def count_eligible(cr, limit=None):
    """``(count, estimated)``: the pending jobs due now, locked ones included; exact
    up to ``limit``, estimated above (see :func:`bounded_count`)."""
    return bounded_count(cr, SQL("SELECT 1 FROM queue_job WHERE %s", ELIGIBLE), limit)


def waiting_for_eta(cr, job_ids=None):
    """``(count, next_eta)`` of the pending jobs not due yet (their eta is still to
    come), among ``job_ids`` when given; ``next_eta`` is the earliest eta (UTC, naive),
    None when none waits. Read through ACQUIRE_INDEX's pending rows: cheap whatever
    the size of the done history."""
    conditions = [SQL("state = 'pending' AND eta > (now() AT TIME ZONE 'UTC')")]
    if job_ids is not None:
        conditions.append(SQL("id = ANY(%s)", list(job_ids)))
    cr.execute(
        SQL(
            "SELECT count(*), min(eta) FROM queue_job WHERE %s",
            SQL(" AND ").join(conditions),
        )
    )
    return cr.fetchone()


def oldest_eligible_age(cr):
    """Seconds since the longest-waiting job due now became due (its eta, or its
    creation without one); None when no job is due.

    Read at the head of each priority's queue (ACQUIRE_INDEX, one short index scan
    per priority in use): the oldest job of each priority by creation, whatever the
    backlog. A job created after another of its priority but made due earlier by its
    eta is not seen before that one.
    """
    cr.execute(
        SQL(
            """
            WITH RECURSIVE priorities AS (
                (SELECT priority FROM queue_job WHERE state = 'pending'
                 ORDER BY priority LIMIT 1)
                UNION ALL
                SELECT (SELECT next.priority FROM queue_job next
                        WHERE next.state = 'pending' AND next.priority > p.priority
                        ORDER BY next.priority LIMIT 1)
                FROM priorities p WHERE p.priority IS NOT NULL
            )
            SELECT EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - min(head.due))
            FROM priorities p CROSS JOIN LATERAL (
                SELECT GREATEST(eta, date_created) AS due FROM queue_job
                WHERE %s AND priority = p.priority
                ORDER BY date_created, id LIMIT 1
            ) head
            """,
            ELIGIBLE,
        )
    )
    return cr.fetchone()[0]
