# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The tests' vocabulary: enqueue jobs, run a runner, open a second real cursor."""

import contextlib
import time

from odoo import api
from odoo.modules.registry import Registry
from odoo.tests import TransactionCase

from odoo.addons.queue_job.job import Job

# The runner logs each failed job at ERROR, with its traceback, like queue_job does;
# tests that make jobs fail on purpose mute it.
JOB_LOGGER = "odoo.addons.deltatech_queue_job.models.queue_job"


def wait_for(condition, timeout=30.0, interval=0.05, message="condition"):
    """Poll ``condition()`` until it is truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class JobsMixin:
    """Helpers for cases whose ``self.env`` is a ``queue.job``-capable environment."""

    def enqueue(self, count=1, env=None, **delay_kwargs):
        """Enqueue ``count`` plain jobs (test_queue_job's ``testing_method``)."""
        env = env or self.env
        model = env["test.queue.job"]
        delayables = [
            model.with_delay(**delay_kwargs).testing_method(i) for i in range(count)
        ]
        return self.jobs_of(delayables, env)

    def enqueue_code(self, code, env=None, **delay_kwargs):
        """Enqueue a job running ``code`` (a server action: real ORM code, any effect).

        The code sees ``env`` (with ``job_uuid`` in its context) like any server action.
        """
        env = env or self.env
        action = env["ir.actions.server"].create(
            {
                "name": "deltatech_queue_job test job",
                "model_id": env.ref("base.model_res_partner").id,
                "state": "code",
                "code": code,
            }
        )
        return self.jobs_of([action.with_delay(**delay_kwargs).run()], env)

    def jobs_of(self, delayables, env=None):
        env = env or self.env
        # with_delay() gives a Job; delayable() a Delayable, whose job exists once
        # the graph is delayed.
        uuids = [getattr(d, "_generated_job", d).uuid for d in delayables]
        return env["queue.job"].search([("uuid", "in", uuids)], order="id")

    def run_runner(self, env=None, **kwargs):
        env = env or self.env
        kwargs.setdefault("commit", False)
        kwargs.setdefault("source", "test")
        return env["queue.job"]._job_runner(**kwargs)

    def job_obj(self, record):
        return Job.load(record.env, record.uuid)


class QueueJobCase(TransactionCase, JobsMixin):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.queue_job = cls.env["queue.job"]
        # Start every test from an empty queue: only this test's jobs are eligible.
        cls.env.cr.execute(
            "UPDATE queue_job SET state = 'done' WHERE state IN ('pending', 'enqueued')"
        )
        cls.queue_job.invalidate_model()


@contextlib.contextmanager
def second_cursor(dbname):
    """A real second connection to the database (another transaction), as superuser."""
    with Registry(dbname).cursor() as cr:
        yield api.Environment(cr, api.SUPERUSER_ID, {})
