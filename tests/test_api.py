# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The external trigger API, over real HTTP requests to the test server.

The server handles each request on a test cursor sharing the test's transaction
(HttpCase puts the registry in test mode): the runner's commits are savepoint
releases, so what a request did is visible here and rolled back after the test.
"""

import contextlib
import hashlib
import hmac
import json
import logging
import re
from unittest.mock import patch

from odoo.service.db import list_dbs
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import config, mute_logger

from odoo.addons.deltatech_queue_job.controllers import main as api_main
from odoo.addons.deltatech_queue_job.engine import counts
from odoo.addons.deltatech_queue_job.engine.api_key import (
    generate_api_key,
    revoke_api_key,
)
from odoo.addons.deltatech_queue_job.engine.settings import PARAM_API_KEY_HASH
from odoo.addons.deltatech_queue_job.engine.throttle import failed_keys

from .common import JobsMixin

PROCESS = api_main.PROCESS_ROUTE
STATS = api_main.STATS_ROUTE
API_LOGGER = api_main.__name__
# assertLogs(..., logging.INFO), not "INFO": Odoo names its level 25 "INFO" too.
# The one answer to a request that is not authenticated, whatever the reason.
NOT_AUTHENTICATED = api_main.UNAUTHENTICATED_MESSAGE
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


@contextlib.contextmanager
def server_options(**values):
    """Run with these server options (``odoo.tools.config``), restored afterwards."""
    saved = {key: config.get(key) for key in values}
    for key, value in values.items():
        config[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            config[key] = value


class ApiCase(HttpCase, JobsMixin):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        # Start from an empty queue: only this test's jobs are eligible.
        cls.env.cr.execute(
            "UPDATE queue_job SET state = 'done' WHERE state IN ('pending', 'enqueued')"
        )
        cls.env["queue.job"].invalidate_model()
        cls.key = generate_api_key(cls.env)

    def setUp(self):
        super().setUp()
        # The damping memory is the worker process's, so this test process's.
        failed_keys.reset()
        self.addCleanup(failed_keys.reset)

    def call(
        self, route=PROCESS, params=None, body=None, headers=None, method="POST", **kw
    ):
        """Send a request; return the HTTP response and its JSON-RPC ``result``."""
        if body is None:
            envelope = {"jsonrpc": "2.0", "id": 1}
            if params is not None:
                envelope["params"] = params
            body = json.dumps(envelope)
        headers = {"Content-Type": "application/json", **(headers or {})}
        response = self.opener.request(
            method, self.base_url() + route, data=body, headers=headers, timeout=60
        )
        # The request changed the shared transaction behind this env's cache.
        self.env.invalidate_all()
        self.assertEqual(
            response.headers["Content-Type"].split(";")[0], "application/json"
        )
        payload = response.json()
        self.assertEqual(payload["jsonrpc"], "2.0")
        return response, payload["result"]

    def assertRefused(self, code, params=None, message=None, **kwargs):
        response, result = self.call(params=params, **kwargs)
        self.assertEqual(response.status_code, code, result)
        self.assertEqual(result["status"], "error")
        self.assertEqual(result["code"], code)
        if message:
            self.assertIn(message, result["message"])
        self.assertNotIn("Traceback", response.text)
        return result

    def assertStillPending(self, jobs):
        self.assertEqual(set(jobs.mapped("state")), {"pending"})
        self.assertEqual(
            self.env["queue.job"]._dqj_count_pending()[0],
            len(jobs),
            "nothing processed",
        )


@tagged("post_install", "-at_install")
class TestApiProcess(ApiCase):
    def test_process_runs_pending_jobs(self):
        jobs = self.enqueue(3)
        response, result = self.call(params={"api_key": self.key})
        self.assertEqual(response.status_code, 200, result)
        self.assertEqual(result["status"], "success")
        for name, value in (
            ("processed", 3),
            ("done", 3),
            ("failed", 0),
            ("postponed", 0),
            ("pending_count", 0),
        ):
            self.assertEqual(result[name], value, name)
        self.assertIsInstance(result["time_elapsed"], float)
        self.assertRegex(result["timestamp"], TIMESTAMP)
        self.assertEqual(set(jobs.mapped("state")), {"done"})
        run = self.env["queue.job.run"].search([], limit=1)
        self.assertEqual((run.source, run.processed), ("api", 3))

    def test_empty_queue_answers_a_message(self):
        """As the original: an empty queue answers "No pending jobs in queue"."""
        response, result = self.call(params={"api_key": self.key})
        self.assertEqual(response.status_code, 200, result)
        self.assertEqual(result["message"], "No pending jobs in queue")
        self.assertEqual((result["processed"], result["pending_count"]), (0, 0))
        self.enqueue(1)
        _response, result = self.call(params={"api_key": self.key})
        self.assertEqual(result["processed"], 1)
        self.assertNotIn("message", result)

    def test_batch_size_limits_the_run(self):
        jobs = self.enqueue(3)
        _response, result = self.call(params={"api_key": self.key, "batch_size": 2})
        self.assertEqual((result["processed"], result["pending_count"]), (2, 1))
        self.assertEqual(sorted(jobs.mapped("state")), ["done", "done", "pending"])
        self.assertEqual(result["stopped_by"], "batch_size")

    def test_jobs_run_as_their_own_user(self):
        user = new_test_user(
            self.env,
            login="dqj_api_job_user",
            groups="base.group_erp_manager,queue_job.group_queue_job_manager",
        )
        model = self.env["test.queue.job"].with_user(user)
        job = self.jobs_of([model.with_delay().create_ir_logging("dqj api user")])
        self.assertEqual(job.user_id, user)
        _response, result = self.call(params={"api_key": self.key})
        self.assertEqual(result["done"], 1, result)
        log = self.env["ir.logging"].search([("message", "=", "dqj api user")])
        self.assertEqual(log.create_uid, user.id, "the job ran as its own user")

    def test_unexpected_failure_answers_500_without_traceback(self):
        """The runner itself breaks (here: the queue's table lost a column the
        acquisition needs): the caller gets a bare 500, the traceback goes to the
        server log only, and nothing is processed."""
        job = self.enqueue(1)
        self.env.cr.execute("ALTER TABLE queue_job RENAME COLUMN eta TO dqj_eta_gone")
        try:
            with (
                self.assertLogs(API_LOGGER, "ERROR") as logs,
                mute_logger("odoo.sql_db"),
            ):
                result = self.assertRefused(
                    500, {"api_key": self.key}, "internal error"
                )
        finally:
            self.env.cr.execute(
                "ALTER TABLE queue_job RENAME COLUMN dqj_eta_gone TO eta"
            )
        self.assertEqual(result["message"], "internal error, see the server log")
        self.assertIn("eta", "\n".join(logs.output))
        job.invalidate_recordset()
        self.assertEqual(job.state, "pending")

    def test_json_rpc_id_is_echoed(self):
        body = json.dumps({"jsonrpc": "2.0", "id": "abc-7", "params": {}})
        response = self.opener.post(
            self.base_url() + PROCESS,
            data=body,
            headers={"Content-Type": "application/json", "X-Api-Key": self.key},
            timeout=60,
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["id"], "abc-7")

    def test_no_session_cookie_is_written(self):
        response, _result = self.call(params={"api_key": self.key})
        self.assertEqual(response.status_code, 200)
        self.assertNotIn("session_id", response.cookies)
        self.assertNotIn("Set-Cookie", response.headers)


@tagged("post_install", "-at_install")
class TestApiKey(ApiCase):
    def test_no_key_configured_refuses_every_call(self):
        jobs = self.enqueue(2)
        revoke_api_key(self.env)
        for params in ({"api_key": self.key}, {"api_key": ""}, {}):
            self.assertRefused(401, params, NOT_AUTHENTICATED)
        self.assertStillPending(jobs)

    def test_missing_or_empty_key_is_refused(self):
        jobs = self.enqueue(2)
        for params in ({}, {"api_key": ""}, {"api_key": None}):
            self.assertRefused(401, params, NOT_AUTHENTICATED)
        self.assertStillPending(jobs)

    def test_wrong_key_is_refused_and_logged_without_its_value(self):
        jobs = self.enqueue(2)
        wrong = "not-the-key-" + "x" * 20
        with self.assertLogs(API_LOGGER, logging.INFO) as logs:
            self.assertRefused(401, {"api_key": wrong}, NOT_AUTHENTICATED)
        output = "\n".join(logs.output)
        self.assertIn("invalid API key", output)
        self.assertNotIn(wrong, output)
        self.assertNotIn(self.key, output)
        self.assertStillPending(jobs)

    def test_wrong_type_key_is_refused(self):
        jobs = self.enqueue(1)
        for value in (12345, True, [self.key], {"key": self.key}):
            with self.assertLogs(API_LOGGER, logging.INFO) as logs:
                self.assertRefused(401, {"api_key": value}, NOT_AUTHENTICATED)
            self.assertIn("api_key must be a string", logs.output[0])
        self.assertStillPending(jobs)

    def test_key_in_bearer_header_is_accepted(self):
        jobs = self.enqueue(1)
        response, result = self.call(
            params={}, headers={"Authorization": f"Bearer {self.key}"}
        )
        self.assertEqual(response.status_code, 200, result)
        self.assertEqual(jobs.state, "done")

    def test_key_in_x_api_key_header_is_accepted(self):
        jobs = self.enqueue(1)
        response, result = self.call(headers={"X-Api-Key": self.key})
        self.assertEqual(response.status_code, 200, result)
        self.assertEqual(jobs.state, "done")

    def test_wrong_header_keys_are_refused(self):
        jobs = self.enqueue(1)
        for headers in (
            {"Authorization": "Bearer wrong"},
            {"X-Api-Key": "wrong"},
        ):
            self.assertRefused(401, {}, NOT_AUTHENTICATED, headers=headers)
        # Another scheme than Bearer carries no key.
        with self.assertLogs(API_LOGGER, logging.INFO) as logs:
            self.assertRefused(
                401,
                {},
                NOT_AUTHENTICATED,
                headers={"Authorization": f"Basic {self.key}"},
            )
        self.assertIn("missing API key", logs.output[0])
        self.assertStillPending(jobs)

    def test_body_key_wins_over_header_key(self):
        jobs = self.enqueue(1)
        self.assertRefused(
            401,
            {"api_key": "wrong"},
            NOT_AUTHENTICATED,
            headers={"X-Api-Key": self.key},
        )
        self.assertStillPending(jobs)

    def test_regenerated_key_revokes_the_old_one(self):
        jobs = self.enqueue(1)
        new_key = generate_api_key(self.env)
        self.assertRefused(401, {"api_key": self.key}, NOT_AUTHENTICATED)
        self.assertStillPending(jobs)
        response, _result = self.call(params={"api_key": new_key})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(jobs.state, "done")


@tagged("post_install", "-at_install")
class TestApiParameters(ApiCase):
    BAD_VALUES = (
        *(0, -1, 1.5, "abc", "1e3", "", True, False, None, [20], {"n": 20}),
        *("२०", "²"),  # digits, but not ASCII ones
    )

    def assertBadValuesRefused(self, name, maximum):
        """Each bad value of parameter ``name``, and ``maximum`` + 1, is refused with
        a 400 naming the parameter and its maximum; the queue is left alone."""
        jobs = self.enqueue(1)
        for value in (*self.BAD_VALUES, maximum + 1):
            with self.subTest(**{name: value}):
                result = self.assertRefused(
                    400, {"api_key": self.key, name: value}, name
                )
                self.assertIn(str(maximum), result["message"])
        self.assertStillPending(jobs)

    def test_bad_batch_size_is_refused(self):
        self.assertBadValuesRefused("batch_size", 1000)

    def test_bad_max_seconds_is_refused(self):
        self.assertBadValuesRefused("max_seconds", 600)

    def test_bounds_are_accepted(self):
        self.enqueue(2)
        _response, result = self.call(
            params={"api_key": self.key, "batch_size": 1, "max_seconds": 600}
        )
        self.assertEqual(result["processed"], 1, result)
        _response, result = self.call(
            params={"api_key": self.key, "batch_size": 1000, "max_seconds": 1}
        )
        self.assertEqual(result["processed"], 1, result)

    def test_max_seconds_above_http_time_limit_is_refused(self):
        jobs = self.enqueue(1)
        # limit_time_real 60 s leaves 48 s to a run (engine.settings.limit_cap).
        with server_options(limit_time_real=60):
            result = self.assertRefused(
                400, {"api_key": self.key, "max_seconds": 49}, "max_seconds"
            )
            self.assertIn("limit_time_real", result["message"])
            self.assertStillPending(jobs)
            # The configured default (50 s) is lowered to the cap, not refused.
            response, result = self.call(params={"api_key": self.key})
            self.assertEqual(response.status_code, 200, result)
            self.assertEqual(jobs.state, "done")

    def test_unknown_parameter_is_ignored_with_a_warning(self):
        """The original ignored parameters it did not know; so does this API, and
        it says so (a typo must not go unseen)."""
        jobs = self.enqueue(2)
        response, result = self.call(
            params={"api_key": self.key, "batchsize": 1, "priority": "high"}
        )
        self.assertEqual(response.status_code, 200, result)
        self.assertEqual(result["processed"], 2, "batchsize is not batch_size")
        self.assertEqual(set(jobs.mapped("state")), {"done"})
        self.assertEqual(len(result["warnings"]), 1)
        self.assertIn(
            "unknown parameter(s) ignored: batchsize, priority", result["warnings"][0]
        )

    def test_known_parameters_stay_checked_beside_unknown_ones(self):
        jobs = self.enqueue(1)
        result = self.assertRefused(
            400, {"api_key": self.key, "batch_size": "20x", "extra": 1}, "batch_size"
        )
        self.assertIn("extra", result["warnings"][0])
        self.assertStillPending(jobs)

    def test_no_warnings_for_a_clean_request(self):
        self.enqueue(1)
        _response, result = self.call(params={"api_key": self.key})
        self.assertNotIn("warnings", result)


@tagged("post_install", "-at_install")
class TestApiRequestShape(ApiCase):
    def test_malformed_json_is_refused(self):
        jobs = self.enqueue(1)
        self.assertRefused(400, body='{"jsonrpc": "2.0", "params": {', message="JSON")
        self.assertStillPending(jobs)

    def test_json_nested_too_deep_is_malformed_not_a_crash(self):
        jobs = self.enqueue(1)
        nested = "[" * 20000 + "]" * 20000
        self.assertRefused(
            400, body=f'{{"jsonrpc": "2.0", "params": {nested}}}', message="JSON"
        )
        self.assertStillPending(jobs)

    def test_body_that_is_not_an_object_is_refused(self):
        jobs = self.enqueue(1)
        for body in ("[1, 2]", '"process"', "42", "null"):
            self.assertRefused(400, body=body, message="JSON-RPC 2.0 request")
        self.assertRefused(400, body="", message="empty body")
        self.assertStillPending(jobs)

    def test_body_without_jsonrpc_is_served(self):
        """The original's route accepted a body without "jsonrpc": "2.0"."""
        jobs = self.enqueue(1)
        response, result = self.call(body=json.dumps({"params": {"api_key": self.key}}))
        self.assertEqual(response.status_code, 200, result)
        self.assertNotIn("warnings", result)
        self.assertEqual(jobs.state, "done")

    def test_other_jsonrpc_version_is_served_with_a_warning(self):
        jobs = self.enqueue(2)
        for version in ("1.0", 2.0):
            body = json.dumps({"jsonrpc": version, "params": {"api_key": self.key}})
            response, result = self.call(body=body)
            self.assertEqual(response.status_code, 200, result)
            self.assertIn('"jsonrpc"', result["warnings"][0])
        self.assertEqual(set(jobs.mapped("state")), {"done"})

    def test_params_that_are_not_an_object_are_refused(self):
        jobs = self.enqueue(1)
        for params in ([self.key], self.key, None):
            body = json.dumps({"jsonrpc": "2.0", "params": params})
            self.assertRefused(400, body=body, message='"params" must be a JSON object')
        self.assertStillPending(jobs)

    def test_get_is_refused(self):
        jobs = self.enqueue(1)
        result = self.assertRefused(405, method="GET", body="", message="POST")
        self.assertEqual(result["code"], 405)
        response, _result = self.call(method="GET", body="")
        self.assertEqual(response.headers.get("Allow"), "POST")
        self.assertStillPending(jobs)

    def test_key_in_the_url_is_refused(self):
        """A URL is written to access logs: a key there is refused, never checked."""
        jobs = self.enqueue(1)
        for method, route in (("POST", PROCESS), ("GET", STATS), ("POST", STATS)):
            with self.subTest(method=method, route=route):
                response, result = self.call(
                    route=f"{route}?api_key={self.key}",
                    method=method,
                    params={"api_key": self.key},
                )
                self.assertEqual(response.status_code, 400, result)
                self.assertIn("must not be sent in the URL", result["message"])
        self.assertStillPending(jobs)

    def test_huge_body_is_refused(self):
        jobs = self.enqueue(1)
        padding = "x" * api_main.MAX_BODY_BYTES
        body = json.dumps({"jsonrpc": "2.0", "params": {"api_key": padding}})
        self.assertRefused(413, body=body, message="larger than")
        self.assertStillPending(jobs)

    def test_body_without_length_is_refused(self):
        """A chunked body has no Content-Length: it is refused, not read."""
        jobs = self.enqueue(1)
        chunk = b"x" * 8192

        def chunks():
            yield b'{"jsonrpc": "2.0", "params": {"api_key": "'
            for _i in range(api_main.MAX_BODY_BYTES // len(chunk) + 2):
                yield chunk
            yield b'"}}'

        self.assertRefused(411, body=chunks(), message="Content-Length")
        self.assertStillPending(jobs)


@tagged("post_install", "-at_install")
class TestApiDatabase(ApiCase):
    def test_db_param_naming_this_database_is_accepted(self):
        jobs = self.enqueue(1)
        response, result = self.call(
            params={"api_key": self.key, "db": self.env.cr.dbname}
        )
        self.assertEqual(response.status_code, 200, result)
        self.assertEqual(jobs.state, "done")

    def test_unknown_database_is_refused(self):
        """Refused as a stranger is: the key is this database's, and another
        database's name is not known to be one."""
        jobs = self.enqueue(1)
        for db in ("dqj_no_such_database", 42, ""):
            self.assertRefused(401, {"api_key": self.key, "db": db}, NOT_AUTHENTICATED)
        self.assertStillPending(jobs)

    def test_several_databases_need_the_db_param(self):
        here = self.env.cr.dbname
        # With --database and no --db-filter, Odoo lists only the given database.
        with server_options(dbfilter=".*"):
            others = [db for db in list_dbs(True) if db != here]
        if not others:
            self.skipTest("needs a second database on the PostgreSQL server")
        served = sorted([here, others[0]])
        jobs = self.enqueue(1)
        alternatives = "|".join(re.escape(db) for db in served)
        dbfilter = f"^({alternatives})$"
        with server_options(dbfilter=dbfilter):
            # Odoo itself needs to know the database to reach an addon's route when
            # several are served: the session cookie (here) or server_wide_modules.
            self.authenticate(None, None)
            with self.assertLogs(API_LOGGER, logging.INFO) as logs:
                self.assertRefused(401, {"api_key": self.key}, NOT_AUTHENTICATED)
            self.assertIn("several databases are served", logs.output[0])
            self.assertStillPending(jobs)
            response, result = self.call(params={"api_key": self.key, "db": here})
            self.assertEqual(response.status_code, 200, result)
        self.assertEqual(jobs.state, "done")


@tagged("post_install", "-at_install")
class TestApiStrangers(ApiCase):
    """A caller without this database's key learns nothing about the databases nor
    about how they are configured, and is damped as a key guesser is."""

    def answer(self, params, route=PROCESS, **kwargs):
        """What a caller sees: status, headers that could tell, and the body."""
        response, _result = self.call(route=route, params=params, **kwargs)
        return (
            response.status_code,
            response.headers.get("Retry-After"),
            response.json(),
        )

    def test_unknown_database_answers_as_a_known_one_without_key(self):
        jobs = self.enqueue(1)
        here = self.env.cr.dbname
        unknown = "dqj_no_such_database"
        with self.assertLogs(API_LOGGER, logging.INFO) as logs:
            answers = {
                "unknown database, wrong key": self.answer(
                    {"db": unknown, "api_key": "guess"}
                ),
                "unknown database, no key": self.answer({"db": unknown}),
                "this database, no key": self.answer({"db": here}),
                "this database, wrong key": self.answer(
                    {"db": here, "api_key": "guess"}
                ),
                "no database named, wrong key": self.answer({"api_key": "guess"}),
                "this database, key not a string": self.answer(
                    {"db": here, "api_key": 7}
                ),
            }
        expected = answers["this database, wrong key"]
        self.assertEqual(expected[0], 401)
        for case, answer in answers.items():
            self.assertEqual(answer, expected, case)
        for route in (STATS,):
            self.assertEqual(self.answer({"db": unknown}, route=route), expected)
        # The reasons are in the server log, one INFO line per request.
        self.assertEqual(len(logs.output), len(answers))
        self.assertTrue(all(line.startswith("INFO") for line in logs.output))
        self.assertIn(unknown, logs.output[0])
        self.assertIn("names no database", logs.output[0])
        self.assertStillPending(jobs)

    def test_no_key_configured_is_not_told_to_strangers(self):
        jobs = self.enqueue(1)
        configured = self.answer({"api_key": "guess"})
        revoke_api_key(self.env)
        with self.assertLogs(API_LOGGER, logging.INFO) as logs:
            unconfigured = self.answer({"api_key": "guess"})
            keyless = self.answer({})
        self.assertEqual(unconfigured, configured)
        self.assertEqual(keyless, configured)
        self.assertNotIn("configured", unconfigured[2]["result"]["message"])
        self.assertIn("no API key is configured", logs.output[0])
        self.assertTrue(all(line.startswith("INFO") for line in logs.output))
        self.assertStillPending(jobs)

    def test_requests_without_key_are_damped(self):
        """Requests without a key count as wrong keys do: once the address is
        blocked, even the right key waits."""
        jobs = self.enqueue(1)
        for i in range(failed_keys.limit):
            self.assertRefused(401, {"api_key": ""} if i % 2 else {})
        result = self.assertRefused(429, {"api_key": self.key}, "too many failed")
        self.assertIn("try again in", result["message"])
        self.assertStillPending(jobs)

    def test_old_pbkdf2_key_still_works_and_new_keys_get_one_hmac(self):
        """A key stored by earlier versions (PBKDF2, 60,000 rounds) keeps
        authenticating until it is replaced; a new key is stored as one salted
        HMAC-SHA256, cheap to check for a 256-bit random key."""
        jobs = self.enqueue(2)
        old_key = "a-key-generated-by-an-earlier-version-" + "k" * 12
        salt = "0123456789abcdef0123456789abcdef"
        digest = hashlib.pbkdf2_hmac(
            "sha256", old_key.encode(), salt.encode(), 60_000
        ).hex()
        self.env["ir.config_parameter"].sudo().set_param(
            PARAM_API_KEY_HASH, f"pbkdf2_sha256$60000${salt}${digest}"
        )
        response, result = self.call(params={"api_key": old_key, "batch_size": 1})
        self.assertEqual(response.status_code, 200, result)
        self.assertRefused(401, {"api_key": old_key + "x"})

        new_key = generate_api_key(self.env)
        stored = self.env["ir.config_parameter"].sudo().get_param(PARAM_API_KEY_HASH)
        scheme, salt, digest = stored.split("$")
        self.assertEqual(scheme, "hmac_sha256")
        self.assertEqual(
            digest, hmac.new(salt.encode(), new_key.encode(), "sha256").hexdigest()
        )
        self.assertNotIn(new_key, stored)
        self.assertRefused(401, {"api_key": old_key}, NOT_AUTHENTICATED)
        response, result = self.call(params={"api_key": new_key})
        self.assertEqual(response.status_code, 200, result)
        self.assertEqual(set(jobs.mapped("state")), {"done"})


@tagged("post_install", "-at_install")
class TestApiDamping(ApiCase):
    def fail_key(self, times, headers=None):
        for _i in range(times):
            self.assertRefused(
                401, {"api_key": "guess"}, NOT_AUTHENTICATED, headers=headers
            )

    def test_repeated_wrong_keys_block_the_address(self):
        jobs = self.enqueue(1)
        with self.assertLogs(API_LOGGER, logging.INFO) as logs:
            self.fail_key(failed_keys.limit)
        warnings = [line for line in logs.output if line.startswith("WARNING")]
        self.assertEqual(len(warnings), 1, "one warning, when the address is blocked")
        self.assertIn("blocked for", warnings[0])
        # Blocked: even the right key is refused, without being checked.
        result = self.assertRefused(429, {"api_key": self.key}, "too many failed")
        self.assertIn("try again in", result["message"])
        response, _result = self.call(params={"api_key": self.key})
        self.assertGreater(int(response.headers["Retry-After"]), 0)
        self.assertStillPending(jobs)

    def test_right_key_clears_earlier_failures(self):
        self.fail_key(failed_keys.limit - 1)
        response, _result = self.call(params={"api_key": self.key})
        self.assertEqual(response.status_code, 200)
        self.fail_key(failed_keys.limit - 1)
        response, _result = self.call(params={"api_key": self.key})
        self.assertEqual(response.status_code, 200)

    def test_right_key_from_another_address_is_unaffected(self):
        jobs = self.enqueue(1)
        # Behind a reverse proxy (proxy_mode) the caller's address is X-Forwarded-For.
        attacker = {
            "X-Forwarded-Host": "odoo.example.com",
            "X-Forwarded-For": "203.0.113.7",
        }
        scheduler = {**attacker, "X-Forwarded-For": "198.51.100.9"}
        with server_options(proxy_mode=True):
            self.fail_key(failed_keys.limit, headers=attacker)
            self.assertRefused(429, {"api_key": self.key}, headers=attacker)
            self.assertStillPending(jobs)
            response, result = self.call(
                params={"api_key": self.key}, headers=scheduler
            )
            self.assertEqual(response.status_code, 200, result)
        self.assertEqual(jobs.state, "done")


@tagged("post_install", "-at_install")
class TestApiStats(ApiCase):
    def test_stats_report_the_queue_and_process_nothing(self):
        jobs = self.enqueue(3)
        # The oldest job became due an hour ago.
        self.env.cr.execute(
            "UPDATE queue_job SET date_created = (now() AT TIME ZONE 'UTC') "
            "- interval '1 hour' WHERE id = %s",
            (jobs[0].id,),
        )
        failed = self.enqueue(1)
        failed.write({"state": "failed", "date_started": failed.date_created})
        response, result = self.call(route=STATS, params={"api_key": self.key})
        self.assertEqual(response.status_code, 200, result)
        self.assertEqual(result["status"], "success")
        self.assertEqual(result["counts"]["pending"], 3)
        self.assertEqual(result["counts"]["failed"], 1)
        self.assertEqual(result["pending_count"], 3)
        self.assertGreaterEqual(result["oldest_pending_age"], 3599)
        self.assertEqual(result["failed_last_hour"], 1)
        self.assertRegex(result["timestamp"], TIMESTAMP)
        self.assertStillPending(jobs)

    def test_stats_estimate_large_counts_and_say_so(self):
        jobs = self.enqueue(3)
        later = self.enqueue(1, priority=20)
        # The oldest due job of each priority is read: the later one, created an
        # hour ago, waited longest.
        self.env.cr.execute(
            "UPDATE queue_job SET date_created = (now() AT TIME ZONE 'UTC') "
            "- interval '1 hour' WHERE id = %s",
            (later.id,),
        )
        with patch.object(counts, "EXACT_COUNT_LIMIT", 2):
            _response, result = self.call(route=STATS, params={"api_key": self.key})
        self.assertLessEqual({"pending", "pending_count"}, set(result["estimated"]))
        self.assertGreater(result["counts"]["pending"], 2)
        self.assertGreater(result["pending_count"], 2)
        self.assertGreaterEqual(result["oldest_pending_age"], 3599)
        _response, result = self.call(route=STATS, params={"api_key": self.key})
        self.assertNotIn("pending_count", result["estimated"])
        self.assertEqual(result["pending_count"], 4)
        self.assertStillPending(jobs | later)

    def test_stats_report_the_last_run(self):
        self.enqueue(2)
        self.call(params={"api_key": self.key, "batch_size": 1})
        _response, result = self.call(route=STATS, params={"api_key": self.key})
        last_run = result["last_run"]
        self.assertEqual(last_run["source"], "api")
        self.assertEqual((last_run["processed"], last_run["pending_count"]), (1, 1))
        self.assertEqual(last_run["stopped_by"], "batch_size")
        self.assertRegex(last_run["date_start"], TIMESTAMP)

    def test_empty_queue_has_no_oldest_age(self):
        _response, result = self.call(route=STATS, params={"api_key": self.key})
        self.assertEqual(result["pending_count"], 0)
        self.assertIsNone(result["oldest_pending_age"])

    def test_stats_need_the_key(self):
        response, result = self.call(route=STATS, params={"api_key": "wrong"})
        self.assertEqual((response.status_code, result["code"]), (401, 401))
        self.assertNotIn("counts", result)
        response, result = self.call(
            route=STATS, params={"api_key": self.key, "batch_size": 5}
        )
        self.assertEqual(response.status_code, 200, result)
        self.assertIn("batch_size", result["warnings"][0], "stats process nothing")

    def test_stats_carry_the_original_block(self):
        """The original answered {"status", "stats": {pending, started, done, failed,
        total, timestamp}}: that block is there, beside this API's figures."""
        self.enqueue(2)
        later = self.enqueue(1, eta=3600)
        failed = self.enqueue(1)
        failed.write({"state": "failed"})
        _response, result = self.call(route=STATS, params={"api_key": self.key})
        block = result["stats"]
        self.assertEqual(
            set(block), {"pending", "started", "done", "failed", "total", "timestamp"}
        )
        self.assertEqual(block["pending"], 3, "every pending job, due or not")
        self.assertEqual(block["failed"], 1)
        self.assertEqual(block["total"], sum(result["counts"].values()))
        self.assertEqual(block["timestamp"], result["timestamp"])
        self.assertEqual(result["pending_count"], 2, "due now")
        self.assertEqual(later.state, "pending")

    def test_get_stats_with_the_key_in_a_header(self):
        """Uptime monitors poll with GET: the key goes in a header."""
        self.enqueue(1)
        for headers in (
            {"X-Api-Key": self.key},
            {"Authorization": f"Bearer {self.key}"},
        ):
            with self.subTest(headers=list(headers)):
                response, result = self.call(
                    route=STATS, method="GET", body="", headers=headers
                )
                self.assertEqual(response.status_code, 200, result)
                self.assertEqual(result["stats"]["pending"], 1)
        response, result = self.call(route=STATS, method="GET", body="")
        self.assertEqual(response.status_code, 401, result)
        self.assertEqual(result["message"], NOT_AUTHENTICATED)

    def test_get_stats_with_a_body_or_a_db_in_the_query(self):
        """The original's route also took a GET with a JSON body; ``db`` (no secret)
        may come in the query string."""
        self.enqueue(1)
        response, result = self.call(
            route=STATS, method="GET", params={"api_key": self.key}
        )
        self.assertEqual(response.status_code, 200, result)
        response, result = self.call(
            route=f"{STATS}?db={self.env.cr.dbname}&probe=1",
            method="GET",
            body="",
            headers={"X-Api-Key": self.key},
        )
        self.assertEqual(response.status_code, 200, result)
        self.assertIn("probe", result["warnings"][0])

    def test_stats_refuse_other_methods(self):
        response, result = self.call(route=STATS, method="PUT", params={})
        self.assertEqual(response.status_code, 405, result)
        self.assertEqual(response.headers.get("Allow"), "GET, POST")
