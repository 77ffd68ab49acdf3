"""Scenario 5: malformed and hostile requests to the queue API.

Each request must get a clear error (the HTTP status equals the body's ``code``, a
``message``, no traceback) and leave the queue untouched (same pending jobs, nothing
processed, no runner execution recorded). Every unauthenticated request gets the same
answer, whatever it lacked.
"""

import contextlib
import json
import select
import socket
import time

import requests

from .odoo_server import PROCESS_ROUTE, STATS_ROUTE, check, enqueue, job_group

PROCESS, STATS = PROCESS_ROUTE, STATS_ROUTE
JSON = {"Content-Type": "application/json"}
SQL_LIKE = "1; DROP TABLE queue_job; --' OR '1'='1"

# Every refused authentication counts towards the brute-force damping (10 per address
# and worker within 5 minutes blocks the address): the battery sends each request
# that is refused for its key from an address of its own (127.0.1.N, still the
# loopback interface), so that neither they nor the other scenarios' calls from
# 127.0.0.1 are blocked; the damping itself is shown from 127.0.0.2.
UNAUTHENTICATED = 401


def _body(params=None, **envelope):
    return json.dumps({"jsonrpc": "2.0", "params": params or {}, **envelope}).encode()


def _cases(key):
    """(label, expected status, how to send)."""
    huge = "k" * 60_000
    nested = b'{"jsonrpc": "2.0", "params": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    valid = {"api_key": key}
    cases = [
        # transport
        ("GET", 405, ("GET", b"", {})),
        ("DELETE", 405, ("DELETE", _body(valid), JSON)),
        ("no body", 400, ("POST", b"", JSON)),
        ("chunked body", 411, "chunked"),
        ("10 MB body", 413, "ten_mb"),
        ("Content-Length 10 MB, no body", 413, "lying_length"),
        ("form content type", 400, ("POST", _body(valid), _form())),
        ("multipart content type", 400, "multipart"),
        # envelope
        ("not JSON", 400, ("POST", b"hello", JSON)),
        ("invalid UTF-8", 400, ("POST", b'{"jsonrpc": "\xff\xfe"}', JSON)),
        ("JSON array", 400, ("POST", b"[]", JSON)),
        ("JSON string", 400, ("POST", b'"2.0"', JSON)),
        ("JSON nested 20000 deep", 400, ("POST", nested, JSON)),
        # Envelopes and parameters the original deltatech_queue_job served are
        # served (another jsonrpc, none, unknown parameters: ignored with a
        # warning): without a key, they are refused for the key.
        ("no jsonrpc member, no key", 401, ("POST", b'{"params": {}}', JSON)),
        ("jsonrpc 1.0, no key", 401, ("POST", _body({}, jsonrpc="1.0"), JSON)),
        ("jsonrpc 2 (number), no key", 401, ("POST", _body({}, jsonrpc=2), JSON)),
        ("params a list", 400, ("POST", b'{"jsonrpc": "2.0", "params": []}', JSON)),
        ("params a string", 400, ("POST", _raw_params('"x"'), JSON)),
        ("unknown parameter, no key", 401, _post({"batchsize": 5})),
        ("unicode parameter, no key", 401, _post({"bätch_sïze→": 5})),
        ("id an object, no key", 401, ("POST", _body({}, jsonrpc="1", id={}), JSON)),
        (
            "unknown parameter, bad batch_size",
            400,
            _post({**valid, "batchsize": 5, "batch_size": "x"}),
        ),
        # the key in a URL is refused unread (URLs land in access logs)
        ("key in the URL", 400, ("POST", _body(), JSON, f"{PROCESS}?api_key={key}")),
        ("stats: key in the URL", 400, ("GET", b"", {}, f"{STATS}?api_key={key}")),
        ("stats: GET without key", 401, ("GET", b"", {}, STATS)),
        ("stats: PUT", 405, ("PUT", _body(valid), JSON, STATS)),
        # keys
        ("missing key", 401, _post({})),
        ("empty key", 401, _post({"api_key": ""})),
        ("null key", 401, _post({"api_key": None})),
        ("Basic authorization", 401, _post({}, Authorization="Basic YWRtaW4=")),
        ("wrong key", 401, _post({"api_key": "wrong"})),
        ("blank key", 401, _post({"api_key": "   "})),
        ("integer key", 401, _post({"api_key": 12345})),
        ("list key", 401, _post({"api_key": [key]})),
        ("60 kB key", 401, _post({"api_key": huge})),
        ("unicode key", 401, _post({"api_key": "ключ🔑\u202e\x00"})),
        ("SQL-looking key", 401, _post({"api_key": SQL_LIKE})),
        ("wrong Bearer header", 401, _post({}, Authorization="Bearer nope")),
        ("wrong X-Api-Key header", 401, _post({}, **{"X-Api-Key": "nope"})),
    ]
    # bounds (with the right key: the parameters are checked after it)
    for name, bad in [
        ("batch_size", 0),
        ("batch_size", -1),
        ("batch_size", 1001),
        ("batch_size", 10**30),
        ("batch_size", 1.5),
        ("batch_size", "abc"),
        ("batch_size", SQL_LIKE),
        ("batch_size", True),
        ("batch_size", None),
        ("batch_size", []),
        ("max_seconds", 0),
        ("max_seconds", -5),
        ("max_seconds", 10**9),
        ("max_seconds", 97),  # above the HTTP cap: limit_time_real 120 s - 20 %
        ("max_seconds", 2.5),
        ("max_seconds", "३"),  # a Devanagari digit
        ("batch_size", "²"),  # a superscript
        ("max_seconds", {"$gt": 0}),
    ]:
        cases.append((f"{name} = {bad!r:.30}", 400, _post({**valid, name: bad})))
    for literal in ("NaN", "Infinity", "1e400"):
        raw = _raw_params(f'{{"api_key": {json.dumps(key)}, "max_seconds": {literal}}}')
        cases.append((f"max_seconds = {literal}", 400, ("POST", raw, JSON)))
    # the right key, for a database the server does not serve: refused as a stranger
    # is, the key being checked against a served database only
    for bad in ("nope", SQL_LIKE, 1):
        cases.append((f"db = {bad!r:.30}", 401, _post({**valid, "db": bad})))
    return cases


