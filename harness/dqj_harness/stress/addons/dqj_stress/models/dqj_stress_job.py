# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Job methods of the stress suite's "graphs and poison" scenario (stress/).

Never shipped with deltatech_queue_job: the stress harness alone puts this folder on
the addons path and installs it in its throw-away database. Each method records its
run in ``dqj_stress_graph`` (created by the scenario), keyed by the job's uuid.
"""

import os
import signal

from odoo import api, models
from odoo.sql_db import db_connect

RECORD = (
    "INSERT INTO dqj_stress_graph (uuid, kind, started) "
    "VALUES (%s, %s, clock_timestamp())"
)
ENDED = "UPDATE dqj_stress_graph SET ended = clock_timestamp() WHERE uuid = %s"


class DqjStressJob(models.AbstractModel):
    _name = "dqj.stress.job"
    _description = "Stress suite jobs (test only)"

    def _uuid(self):
        return self.env.context.get("job_uuid")

    @api.model
    def work(self, kind, seconds=0.0):
        """A job of a graph, or a neighbour: its run, then ``seconds`` of sleep."""
        self.env.cr.execute(RECORD, [self._uuid(), kind])
        if seconds:
            self.env.cr.execute("SELECT pg_sleep(%s)", [seconds])
        self.env.cr.execute(ENDED, [self._uuid()])
        return kind

    @api.model
    def committing(self, seconds):
        """A job allowed to commit ("Allow Commit"): its start is committed, then its
        end; a sequential channel must never see two such spans overlap."""
        self.env.cr.execute(RECORD, [self._uuid(), "sequential"])
        self.env.cr.commit()  # pylint: disable=invalid-commit
        self.env.cr.execute("SELECT pg_sleep(%s)", [seconds])
        self.env.cr.execute(ENDED, [self._uuid()])
        self.env.cr.commit()  # pylint: disable=invalid-commit
        return "committed"

    @api.model
    def unstorable(self):
        """An outcome PostgreSQL refuses to store (a NUL character)."""
        self.env.cr.execute(RECORD, [self._uuid(), "unstorable"])
        return "cannot be stored: \x00"

    @api.model
    def poison(self):
        """Kill the worker running it, as the OOM killer would. The try is recorded
        on a connection of its own first: the job's transaction dies with it."""
        with db_connect(self.env.cr.dbname).cursor() as cr:
            cr.execute(RECORD, [self._uuid(), "poison try"])
            cr.commit()
        os.kill(os.getpid(), signal.SIGKILL)
