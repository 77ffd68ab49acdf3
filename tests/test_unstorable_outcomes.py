# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Outcomes that cannot be stored: the job fails alone, the queue goes on."""

import contextlib
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import JOB_LOGGER, CommittedQueueCase, QueueJobCase

# A result PostgreSQL refuses: text cannot hold a NUL character.
RETURNS_NUL = "action = 'half' + '\\x00' + 'result'"
# A failure whose message PostgreSQL refuses too: only the last resort stores it.
RAISES_NUL = "raise UserError('broken' + '\\x00' + 'message')"
STORAGE_ERROR = "cannot contain NUL"


def _raise_on_done(records, job):
    """A ``_job_store_values`` hook that raises when the job is stored as done."""
    if job.state == "done":
        raise ValueError("the hook refuses to store this outcome")
    return {"additional_info": "stored by the hook"}


def _failure_message_raises(env):
    def post(records):
        raise RuntimeError("the failure message cannot be posted")

    return patch.object(type(env["queue.job"]), "_message_post_on_failure", post)


class UnstorableMixin:
    def assert_failed_by_storage(self, job, text):
        if not isinstance(job, dict):
            job = job.read(["state", "exc_info", "exc_message", "exc_name"])[0]
        self.assertEqual(job["state"], "failed")
        self.assertIn(text, job["exc_info"])
        self.assertIn(text, job["exc_message"])
        self.assertTrue(job["exc_name"])


@tagged("post_install", "-at_install")
class TestUnstorableOutcomes(QueueJobCase, UnstorableMixin):
    """In the caller's transaction (savepoints only)."""

    def test_result_with_a_nul_character_fails_and_the_next_job_runs(self):
        partner = self.env["res.partner"].create({"name": "untouched"})
        bad = self.enqueue_code(
            f"env['res.partner'].browse({partner.id}).write({{'name': 'x'}})\n"
            + RETURNS_NUL,
            priority=1,
        )
        behind = self.enqueue(1, priority=5)
        with mute_logger(JOB_LOGGER, "odoo.sql_db"):
            stats = self.run_runner()
        self.assertEqual((stats.done, stats.failed), (1, 1))
        self.assertEqual(stats.job_ids, (bad | behind).ids)
        self.assert_failed_by_storage(bad, STORAGE_ERROR)
        self.assertEqual(behind.state, "done")
        partner.invalidate_recordset()
        self.assertEqual(partner.name, "untouched", "the job's work is rolled back")

    def test_store_hook_raising_on_done_fails_the_job(self):
        model = self.env["test.queue.job"]
        bad = self.jobs_of([model.with_delay(priority=1).testing_method(1)])
        behind = self.enqueue_code("pass", priority=5)
        with (
            patch.object(type(model), "_job_store_values", _raise_on_done),
            mute_logger(JOB_LOGGER, "odoo.sql_db"),
        ):
            stats = self.run_runner()
        self.assertEqual((stats.done, stats.failed), (1, 1))
        self.assert_failed_by_storage(bad, "the hook refuses")
        self.assertEqual(bad.additional_info, "stored by the hook")
        self.assertEqual(behind.state, "done")

    def test_failure_that_cannot_be_stored_is_stored_without_its_nul(self):
        bad = self.enqueue_code(RAISES_NUL, priority=1)
        behind = self.enqueue(1, priority=5)
        with mute_logger(JOB_LOGGER, "odoo.sql_db"):
            stats = self.run_runner()
        self.assertEqual((stats.done, stats.failed), (1, 1))
        self.assert_failed_by_storage(bad, "brokenmessage")
        self.assertEqual(behind.state, "done")


@tagged("post_install", "-at_install")
class TestUnstorableCommitted(CommittedQueueCase, UnstorableMixin):
    """Runners that commit each job, and jobs allowed to commit."""

    def _run_bad_then_behind(self, body, hook=None):
        with self.committed() as env:
            bad = self.enqueue_effect_jobs(env, 1, body=body, priority=1)
            behind = self.enqueue(1, env=env, priority=5)
        with (
            self.committed() as env,
            mute_logger(JOB_LOGGER, "odoo.sql_db"),
            contextlib.ExitStack() as stack,
        ):
            if hook:
                stack.enter_context(hook(env))
            stats = env["queue.job"]._job_runner(source="manual")
        self.assertEqual((stats.done, stats.failed, stats.stopped_by), (1, 1, "empty"))
        self.assertEqual(stats.job_ids, (bad | behind).ids)
        with self.committed() as env:
            record = env["queue.job"].browse(bad.id)
            self.assertFalse(record.dqj_committing)
            self.assertEqual(env["queue.job"].browse(behind.id).state, "done")
            values = record.read(["state", "exc_info", "exc_message", "exc_name"])
            return values[0], self.effects(env)

    def test_result_with_a_nul_character_fails_in_a_committing_runner(self):
        record, effects = self._run_bad_then_behind(RETURNS_NUL)
        self.assert_failed_by_storage(record, STORAGE_ERROR)
        self.assertEqual(effects, [], "the job's work is rolled back")

    def test_store_hook_raising_on_done_fails_in_a_committing_runner(self):
        record, effects = self._run_bad_then_behind(
            "",
            hook=lambda env: patch.object(
                type(env["ir.actions.server"]),
                "_job_store_values",
                _raise_on_done,
                create=True,
            ),
        )
        self.assert_failed_by_storage(record, "the hook refuses")
        self.assertEqual(effects, [], "the job's work is rolled back")

    def test_committing_job_whose_failure_message_raises_fails_and_keeps_commits(self):
        """queue_job posts a message on the job when it fails; when that raises, the
        failure is stored without it."""
        self.allow_commit_of_server_actions()
        record, effects = self._run_bad_then_behind(
            "env.cr.commit()\n1 / 0", hook=_failure_message_raises
        )
        self.assertEqual(record["state"], "failed")
        self.assertIn("ZeroDivisionError", record["exc_info"])
        self.assertEqual(len(effects), 1, "what it committed stays")

    def test_failure_message_that_raises_in_a_committing_runner(self):
        record, effects = self._run_bad_then_behind(
            "1 / 0", hook=_failure_message_raises
        )
        self.assertEqual(record["state"], "failed")
        self.assertIn("ZeroDivisionError", record["exc_info"])
        self.assertEqual(effects, [], "the job's work is rolled back")
