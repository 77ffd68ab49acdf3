#!/usr/bin/env bash
# Developer entry point for deltatech_queue_job.
#
#   ./dev.sh serve   install requirements, start PostgreSQL, create a database with the
#                    addon and a few demo jobs, serve Odoo at http://127.0.0.1:8069
#   ./dev.sh test    lint + static checks, then (when Odoo 18 is importable) the
#                    install/upgrade/uninstall check and the addon's whole Odoo test suite
#   ./dev.sh lint    lint + static checks only (needs no Odoo)
#   ./dev.sh bench   benchmark against OCA's queue_job_cron_jobrunner (bench/bench.py,
#                    then bench/bench_server.py on running servers)
#   ./dev.sh stress [--short]  stress and chaos suite against a running server (stress/)
#   ./dev.sh shell   an Odoo shell on the serve database
#   ./dev.sh clean   drop this checkout's template database and .build/
#
# Environment knobs: DQJ_DB (serve database, default deltatech_queue_job),
# DQJ_HTTP_PORT (serve port, default 8069), DQJ_TEST_TAGS (default /deltatech_queue_job),
# DQJ_KEEP_DB=1 (keep the throw-away test database), DQJ_SKIP_STRESS=1 (test: skip the
# short stress run).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ADDON=deltatech_queue_job
BUILD="$HERE/.build"
ADDONS_LINK_DIR="$BUILD/addons"
DATA_DIR="$BUILD/data"
LOG_DIR="$BUILD/logs"
PY=${PYTHON:-python3}

