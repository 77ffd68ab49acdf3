"""Prove, on a running server, that methods marked ``@api.private`` are refused by RPC.

Run by ``./dev.sh test`` for the queue_job releases it runs with the stand-in
(tools/odoo_stand_in.py): without the stand-in's RPC check, ``@api.private`` would only
mark methods, and ``queue.job.create`` (private in those releases: a caller able to
create jobs could run any method) would be callable by any user with the create right.

    python3 tools/check_stand_in_rpc.py --template DB --addons-path P --data-dir D \\
        --log-dir L

It copies the template, installs the addon, starts Odoo through the launcher (the
environment says whether the stand-in applies) and, as the administrator:

- over ``/web/dataset/call_kw`` and over ``/jsonrpc`` (``execute_kw``), calls
  ``queue.job.create``: both must answer AccessError "Private methods ... cannot be
  called remotely." and no job may have been created;
- calls ``queue.job.search_count`` the same two ways: both must answer, so the
  refusal above is the private check and not a broken route.
"""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "stress"))
from odoo_server import Database, Failure, OdooServer, check, run_parser

REFUSAL = "cannot be called remotely"
JOB = {"uuid": "dqj-rpc-check", "name": "rpc check", "model_name": "res.partner"}


def jsonrpc_execute_kw(server, uid, model, method, args):
    """``execute_kw`` over ``/jsonrpc``, answered as is."""
    return server.jsonrpc(
        "/jsonrpc",
        {
            "service": "object",
            "method": "execute_kw",
            "args": [server.db.name, uid, "admin", model, method, args, {}],
        },
    )


def refused(answer):
    error = answer.get("error") or {}
    data = error.get("data") or {}
    return data.get("name") == "odoo.exceptions.AccessError" and REFUSAL in data.get(
        "message", ""
    )


def run(server):
    session = server.admin_session()
    uid = server.db.scalar("SELECT id FROM res_users WHERE login = 'admin'")
    routes = {
        "/web/dataset/call_kw": lambda m, a: server.call_kw_answer(
            session, "queue.job", m, a
        ),
        "/jsonrpc execute_kw": lambda m, a: jsonrpc_execute_kw(
            server, uid, "queue.job", m, a
        ),
    }
    lines = []
    for route, call in routes.items():
        answer = call("create", [JOB])
        check(refused(answer), f"{route}: queue.job.create was not refused: {answer}")
        count = call("search_count", [[]])
        check(
            "result" in count and isinstance(count["result"], int),
            f"{route}: queue.job.search_count failed: {count}",
        )
        lines.append(f"{route}: create refused, search_count answered")
    leaked = server.db.scalar(
        "SELECT count(*) FROM queue_job WHERE uuid = %s", [JOB["uuid"]]
    )
    check(leaked == 0, f"{leaked} job(s) created over RPC")
    return lines


def main():
    args = run_parser(__doc__.splitlines()[0]).parse_args()
    db = Database(
        f"dqj_rpc_check_{os.getpid()}",
        args.template,
        args.addons_path,
        args.data_dir,
        args.log_dir,
    )
    server = OdooServer(db, workers=0, cron_threads=0, log_name="rpc-check-server.log")
    try:
        db.create("deltatech_queue_job")
        server.start()
        lines = run(server)
    except Failure as err:
        print(f"api.private over RPC: FAIL: {err}")
        return 1
    finally:
        server.stop()
        db.drop()
    print("api.private over RPC: refused (" + "; ".join(lines) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
