# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The external trigger API, for cron-job.org and other schedulers.

``POST /api/v1/queue/process`` runs the queue's one runner
(``queue.job._job_runner``) with a batch size and a time budget;
``GET`` or ``POST /api/v1/queue/stats`` reports on the queue and processes nothing.

Both answer JSON-RPC 2.0 over a plain ``type="http"`` route, so that a JSON-RPC client
and a bare ``curl`` get the same answer, and the HTTP status matches the result's
``code`` (Odoo's ``type="json"`` routes answer 200 to everything, which hides a wrong
key from a scheduler for weeks). Every request the original deltatech_queue_job served
is served: a body without ``"jsonrpc": "2.0"``, parameters it ignored (ignored here
too, and named in the result's ``warnings``). The controller only parses, refuses,
picks the database and opens the cursors; jobs run as queue_job runs them, each with
its own stored user and context, never as the (anonymous) web caller.
"""

import contextlib
import json
import logging
from datetime import datetime, timezone

from odoo import SUPERUSER_ID, api, http
from odoo.http import request
from odoo.modules.registry import Registry

from ..engine.api_key import api_key_configured, verify_api_key
from ..engine.names import PROCESS_ROUTE, STATS_ROUTE
from ..engine.runner import POOLER_REFUSAL, STOP_POOLER
from ..engine.settings import SettingsError, http_run_budget, read_settings
from ..engine.throttle import failed_keys

_logger = logging.getLogger(__name__)

# A valid request is a few hundred bytes; anything this big is not a scheduler.
MAX_BODY_BYTES = 64 * 1024

PROCESS_PARAMS = frozenset({"api_key", "db", "batch_size", "max_seconds"})
STATS_PARAMS = frozenset({"api_key", "db"})
PROCESS_METHODS = ("POST",)
# Uptime monitors poll with GET (the key in a header: a URL lands in access logs).
STATS_METHODS = ("GET", "POST")

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
# The original's answer to a run that found nothing to do.
EMPTY_QUEUE_MESSAGE = "No pending jobs in queue"
# The original's statistics block: jobs by state, and all jobs.
ORIGINAL_STATS_STATES = ("pending", "started", "done", "failed")
# The one answer (401) to every request that is not authenticated, whatever the reason:
# no key, a wrong one, a database that is not served or has no key configured. A
# stranger learns neither which databases exist nor how they are configured; the
# reason goes to the server log.
UNAUTHENTICATED_MESSAGE = (
    "not authenticated: send this database's API key in params.api_key, an "
    "'Authorization: Bearer' header or an 'X-Api-Key' header (and the database in "
    "params.db when the server serves several); the server log says why"
)


class ApiError(Exception):
    """A refusal with its HTTP status; the message is safe to show the caller."""

    def __init__(self, code, message, headers=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


def _utc_timestamp():
    return datetime.now(timezone.utc).strftime(TIMESTAMP_FORMAT)


class QueueApiController(http.Controller):
    # ------------------------------------------------------------------ routes
    @http.route(
        PROCESS_ROUTE,
        type="http",
        auth="none",
        csrf=False,
        save_session=False,
        # auth="none" routes default to a read-only request cursor; the runner
        # writes (on its own cursor, which Odoo's test mode nests in the request's).
        readonly=False,
    )
    def process_queue(self, **_query):
        return self._serve(self._process, PROCESS_PARAMS, PROCESS_METHODS)

    @http.route(
        STATS_ROUTE,
        type="http",
        auth="none",
        csrf=False,
        save_session=False,
    )
    def queue_stats(self, **_query):
        return self._serve(self._stats, STATS_PARAMS, STATS_METHODS)

    # ------------------------------------------------------------------ handlers
    def _process(self, db, params):
        with self._cursor(db, readonly=True) as env:
            self._authenticate(env, params)
            settings = read_settings(env)
            try:
                batch_size, max_seconds = http_run_budget(settings, params)
            except SettingsError as err:
                raise ApiError(400, str(err)) from err
        # The run gets its own transaction, so its first acquisition sees every job
        # committed until now (Odoo cursors run at REPEATABLE READ).
        with self._cursor(db) as env:
            stats = env["queue.job"]._job_runner(
                batch_size=batch_size,
                max_seconds=max_seconds,
                commit=True,
                source="api",
            )
        if stats.stopped_by == STOP_POOLER:
            # The run is recorded and logged at ERROR; the caller is told why too.
            raise ApiError(503, POOLER_REFUSAL)
        result = stats.as_dict()
        del result["source"]
        if not stats.processed and not stats.pending_count:
            result["message"] = EMPTY_QUEUE_MESSAGE
        return {"status": "success", **result, "timestamp": _utc_timestamp()}

    def _stats(self, db, params):
        with self._cursor(db, readonly=True) as env:
            self._authenticate(env, params)
            stats = env["queue.job"]._dqj_queue_stats()
        timestamp = _utc_timestamp()
        counts = stats["counts"]
        original = {state: counts.get(state, 0) for state in ORIGINAL_STATS_STATES}
        original.update(total=sum(counts.values()), timestamp=timestamp)
        return {"status": "success", **stats, "stats": original, "timestamp": timestamp}

    # ------------------------------------------------------------------ plumbing
    def _serve(self, handler, allowed_params, methods):
        """Parse, refuse or hand over to ``handler(db, params)``; answer JSON-RPC.

        What the request carried that is ignored (an unknown parameter, another
        ``jsonrpc`` version) is named in the result's ``warnings``.
        """
        request_id = None
        warnings = []
        try:
            envelope = self._read_envelope(methods, warnings)
            request_id = envelope.get("id")
            if not isinstance(request_id, str | int) or isinstance(request_id, bool):
                request_id = None
            params = self._read_params(envelope, allowed_params, warnings)
            blocked = failed_keys.blocked_for(request.httprequest.remote_addr)
            if blocked:
                raise ApiError(
                    429,
                    "too many failed authentications from this address: "
                    f"try again in {blocked} seconds",
                    {"Retry-After": str(blocked)},
                )
            result = handler(self._resolve_db(params), params)
            return self._respond(request_id, 200, result, warnings=warnings)
        except ApiError as err:
            error = {"status": "error", "message": err.message, "code": err.code}
            return self._respond(
                request_id, err.code, error, err.headers, warnings=warnings
            )
        except Exception:
            # The traceback goes to the server log, never to the caller.
            _logger.exception("queue API: %s failed", request.httprequest.path)
            error = {
                "status": "error",
                "message": "internal error, see the server log",
                "code": 500,
            }
            return self._respond(request_id, 500, error)

    def _respond(self, request_id, status, result, headers=None, warnings=None):
        if warnings:
            result = {**result, "warnings": warnings}
        body = {"jsonrpc": "2.0", "id": request_id, "result": result}
        headers = {"Cache-Control": "no-store", **(headers or {})}
        return request.make_json_response(body, headers=headers, status=status)

    def _read_envelope(self, methods, warnings):
        """The request's JSON object: the body of a POST, or of a GET when it has
        one; a GET without a body reads its parameters from the query string."""
        httprequest = request.httprequest
        if httprequest.method not in methods:
            raise ApiError(
                405, f"use {' or '.join(methods)}", {"Allow": ", ".join(methods)}
            )
        if "api_key" in httprequest.args:
            # Refused, not read: a URL is written to access logs and proxy logs.
            raise ApiError(
                400,
                "the API key must not be sent in the URL (it lands in access logs): "
                "send it in an 'X-Api-Key' or 'Authorization: Bearer' header, or in "
                "params.api_key of a JSON body",
            )
        raw = self._read_body(optional=httprequest.method == "GET")
        if httprequest.method == "GET" and not raw.strip():
            return {"params": dict(httprequest.args)}
        if not raw.strip():
            raise ApiError(
                400,
                "empty body: a JSON-RPC 2.0 request (Content-Type: "
                "application/json) is expected",
            )
        try:
            envelope = json.loads(raw)
        except (ValueError, RecursionError) as err:
            # RecursionError: arrays or objects nested thousands deep (a 40 kB body
            # does it), which the decoder refuses by exceeding the recursion limit.
            raise ApiError(400, "malformed JSON body") from err
        if not isinstance(envelope, dict):
            raise ApiError(400, "the body must be a JSON-RPC 2.0 request object")
        version = envelope.get("jsonrpc", "2.0")
        if version != "2.0":
            # The original served any version (and none); so does this API.
            warnings.append(
                f'"jsonrpc" {json.dumps(version)} ignored: answered as JSON-RPC 2.0'
            )
        return envelope

    def _read_body(self, optional):
        httprequest = request.httprequest
        length = httprequest.content_length
        if length is None:
            chunked = "chunked" in httprequest.headers.get("Transfer-Encoding", "")
            if optional and not chunked:
                return b""
            # A chunked body has no length, and werkzeug would read it whole: refuse
            # it rather than read an unbounded stream (schedulers send a length).
            raise ApiError(411, "a Content-Length header is required")
        if length > MAX_BODY_BYTES:
            raise ApiError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        return httprequest.get_data(cache=False)

    def _read_params(self, envelope, allowed, warnings):
        params = envelope.get("params", {})
        if not isinstance(params, dict):
            raise ApiError(400, '"params" must be a JSON object')
        unknown = sorted(set(params) - allowed)
        if unknown:
            # Ignored, as the original did; said, so that a typo does not go unseen.
            warnings.append(
                f"unknown parameter(s) ignored: {', '.join(unknown)} "
                f"(accepted: {', '.join(sorted(allowed))})"
            )
        return {name: value for name, value in params.items() if name in allowed}

    def _resolve_db(self, params):
        """The database named by ``params.db``, or the only one this server serves
        to this host (``--db-filter``, else ``--database``, else all).

        The list is read as Odoo reads it to pick a request's database (whatever
        ``list_db`` says); it never reaches the caller: a database that is not served
        is refused as any unauthenticated request is (:meth:`_refused`).
        """
        host = request.httprequest.environ.get("HTTP_HOST", "")
        served = http.db_list(force=True, host=host)
        wanted = params.get("db")
        if wanted is not None:
            if not isinstance(wanted, str) or wanted not in served:
                raise self._refused(
                    f"params.db {str(wanted)[:64]!r} names no database this server "
                    "serves to this host"
                )
            return wanted
        if len(served) == 1:
            return served[0]
        if not served:
            raise self._refused("no database is served to this host")
        raise self._refused("several databases are served to this host, no params.db")

    def _authenticate(self, env, params):
        """Refuse (401) unless the caller sent this database's API key."""
        candidate = self._candidate_key(params)
        if not api_key_configured(env):
            # An unset key never means "open".
            reason = (
                "no API key is configured in this database: generate one in "
                "Queue Job > Settings"
            )
        elif candidate is None or candidate == "":
            reason = (
                "missing API key: send params.api_key, an 'Authorization: Bearer' "
                "header or an 'X-Api-Key' header"
            )
        elif not isinstance(candidate, str):
            reason = "invalid API key: api_key must be a string"
        elif not verify_api_key(env, candidate):
            reason = "invalid API key"
        else:
            failed_keys.succeeded(request.httprequest.remote_addr)
            return
        raise self._refused(reason, env.cr.dbname)

    def _refused(self, reason, dbname=None):
        """Count the refusal against the caller's address, log why; the 401 to
        raise.

        Every refusal counts, with or without a key: probing for databases costs the
        same as guessing keys. The answer is the same whatever the reason; the reason
        is logged at INFO (a scheduler with a stale key, a scanner: common, and each
        request is one line), the address's blocking once at WARNING.
        """
        address = request.httprequest.remote_addr
        now_blocked = failed_keys.failed(address)
        # Never the key itself: a log is read by more people than the settings.
        _logger.info(
            "queue API: refused %s from %s on database %s: %s",
            request.httprequest.path,
            address,
            dbname or "(none)",
            reason,
        )
        if now_blocked:
            _logger.warning(
                "queue API: address %s blocked for %ss after %s refused "
                "authentications within %ss (behind a reverse proxy, run Odoo with "
                "proxy_mode, or this is the proxy's address)",
                address,
                failed_keys.block,
                failed_keys.limit,
                failed_keys.window,
            )
        return ApiError(401, UNAUTHENTICATED_MESSAGE)

    @staticmethod
    def _candidate_key(params):
        if "api_key" in params:
            return params["api_key"]
        headers = request.httprequest.headers
        scheme, _sep, value = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        header_key = headers.get("X-Api-Key", "").strip()
        return header_key or None

    @contextlib.contextmanager
    def _cursor(self, db, readonly=False):
        """A superuser environment on its own cursor of database ``db``.

        Superuser is only the runner's identity: each job runs with the user and
        context stored on it (queue_job's Job.load).
        """
        with Registry(db).cursor(readonly=readonly) as cr:
            yield api.Environment(cr, SUPERUSER_ID, {})