say() { printf '\033[1m[dev.sh]\033[0m %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- requirements
install_requirements() {
    mkdir -p "$BUILD"
    local stamp="$BUILD/requirements.stamp" want
    want=$(cat "$HERE/requirements-dev.txt" "$HERE/requirements-oca.txt" | sha1sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    say "installing Python requirements from PyPI"
    "$PY" -m pip install -q -r "$HERE/requirements-dev.txt"
    # The OCA wheels declare a dependency on an 'odoo' distribution; Odoo installed
    # from its source archive may not be registered as one, so no dependency solving.
    "$PY" -m pip install -q --no-deps -r "$HERE/requirements-oca.txt"
    echo "$want" >"$stamp"
}

odoo_series() {
    (cd / && timeout 60 "$PY" -c 'import odoo.release as r; print(r.series)' 2>/dev/null) || true
}

explain_missing_odoo() {
    cat >&2 <<'EOF'
Odoo 18 is not importable by this python3 ("import odoo" fails or is not 18.0).
Install Odoo 18 from its official source, outside this repository, for example:

    git clone --depth 1 --branch 18.0 https://github.com/odoo/odoo.git odoo18
    # or unpack the 18.0 source archive from https://nightly.odoo.com/18.0/nightly/src/
    python3 -m pip install -r odoo18/requirements.txt
    python3 -m pip install --no-deps --config-settings editable_mode=compat -e odoo18

On Python 3.11 a few pins of Odoo's requirements.txt have no wheel (cbor2==5.4.2):
use the version pinned for Python 3.12 for those. Then run this command again.
EOF
}

require_odoo() {
    local series
    series=$(odoo_series)
    if [ "$series" != "18.0" ]; then
        explain_missing_odoo
        exit 3
    fi
}

# ---------------------------------------------------------------- PostgreSQL
pg_ok() { psql -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

start_postgres() {
    if pg_ok; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v pg_lsclusters >/dev/null; then
        # Debian cluster tools: the server itself runs as the 'postgres' user.
        local ver name
        read -r ver name _ < <(pg_lsclusters -h | head -n 1) || true
        if [ -z "${ver:-}" ]; then
            ver=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
            name=main
            say "creating PostgreSQL cluster $ver/$name"
            pg_createcluster "$ver" "$name" >/dev/null
        fi
        say "starting PostgreSQL cluster $ver/$name"
        pg_ctlcluster "$ver" "$name" start || true
        for _ in $(seq 1 60); do
            su postgres -c "psql -Atqc 'select 1'" >/dev/null 2>&1 && break
            sleep 0.5
        done
        su postgres -c "psql -Atqc \"select 1 from pg_roles where rolname='$(id -un)'\"" | grep -q 1 ||
            su postgres -c "createuser --superuser $(id -un)"
    else
        # Unprivileged user: a cluster of our own under .build/, on a socket in .build/.
        local bin pgdata="$BUILD/pgdata" sock="$BUILD/pgsock"
        bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        [ -n "$bin" ] || die "PostgreSQL server binaries not found (install Debian's 'postgresql')"
        mkdir -p "$sock"
        if [ ! -f "$pgdata/PG_VERSION" ]; then
            say "initialising a project-local PostgreSQL cluster in .build/pgdata"
            "$bin/initdb" -D "$pgdata" -A trust -U "$(id -un)" >/dev/null
        fi
        export PGHOST="$sock"
        if ! pg_ok; then
            "$bin/pg_ctl" -D "$pgdata" -l "$BUILD/postgres.log" -w \
                -o "-k $sock -c listen_addresses=''" start >/dev/null
        fi
    fi
    for _ in $(seq 1 60); do pg_ok && return 0; sleep 0.5; done
    die "PostgreSQL did not become ready"
}

db_exists() { [ "$(psql -d postgres -Atqc "select 1 from pg_database where datname='$1'")" = 1 ]; }

drop_db() {
    psql -d postgres -qc "select pg_terminate_backend(pid) from pg_stat_activity where datname='$1'" >/dev/null 2>&1 || true
    dropdb --if-exists "$1" 2>/dev/null || true
    rm -rf "${DATA_DIR:?}/filestore/$1"
}

# ---------------------------------------------------------------- Odoo
addons_path() {
    # Odoo needs the folder to carry the technical name: link the checkout under it.
    mkdir -p "$ADDONS_LINK_DIR"
    ln -sfn "$HERE" "$ADDONS_LINK_DIR/$ADDON"
    local core
    core=$(cd / && "$PY" -c 'import odoo, os; print(os.path.join(os.path.dirname(odoo.__path__[0]), "addons"))')
    if [ -d "$core" ]; then echo "$core,$ADDONS_LINK_DIR"; else echo "$ADDONS_LINK_DIR"; fi
}

odoo() {
    # Odoo's own command line (as odoo-bin), whatever way Odoo was installed.
    (odoo_exec "$@")
}

odoo_exec() {
    # Replaces the current shell with Odoo (signals reach Odoo itself).
    local sub=()
    if [ "${1:-}" = shell ]; then sub=(shell); shift; fi
    local path
    path=$(addons_path)
    cd /
    TZ=UTC exec "$PY" -c 'import sys, odoo; sys.exit(odoo.cli.main())' \
        "${sub[@]}" --addons-path="$path" --data-dir="$DATA_DIR" "$@"
}

template_db() {
    # A database with queue_job (and OCA's test_queue_job, whose job methods the tests use)
    # installed, keyed by the versions in it, so each test run only copies it (~0.3 s)
    # instead of installing queue_job again (~30 s).
    local key
    key=$(cd / && "$PY" - "$DATA_DIR" <<'EOF'
import hashlib, importlib.metadata as md
import odoo.release as r
import sys
parts = [r.version, sys.argv[1]]
for dist in ("odoo-addon-queue_job", "odoo-addon-test_queue_job"):
    try:
        parts.append(md.version(dist))
    except md.PackageNotFoundError:
        parts.append("-")
print(hashlib.sha1(" ".join(parts).encode()).hexdigest()[:10])
EOF
)
    local name="dqj_template_$key"
    if [ "${1:-}" = --name ]; then echo "$name"; return 0; fi
    if ! db_exists "$name"; then
        say "building template database $name (queue_job, test_queue_job)"
        mkdir -p "$LOG_DIR"
        if ! odoo -d "$name" -i queue_job,test_queue_job --without-demo=all --stop-after-init \
            --http-port=0 --logfile="$LOG_DIR/template.log" --log-level=warn; then
            drop_db "$name"
            die "building the template failed, see $LOG_DIR/template.log"
        fi
    fi
    echo "$name"
}

clone_db() {
    local template=$1 name=$2
    drop_db "$name"
    createdb -T "$template" "$name"
    if [ -d "$DATA_DIR/filestore/$template" ]; then
        mkdir -p "$DATA_DIR/filestore"
        cp -a "$DATA_DIR/filestore/$template" "$DATA_DIR/filestore/$name"
    fi
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Lines of an Odoo log at WARNING level or above, except the ones that say nothing about
# the addon (running as root is the caller's choice).
log_problems() {
    grep -E '^[0-9-]+ [0-9:,]+ [0-9]+ (WARNING|ERROR|CRITICAL) ' "$1" |
        grep -v "Running as user 'root'" || true
}

# ---------------------------------------------------------------- commands
cmd_lint() {
    local rc=0
    say "ruff check"
    "$PY" -m ruff check "$HERE" || rc=1
    say "ruff format --check"
    "$PY" -m ruff format --check "$HERE" || rc=1
    say "pylint-odoo"
    (cd "$HERE" && "$PY" -m pylint --rcfile="$HERE/.pylintrc" --load-plugins=pylint_odoo \
        $(git -C "$HERE" ls-files '*.py' ':!tools' ':!bench' ':!stress')) || rc=1
    say "static checks (manifest, XML, CSV, Python compile, README up to date)"
    "$PY" "$HERE/tools/check_static.py" "$HERE" || rc=1
    "$PY" "$HERE/tools/gen_readme.py" --check || rc=1
    return $rc
}

lifecycle_check() {
    # Install, upgrade and uninstall on a database with queue_job; each step must log
    # nothing at WARNING or above.
    local template=$1 db="dqj_lifecycle_$$" log rc=0
    clone_db "$template" "$db"
    for step in install upgrade; do
        log="$LOG_DIR/$step.log"
        rm -f "$log"
        local flag=-i
        [ $step = upgrade ] && flag=-u
        if ! odoo -d "$db" $flag $ADDON --stop-after-init --http-port=0 --logfile="$log" --log-level=info; then
            say "$step failed, see $log"; rc=1
        fi
        if [ -n "$(log_problems "$log")" ]; then
            say "$step logged problems:"; log_problems "$log" >&2; rc=1
        fi
    done
    log="$LOG_DIR/uninstall.log"
    rm -f "$log"
    if ! odoo shell -d "$db" --http-port=0 --logfile="$log" --log-level=info <<'EOF'
module = env["ir.module.module"].search([("name", "=", "deltatech_queue_job")])
module.button_immediate_uninstall()
env.cr.commit()
module.invalidate_recordset()
assert module.state == "uninstalled", module.state
leftovers = env["ir.model.data"].search_count([("module", "=", "deltatech_queue_job")])
assert not leftovers, f"{leftovers} xml ids left behind"
env.cr.execute("SELECT 1 FROM pg_indexes WHERE indexname LIKE 'deltatech_queue_job%'")
assert not env.cr.fetchall(), "index left behind"
env.cr.execute("SELECT 1 FROM information_schema.columns WHERE column_name LIKE 'dqj%'")
assert not env.cr.fetchall(), "column left behind"
print("UNINSTALL-OK")
EOF
    then
        say "uninstall failed, see $log"; rc=1
    elif [ -n "$(log_problems "$log")" ]; then
        say "uninstall logged problems:"; log_problems "$log" >&2; rc=1
    fi
    drop_db "$db"
    [ $rc = 0 ] && say "lifecycle: install, upgrade and uninstall are clean"
    return $rc
}

takeover_check() {
    # Upgrade from the original deltatech_queue_job 18.0.1.3.0 (its footprint rebuilt
    # beside OCA's queue_job_cron_jobrunner, which must be on the addons path), and
    # install beside queue_job_cron_jobrunner: clean logs, then a real server.
    local template=$1 log="$LOG_DIR/takeover.log" rc=0
    say "takeover of the original's databases (log: .build/logs/takeover.log)"
    (cd / && TZ=UTC timeout 900 "$PY" "$HERE/stress/takeover_check.py" --template "$template" \
        --addons-path "$(addons_path)" --data-dir "$DATA_DIR" --log-dir "$LOG_DIR") \
        2>&1 | tee "$log" || rc=1
    grep -q '^takeover: passed' "$log" || rc=1
    return $rc
}

run_suite() {
    local template=$1 db="dqj_test_$$" log="$LOG_DIR/tests.log" port rc=0
    port=$(free_port)
    clone_db "$template" "$db"
    rm -f "$log"
    say "running the Odoo test suite of $ADDON on $db (log: .build/logs/tests.log)"
    odoo -d "$db" -i $ADDON --test-enable --test-tags "${DQJ_TEST_TAGS:-/$ADDON}" \
        --stop-after-init --http-port="$port" --http-interface=127.0.0.1 \
        --logfile="$log" --log-level=test --limit-time-real=0 || rc=1
    [ "${DQJ_KEEP_DB:-0}" = 1 ] || drop_db "$db"
    # Odoo exits 0 having run nothing when it cannot find the addon: count the tests.
    local count failed errors summary
    # "N failed, M error(s) of T tests when loading database 'db'" (odoo.tests.result)
    summary=$(grep -Eo '[0-9]+ failed, [0-9]+ error\(s\) of [0-9]+ tests when loading' "$log" | tail -n 1)
    count=$(echo "$summary" | awk '{print $6+0}')
    failed=$(echo "$summary" | awk '{print $1 + $3}')
    errors=$(grep -Ec '^[0-9-]+ [0-9:,]+ [0-9]+ (ERROR|CRITICAL) ' "$log" || true)
    if [ "$errors" -gt 0 ]; then
        say "errors in the test log:"
        grep -E '^[0-9-]+ [0-9:,]+ [0-9]+ (ERROR|CRITICAL) ' -A25 "$log" | head -n 600 >&2 || true
    fi
    grep -E "odoo\.tests\.(stats|result)" "$log" >&2 || true
    if [ "$count" -eq 0 ]; then
        say "no test of $ADDON ran: failing"
        rc=1
    fi
    [ "$errors" -gt 0 ] && rc=1
    local passed=$((count - failed))
    [ $passed -lt 0 ] && passed=0
    echo "odoo: $passed passed, $failed failed"
    return $rc
}

cmd_test() {
    local rc=0
    install_requirements
    cmd_lint || rc=1
    if [ "$(odoo_series)" != "18.0" ]; then
        echo "ODOO SUITE SKIPPED: Odoo 18 is not installed (python3 cannot import odoo 18.0); only the Odoo-free checks ran."
        return $rc
    fi
    start_postgres
    mkdir -p "$LOG_DIR"
    local template
    template=$(template_db)
    if [ -z "${DQJ_SKIP_LIFECYCLE:-}" ]; then
        lifecycle_check "$template" || rc=1
        takeover_check "$template" || rc=1
    fi
    run_suite "$template" || rc=1
    # Every scenario of the stress suite, with fewer jobs, against a real server.
    if [ -z "${DQJ_SKIP_STRESS:-}" ]; then
        cmd_stress_run "$template" --short || rc=1
    fi
    return $rc
}

cmd_stress_run() {
    local template=$1 log="$LOG_DIR/stress.log" rc=0
    shift
    say "stress and chaos suite $* (log: .build/logs/stress.log, server: .build/logs/stress-server.log)"
    (cd / && TZ=UTC timeout 3600 "$PY" "$HERE/stress/run.py" --template "$template" \
        --addons-path "$(addons_path)" --data-dir "$DATA_DIR" --log-dir "$LOG_DIR" "$@") \
        2>&1 | tee "$log" || rc=1
    grep -q '^stress (.*): passed' "$log" || rc=1
    return $rc
}

cmd_stress() {
    install_requirements
    require_odoo
    start_postgres
    mkdir -p "$LOG_DIR"
    cmd_stress_run "$(template_db)" "$@"
}

cmd_serve() {
    install_requirements
    require_odoo
    start_postgres
    mkdir -p "$LOG_DIR"
    local db=${DQJ_DB:-$ADDON} port=${DQJ_HTTP_PORT:-8069}
    if ! db_exists "$db"; then
        local template
        template=$(template_db)
        clone_db "$template" "$db"
        say "installing $ADDON in database $db"
        odoo -d "$db" -i $ADDON --stop-after-init --http-port=0 --log-level=warn
        odoo shell -d "$db" --http-port=0 --log-level=warn <<'EOF'
from datetime import timedelta
partner = env["res.partner"].search([], limit=1)
for i in range(5):
    partner.with_delay(description=f"Demo job {i + 1}").write({"comment": f"demo {i + 1}"})
for i in range(3):
    partner.with_delay(description=f"Demo job in an hour {i + 1}", eta=timedelta(hours=1)).write(
        {"comment": f"later {i + 1}"}
    )
env.cr.commit()
EOF
    fi
    say "serving Odoo at http://127.0.0.1:$port  (database $db, login admin / admin)"
    odoo_exec -d "$db" --db-filter="^$db\$" --http-interface=127.0.0.1 --http-port="$port" "$@"
}

cmd_bench() {
    # One database per runner (the two addons cannot run together), fresh each run.
    install_requirements
    require_odoo
    start_postgres
    mkdir -p "$LOG_DIR"
    local template ours base
    template=$(template_db)
    # Named after this checkout's template, so that two checkouts never share them.
    ours="dqj_bench_ours_${template#dqj_template_}"
    base="dqj_bench_cron_jobrunner_${template#dqj_template_}"
    clone_db "$template" "$ours"
    clone_db "$template" "$base"
    say "installing $ADDON in $ours and queue_job_cron_jobrunner in $base"
    odoo -d "$ours" -i $ADDON --stop-after-init --http-port=0 --log-level=warn
    odoo -d "$base" -i queue_job_cron_jobrunner --stop-after-init --http-port=0 --log-level=warn
    # --server-only: the end-to-end part only (its options follow).
    local server_only=0
    if [ "${1:-}" = --server-only ]; then server_only=1; shift; fi
    if [ $server_only = 0 ]; then
        (cd / && TZ=UTC "$PY" "$HERE/bench/bench.py" --ours "$ours" --baseline "$base" \
            --addons-path "$(addons_path)" --data-dir "$DATA_DIR" "$@")
        set --
    fi
    local rc=0
    (cd / && TZ=UTC "$PY" "$HERE/bench/bench_server.py" --ours "$ours" --baseline "$base" \
        --addons-path "$(addons_path)" --data-dir "$DATA_DIR" --log-dir "$LOG_DIR" "$@") || rc=1
    if [ "${DQJ_KEEP_DB:-0}" != 1 ]; then drop_db "$ours"; drop_db "$base"; fi
    return $rc
}

cmd_clean() {
    # Drop the databases this checkout created (its template included) and .build/.
    require_odoo
    start_postgres
    local template
    template=$(template_db --name)
    drop_db "$template"
    drop_db "dqj_bench_ours_${template#dqj_template_}"
    drop_db "dqj_bench_cron_jobrunner_${template#dqj_template_}"
    rm -rf "$BUILD"
    say "removed this checkout's template database and .build/"
}

cmd_shell() {
    install_requirements
    require_odoo
    start_postgres
    odoo_exec shell -d "${DQJ_DB:-$ADDON}" --no-http "$@"
}

case "${1:-}" in
    serve) shift; cmd_serve "$@" ;;
    test) shift; cmd_test "$@" ;;
    lint) shift; install_requirements; cmd_lint ;;
    bench) shift; cmd_bench "$@" ;;
    stress) shift; cmd_stress "$@" ;;
    shell) shift; cmd_shell "$@" ;;
    clean) shift; cmd_clean ;;
    *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