def _post(params, **headers):
    return ("POST", _body(params), {**JSON, **headers})


def _raw_params(params):
    return b'{"jsonrpc": "2.0", "params": ' + params.encode() + b"}"


def _form():
    return {"Content-Type": "application/x-www-form-urlencoded"}


# ---------------------------------------------------------------- sending
def _send(server, how, session=requests):
    """Send one case (a tuple: through ``session``); (status, body text, headers)."""
    if isinstance(how, tuple):
        method, data, headers, route = (*how, PROCESS) if len(how) == 3 else how
        response = session.request(
            method, server.url + route, data=data, headers=headers, timeout=60
        )
        return response.status_code, response.text, response.headers
    if how == "multipart":
        response = requests.post(
            server.url + PROCESS,
            files={"file": ("x.json", b'{"jsonrpc": "2.0"}', "application/json")},
            timeout=60,
        )
        return response.status_code, response.text, response.headers
    head = f"POST {PROCESS} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
    head += "Content-Type: application/json\r\nConnection: close\r\n"
    if how == "chunked":
        chunk = _body()
        body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
        return _raw(server.port, head + "Transfer-Encoding: chunked\r\n\r\n", [body])
    if how == "ten_mb":
        size = 10 * 1024 * 1024
        chunks = [b" " * 65536] * (size // 65536)
        return _raw(server.port, head + f"Content-Length: {size}\r\n\r\n", chunks)
    if how == "lying_length":
        return _raw(
            server.port, head + f"Content-Length: {10 * 1024 * 1024}\r\n\r\n", []
        )
    raise ValueError(how)


def _raw(port, head, chunks, timeout=30):
    """A request over a bare socket: stop sending as soon as the server answers
    (a server that refuses a 10 MB body does not read it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        sock.settimeout(5)
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
        sock.settimeout(timeout)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                data += part
    head_part, _sep, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    check(lines and lines[0].startswith("HTTP/"), f"no HTTP answer: {data[:200]!r}")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), body.decode(errors="replace"), headers


def _judge(label, expected, status, text, headers):
    """The answer is a clear error; returns its message."""
    check(
        status == expected, f"{label}: HTTP {status}, expected {expected}: {text[:300]}"
    )
    check("Traceback" not in text and 'File "' not in text, f"{label}: traceback shown")
    try:
        body = json.loads(text)
    except ValueError:
        raise AssertionError(f"{label}: the answer is not JSON: {text[:300]}") from None
    result = body.get("result") or {}
    check(body.get("jsonrpc") == "2.0", f"{label}: not a JSON-RPC answer: {body}")
    check(result.get("code") == status, f"{label}: code {result.get('code')}")
    check(result.get("status") == "error", f"{label}: status {result.get('status')}")
    message = result.get("message")
    check(isinstance(message, str) and len(message) >= 5, f"{label}: no message")
    if status == 405:
        allowed = "GET, POST" if label.startswith("stats") else "POST"
        check(headers.get("Allow") == allowed, f"{label}: no Allow header")
    return message


# ---------------------------------------------------------------- the scenario
def _queue_snapshot(st, uuids):
    return (
        st.pending_ids(),
        st.states(uuids)["done"],
        st.db.scalar("SELECT count(*) FROM queue_job_run"),
        st.db.scalar("SELECT count(*) FROM dqj_stress_effect"),
    )


class _FromAddress(requests.adapters.HTTPAdapter):
    """Connections from another loopback address: another caller."""

    def __init__(self, address):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _session_from(address):
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session


def _damping(st):
    """Wrong keys from one address get it blocked (429), other addresses are not."""
    session = _session_from("127.0.0.2")
    body = _body({"api_key": "wrong"})
    # Each worker process keeps its own count: up to 10 per worker.
    attempt = 0
    for attempt in range(1, 10 * st.server.workers + 2):  # noqa: B007
        response = session.post(
            st.server.url + PROCESS, data=body, headers=JSON, timeout=60
        )
        if response.status_code == 429:
            break
        check(response.status_code == 401, f"wrong key: {response.status_code}")
    else:
        raise AssertionError("no address blocking after many wrong keys")
    message = _judge(
        "blocked address", 429, response.status_code, response.text, response.headers
    )
    check(response.headers.get("Retry-After", "").isdigit(), "no Retry-After header")
    status, _result, _wall = st.server.api(STATS, {"api_key": st.key}, timeout=60)
    check(status == 200, f"the right key from 127.0.0.1 was refused: {status}")
    return attempt, message


def bad_input(st):
    """The battery: each hostile request refused clearly, the queue untouched."""
    st.reset()
    st.pause_runner_crons()  # only an accepted API call could process the jobs
    uuids, _committed = enqueue(st.db, [job_group("battery", 5)])
    uuids = uuids["battery"]
    before = _queue_snapshot(st, uuids)
    check(len(before[0]) == 5, f"expected 5 pending jobs: {before}")
    start = time.monotonic()
    cases = _cases(st.key)
    by_status = {}
    unauthenticated = {}
    slowest = 0.0
    for label, expected, how in cases:
        session = requests
        if expected == UNAUTHENTICATED:
            session = _session_from(f"127.0.1.{len(unauthenticated) + 1}")
        sent = time.monotonic()
        status, text, headers = _send(st.server, how, session)
        slowest = max(slowest, time.monotonic() - sent)
        message = _judge(label, expected, status, text, headers)
        if expected == UNAUTHENTICATED:
            unauthenticated[label] = message
        after = _queue_snapshot(st, uuids)
        check(after == before, f"{label}: the queue changed: {before} -> {after}")
        by_status[status] = by_status.get(status, 0) + 1
    check(
        len(set(unauthenticated.values())) == 1,
        f"unauthenticated requests told apart: {unauthenticated}",
    )
    attempts, _message = _damping(st)
    check(_queue_snapshot(st, uuids) == before, "the damping test changed the queue")
    # The queue was workable all along: the right request processes it.
    result, _wall = st.process(batch_size=10, max_seconds=10)
    st.resume_runner_crons()
    elapsed = time.monotonic() - start
    summary = (
        f"bad input: {len(cases) + attempts} hostile requests "
        f"({', '.join(f'{by_status[s]}x{s}' for s in sorted(by_status))}, "
        f"{attempts - 1}x401 then 429 from 127.0.0.2), each a clear error, the "
        f"{len(unauthenticated)} unauthenticated ones one answer, slowest "
        f"{slowest:.2f} s, queue untouched after each; then the right request "
        f"processed {result['processed']}/5, {elapsed:.1f} s"
    )
    check(result["done"] == 5, f"the queue was not workable: {summary}")
    return summary
