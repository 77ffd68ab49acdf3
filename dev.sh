#!/usr/bin/env bash
# Developer entry point for deltatech_queue_job.
#
#   ./dev.sh serve   install requirements, start PostgreSQL, create a database with the
#                    addon and a few demo jobs, serve Odoo at http://127.0.0.1:8069
#   ./dev.sh test    lint + static checks, then, for each Odoo series and each of its
#                    queue_job releases (requirements-oca/): the install/upgrade/uninstall
#                    check, the takeover check, the addon's whole Odoo test suite, and on
#                    the newest release of each series queue_job's and test_queue_job's
#                    suites with and without the addon and the short stress run
#   ./dev.sh lint    lint + static checks only (needs no Odoo)
#   ./dev.sh bench   benchmark against OCA's queue_job_cron_jobrunner (dqj_harness.bench.bench,
#                    then dqj_harness.bench.bench_server on running servers; --no-server
#                    or --server-only, followed by that part's options, runs one part)
#   ./dev.sh stress [--short]  stress and chaos suite against a running server
#                    (dqj_harness.stress)
#   ./dev.sh shell   an Odoo shell on the serve database
#   ./dev.sh clean   drop this checkout's template databases and .build/
#
# Each Odoo series runs in a virtual environment of its own, .build/venv-<series>, set up
# by the commands that need it: Odoo's requirements (pins fixed for this Python, see
# harness/dqj_harness/tools/odoo_requirements.py), requirements-dev.txt, the harness
# (harness/: the test kit, stress, bench, tools) and Odoo installed editable from a
# copy of its source kept in the user's cache, $XDG_CACHE_HOME/deltatech_queue_job/
# odoo-<series> (~/.cache/... by default), shared by every checkout. That copy comes
# from DQJ_ODOO_18 / DQJ_ODOO_19 (a local folder, or a git URL, optionally URL#ref) or,
# when neither is set nor cached, from Odoo's official repository at the series' branch.
#
# Environment knobs: DQJ_SERIES (Odoo series to run, comma-separated, default all of
# requirements-oca/), DQJ_QUEUE_JOB (queue_job release(s), comma-separated, among
# requirements-oca/*.txt; test runs them all by default, the other commands the oldest),
# DQJ_ODOO_18, DQJ_ODOO_19 (where Odoo's source comes from, see above), DQJ_ODOO_REFRESH=1
# (fetch the source again even if cached), DQJ_FULL=1 (test: every check on every
# release, not only on the newest of each series), DQJ_DB (serve database, default
# deltatech_queue_job), DQJ_HTTP_PORT (serve port, default 8069), DQJ_TEST_TAGS (default
# /deltatech_queue_job), DQJ_KEEP_DB=1 (keep the throw-away test database),
# DQJ_SKIP_STRESS=1 (test: skip the short stress run), DQJ_SKIP_LIFECYCLE=1,
# DQJ_SKIP_QUEUE_JOB_SUITES=1 (test: skip those checks). PYTHON: the Python the virtual
# environments are made from (default python3).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ADDON=deltatech_queue_job
BUILD="$HERE/.build"
ADDONS_LINK_DIR="$BUILD/addons"
DATA_DIR="$BUILD/data"
LOG_ROOT="$BUILD/logs"
LOG_DIR="$LOG_ROOT"
# The Python the virtual environments are made from, and the one lint runs with.
BASE_PY=${PYTHON:-python3}
# The Python of the series in use (use_series): its virtual environment's.
PY=$BASE_PY
# Odoo's sources, one per series, shared by the checkouts of this user (like pip's cache).
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/deltatech_queue_job"
ODOO_GIT=https://github.com/odoo/odoo.git
# The development harness (test kit, stress, bench, tools): a package of its own, not
# shipped with the addon, installed editable into each series' environment (use_series).
# The tools that run before that environment exists run as scripts from here.
HARNESS="$HERE/harness"
TOOLS="$HARNESS/dqj_harness/tools"
# Every Odoo process of the tooling starts through the launcher (and the processes they
# start, which inherit this): see dqj_harness/tools/odoo_launcher.py.
export DQJ_ODOO_LAUNCHER=dqj_harness.tools.odoo_launcher
# The series in use (use_series) and the queue_job release in use (use_queue_job): its
# version, its folder in .build/oca/.
SERIES=""
QJ_VERSION=""
OCA_DIR=""

say() { printf '\033[1m[dev.sh]\033[0m %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
matrix() { "$PY" "$TOOLS/oca_matrix.py" "$@"; }

# ---------------------------------------------------------------- requirements
install_requirements() {
    # The lint's tools, into the Python lint runs with (no Odoo needed). The runs on Odoo
    # have them in their series' virtual environment (use_series).
    mkdir -p "$BUILD"
    local stamp="$BUILD/requirements.stamp" want
    want=$( (command -v "$BASE_PY"; cat "$HERE/requirements-dev.txt") | sha1sum | cut -c1-16)
    if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing Python requirements from PyPI"
        "$BASE_PY" -m pip install -q -r "$HERE/requirements-dev.txt"
        echo "$want" >"$stamp"
    fi
}

# ---------------------------------------------------------------- Odoo, per series
series_of() { echo "${1%%.*}.0"; }               # 18.0.4.1.2.2 -> 18.0
source_variable() { echo "DQJ_ODOO_${1%%.*}"; }  # 18.0 -> DQJ_ODOO_18

odoo_source() {
    # The folder of the series' Odoo source: the copy in the cache, fetched first when
    # there is none, when the variable names another origin, or with DQJ_ODOO_REFRESH=1.
    local series=$1 var spec dest
    var=$(source_variable "$series")
    spec=${!var:-}
    dest="$CACHE/odoo-$series"
    if [ -f "$dest/.dqj-origin" ] && { [ -z "$spec" ] ||
        { [ "$spec" = "$(cat "$dest/.dqj-origin")" ] && [ -z "${DQJ_ODOO_REFRESH:-}" ]; }; }; then
        echo "$dest"
        return 0
    fi
    fetch_odoo_source "$series" "${spec:-$ODOO_GIT#$series}" "$dest" || return 1
    echo "$dest"
}

fetch_odoo_source() {
    # Copy a local folder (its files, not its .git), or fetch one commit of a git
    # repository (URL#ref: a branch, tag or commit; the series' branch by default).
    local series=$1 spec=$2 dest=$3 partial="$3.partial.$$"
    rm -rf "$partial"
    mkdir -p "$partial"
    if [ -d "$spec" ]; then
        say "copying Odoo $series from $spec into $dest"
        if ! tar -C "$spec" --exclude=.git --exclude='*.egg-info' --exclude=__pycache__ -cf - . |
            tar -C "$partial" -xf -; then
            rm -rf "$partial"
            return 1
        fi
    else
        local url=${spec%%#*} ref=$series
        [[ $spec == *#* ]] && ref=${spec#*#}
        say "fetching Odoo $series from $url ($ref, one commit) into $dest"
        if ! (export GIT_TERMINAL_PROMPT=0
            git -C "$partial" init -q &&
                timeout 1800 git -C "$partial" fetch -q --depth 1 "$url" "$ref" &&
                git -C "$partial" checkout -q FETCH_HEAD); then
            rm -rf "$partial"
            return 1
        fi
    fi
    if ! grep -Eq "^version_info = \(${series%%.*}, 0," "$partial/odoo/release.py" 2>/dev/null; then
        say "$spec does not hold Odoo $series (odoo/release.py)"
        rm -rf "$partial"
        return 1
    fi
    echo "$spec" >"$partial/.dqj-origin"
    rm -rf "$dest"
    mv "$partial" "$dest"
}

explain_missing_source() {
    local series=$1 var why
    var=$(source_variable "$series")
    if [ -n "${!var:-}" ]; then
        why="$var is set to ${!var}, which could not be copied or fetched (see above)."
    else
        why="$var is not set, $CACHE/odoo-$series holds no copy, and $ODOO_GIT (branch $series) could not be fetched (see above)."
    fi
    cat >&2 <<EOF
[dev.sh] ==========================================================================
[dev.sh] ODOO $series SKIPPED: its source could not be set up.
[dev.sh] $why
[dev.sh] To run Odoo $series, point $var at a folder holding its source or at a git URL
[dev.sh] (URL#branch-or-commit) and run again: the source is copied into the cache, where
[dev.sh] later runs (other checkouts, CI) find it. To run another series alone:
[dev.sh] DQJ_SERIES=<series> ./dev.sh test
[dev.sh] ==========================================================================
EOF
}

use_series() {
    # Run what follows on Odoo <series>: set up its virtual environment (once, and again
    # when the source, its requirements or requirements-dev.txt change) and make its
    # Python the one of the commands. The environment leaves the system's site-packages
    # out: Odoo 19's odoo is a namespace package, which any regular odoo package shadows.
    local series=$1 src venv="$BUILD/venv-$1" reqs want found
    [ "$SERIES" = "$series" ] && return 0
    src=$(odoo_source "$series") || { explain_missing_source "$series"; return 1; }
    mkdir -p "$BUILD"
    reqs=$(cd / && "$BASE_PY" "$TOOLS/odoo_requirements.py" "$src" 2>"$BUILD/requirements.notes") ||
        { cat "$BUILD/requirements.notes" >&2; return 1; }
    want=$( ("$BASE_PY" -c 'import sys; print(sys.version)'; command -v "$BASE_PY"
        echo "$src"; echo "$reqs"; cat "$HERE/requirements-dev.txt") | sha1sum | cut -c1-16)
    if [ "$(cat "$venv/.dqj-stamp" 2>/dev/null)" != "$want" ]; then
        say "setting up .build/venv-$series: Odoo $series (editable, from $src), its requirements, requirements-dev.txt"
        sed 's/^/[dev.sh] NOTE: /' "$BUILD/requirements.notes" >&2
        rm -rf "$venv"
        "$BASE_PY" -m venv "$venv" || return 1
        printf '%s\n' "$reqs" >"$venv/odoo-requirements.txt"
        (cd / && "$venv/bin/python" -m pip install -q -r "$venv/odoo-requirements.txt" \
            -r "$HERE/requirements-dev.txt") || return 1
        (cd / && "$venv/bin/python" -m pip install -q --no-deps \
            --config-settings editable_mode=compat -e "$src") || return 1
        echo "$want" >"$venv/.dqj-stamp"
    fi
    install_harness "$venv" || return 1
    found=$(cd / && "$venv/bin/python" -c 'import odoo.release as r; print(r.series)' 2>&1) || true
    if [ "$found" != "$series" ]; then
        say "the Python of .build/venv-$series does not import Odoo $series: $found"
        return 1
    fi
    PY="$venv/bin/python"
    SERIES=$series
}

install_harness() {
    # The harness, editable, into the environment: again when its pyproject.toml changes
    # or the environment served another checkout. An environment linked from another
    # checkout is left as it is (its harness is that checkout's).
    local venv=$1 want where
    want=$( (echo "$HARNESS"; cat "$HARNESS/pyproject.toml") | sha1sum | cut -c1-16)
    [ "$(cat "$venv/.dqj-harness-stamp" 2>/dev/null)" = "$want" ] && return 0
    if [ -L "$venv" ]; then
        where=$(cd / && "$venv/bin/python" -c 'import dqj_harness; print(dqj_harness.__path__[0])' 2>&1) || where="none"
        say "NOTE: .build/$(basename "$venv") is linked from another checkout: its harness ($where) is used, not this checkout's"
        return 0
    fi
    say "installing the harness (harness/, editable) into .build/$(basename "$venv")"
    (cd / && "$venv/bin/python" -m pip install -q --no-deps -e "$HARNESS") || return 1
    echo "$want" >"$venv/.dqj-harness-stamp"
}

# ---------------------------------------------------------------- queue_job releases
matrix_versions() {
    # The releases to run (requirements-oca/*.txt, by series, oldest first); DQJ_SERIES
    # and DQJ_QUEUE_JOB narrow.
    matrix versions --only "${DQJ_QUEUE_JOB:-}" --series "${DQJ_SERIES:-}"
}

default_version() {
    # The commands that run one release (serve, shell, stress, bench) take the first.
    local versions
    versions=$(matrix_versions) || exit 1
    [ -n "$versions" ] || die "no queue_job release matches DQJ_SERIES / DQJ_QUEUE_JOB"
    echo "${versions%% *}"
}

newest_of_series() {
    local versions
    versions=$(matrix versions --series "$1") || return 1
    echo "${versions##* }"
}

prepare_release() {
    # Set up the release's series, install the release into .build/oca/<version> (once)
    # and its external Python dependencies into the series' environment, and run what
    # follows on it: its folder on the addons path, its logs in .build/logs/<version>/.
    local version=$1 deps
    use_series "$(series_of "$version")" || return 1
    QJ_VERSION=$version
    OCA_DIR="$BUILD/oca/$QJ_VERSION"
    LOG_DIR="$LOG_ROOT/$QJ_VERSION"
    mkdir -p "$LOG_DIR"
    if ! matrix install "$QJ_VERSION" "$OCA_DIR"; then
        say "installing queue_job $QJ_VERSION into .build/oca failed"
        return 1
    fi
    deps=$(matrix python-deps "$OCA_DIR") || return 1
    # shellcheck disable=SC2086 # one word per distribution
    if [ -n "$deps" ] && ! (cd / && "$PY" -c '
import importlib.metadata as md, sys
for name in sys.argv[1:]:
    md.version(name)' $deps 2>/dev/null) && ! (cd / && "$PY" -m pip install -q $deps); then
        say "installing $deps (external dependencies of queue_job $QJ_VERSION) failed"
        return 1
    fi
}

use_queue_job() {
    prepare_release "$1" || die "Odoo $(series_of "$1") with queue_job $1 could not be set up"
}

check_queue_job_copy() {
    # Import queue_job as this release's Odoo processes do: it must be .build/oca's.
    (cd / && matrix check-copy "$(addons_path)" "$OCA_DIR") >&2
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
    # Then the queue_job release in use (use_queue_job), and nothing else of OCA's.
    [ -n "$OCA_DIR" ] || die "no queue_job release chosen (use_queue_job)"
    mkdir -p "$ADDONS_LINK_DIR"
    ln -sfn "$HERE" "$ADDONS_LINK_DIR/$ADDON"
    local core path
    core=$(cd / && "$PY" -c 'import odoo, os; print(os.path.join(os.path.dirname(odoo.__path__[0]), "addons"))')
    path="$ADDONS_LINK_DIR,$OCA_DIR/odoo/addons"
    if [ -d "$core" ]; then echo "$core,$path"; else echo "$path"; fi
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
    # Loopback unless the caller says otherwise (a later option wins): Odoo 19 warns
    # when no interface is given, and the lifecycle check fails on warnings.
    TZ=UTC exec "$PY" -m "$DQJ_ODOO_LAUNCHER" "${sub[@]}" --http-interface=127.0.0.1 \
        --addons-path="$path" --data-dir="$DATA_DIR" "$@"
}

template_name() {
    # Keyed by Odoo's version, this checkout's data dir and the queue_job release (its
    # version and the file that pins it with test_queue_job): one template per release.
    # "demo": the template with demo data (queue_job's own tests need it).
    local version=${1:-$QJ_VERSION} demo=${2:-}
    echo "dqj_template_$( (cd / && "$PY" -c 'import odoo.release as r; print(r.version)'
        echo "$DATA_DIR $version $demo"
        cat "$HERE/requirements-oca/$version.txt") | sha1sum | cut -c1-10)"
}

template_db() {
    # A database with queue_job (and OCA's test_queue_job, whose job methods the tests use)
    # installed, so each test run only copies it (~0.3 s) instead of installing queue_job
    # again (~30 s). Without demo data, unless called with "demo".
    local demo=${1:-} name without_demo=--without-demo=all
    name=$(template_name "$QJ_VERSION" "$demo")
    [ "$demo" = demo ] && without_demo=--without-demo=
    if ! db_exists "$name"; then
        say "building template database $name (queue_job $QJ_VERSION, test_queue_job${demo:+, demo data})"
        mkdir -p "$LOG_DIR"
        if ! odoo -d "$name" -i queue_job,test_queue_job $without_demo --stop-after-init \
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
        $(git -C "$HERE" ls-files '*.py' ':!harness')) || rc=1
    say "static checks (manifest, XML, CSV, Python compile, README up to date, docs/ consistent)"
    "$PY" "$TOOLS/check_static.py" "$HERE" || rc=1
    "$PY" "$TOOLS/gen_readme.py" --check || rc=1
    say "the addon's artefacts (its wheel, git archive) carry no harness file"
    "$PY" "$TOOLS/check_artefacts.py" "$HERE" || rc=1
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
env.cr.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'deltatech_queue_job%'")
assert env.cr.fetchall(), "the enqueue guard was not installed"
env.cr.execute("SELECT to_regclass('dqj_job_attempt')")
assert env.cr.fetchone()[0], "the attempts table was not installed"
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
env.cr.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'deltatech_queue_job%'")
assert not env.cr.fetchall(), "trigger left behind"
env.cr.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'deltatech_queue_job%'")
assert not env.cr.fetchall(), "function left behind"
env.cr.execute("SELECT relname FROM pg_class WHERE relname LIKE 'dqj%' OR relname LIKE 'deltatech_queue_job%'")
assert not env.cr.fetchall(), "table, index or sequence left behind"
# queue_job's jobrunner checks its notification trigger the same way (one per event).
env.cr.execute("SELECT count(*) FROM information_schema.triggers WHERE trigger_name = 'queue_job_notify'")
assert env.cr.fetchone()[0] == 3, "queue_job's own trigger was touched"
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
    # Upgrade from the original deltatech_queue_job of the series (18.0.1.3.0 or
    # 19.0.1.4.3, its footprint rebuilt beside OCA's queue_job_cron_jobrunner, or its
    # stand-in where OCA publishes none), and install beside queue_job_cron_jobrunner:
    # clean logs, then a real server.
    local template=$1 log="$LOG_DIR/takeover.log" rc=0
    say "takeover of the original's databases (log: .build/logs/takeover.log)"
    (cd / && TZ=UTC timeout 900 "$PY" -m dqj_harness.stress.takeover_check --template "$template" \
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
    say "running the Odoo test suite of $ADDON on $db (log: ${log#"$HERE"/})"
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
    # No test ran although the run failed: count the run as one failure.
    [ $rc != 0 ] && [ "$count" -eq 0 ] && failed=1
    PASSED_TOTAL=$((PASSED_TOTAL + passed))
    FAILED_TOTAL=$((FAILED_TOTAL + failed))
    conclude "odoo ($(run_label)): $passed passed, $failed failed"
    return $rc
}

queue_job_suites() {
    # queue_job's and test_queue_job's own suites, on a copy of the template with demo
    # data (as OCA runs them: some use base.user_demo), without the addon and with it
    # installed: the addon must not add a failure. No -i/-u in the test runs: Odoo then
    # runs the at_install tests of every module as it loads it (the addon, named before
    # test_queue_job, loads before it) and the post_install tests after.
    local template kind db log rc=0 not_installed=""
    template=$(template_db demo) || return 1
    say "queue_job's and test_queue_job's suites, without and with $ADDON (logs: ${LOG_DIR#"$HERE"/}/queue_job-suites-*.log)"
    for kind in without with; do
        db="dqj_qj_${kind}_$$"
        log="$LOG_DIR/queue_job-suites-$kind.log"
        rm -f "$log"
        clone_db "$template" "$db"
        # Odoo exits 0 when it cannot install the addon (not installable on this Odoo):
        # the module's state tells.
        if [ $kind = with ] && ! { odoo -d "$db" -i $ADDON --stop-after-init --http-port=0 \
            --log-level=warn --logfile="$LOG_DIR/queue_job-suites-install.log" &&
            [ "$(psql -d "$db" -Atqc "select state from ir_module_module where name='$ADDON'")" = installed ]; }; then
            say "installing $ADDON failed, see $LOG_DIR/queue_job-suites-install.log"
            not_installed=" FAILED: $ADDON could not be installed, the 'with' run ran without it"
            rc=1
        fi
        # Failing tests make Odoo exit non-zero: the comparison below judges.
        odoo -d "$db" --test-enable --test-tags /queue_job,/test_queue_job \
            --stop-after-init --http-port="$(free_port)" --http-interface=127.0.0.1 \
            --logfile="$log" --log-level=test --limit-time-real=0 || true
        [ "${DQJ_KEEP_DB:-0}" = 1 ] || drop_db "$db"
    done
    local verdict
    verdict=$(matrix compare "$(run_label)" "$LOG_DIR/queue_job-suites-with.log" \
        "$LOG_DIR/queue_job-suites-without.log" 2>&1) || rc=1
    printf '%s\n' "$verdict" | tail -n +2 >&2
    conclude "$(printf '%s\n' "$verdict" | head -n 1)$not_installed"
    return $rc
}

conclude() {
    # A closing line of one check: printed now, and again in the summary at the end.
    echo "$1"
    SUMMARY+=("$1")
}

run_label() { echo "Odoo $SERIES, queue_job $QJ_VERSION"; }

test_release() {
    # The checks of the test command on one queue_job release: all of them on the newest
    # release of its series (or on every one with DQJ_FULL=1); on an older release, the
    # lifecycle and takeover checks, the addon's suite and the graphs-poison stress
    # scenario (the 60 minutes of CI hold three releases run whole, not four).
    local rc=0 template full=1
    if ! prepare_release "$1"; then
        FAILED_TOTAL=$((FAILED_TOTAL + 1))
        conclude "odoo (Odoo $(series_of "$1"), queue_job $1): 0 passed, 1 failed (could not be set up, see above)"
        return 1
    fi
    if [ -z "${DQJ_FULL:-}" ] && [ "$QJ_VERSION" != "$(newest_of_series "$SERIES")" ]; then
        full=""
    fi
    local scope="every check"
    [ -n "$full" ] || scope="not the newest of its series: lifecycle, takeover, the addon's suite and the graphs-poison stress scenario"
    say "=== $(run_label): $scope (logs: ${LOG_DIR#"$HERE"/}/)"
    if ! check_queue_job_copy; then
        FAILED_TOTAL=$((FAILED_TOTAL + 1))
        conclude "odoo ($(run_label)): 0 passed, 1 failed (not the release's queue_job)"
        return 1
    fi
    # (set -e does not apply here: the caller tests this function's status.)
    if ! template=$(template_db); then
        FAILED_TOTAL=$((FAILED_TOTAL + 1))
        conclude "odoo ($(run_label)): 0 passed, 1 failed (no template database, see above)"
        return 1
    fi
    if [ -z "${DQJ_SKIP_LIFECYCLE:-}" ]; then
        lifecycle_check "$template" || rc=1
        takeover_check "$template" || rc=1
    fi
    run_suite "$template" || rc=1
    if [ -n "$full" ] && [ -z "${DQJ_SKIP_QUEUE_JOB_SUITES:-}" ]; then
        queue_job_suites || rc=1
    fi
    # Every scenario of the stress suite, with fewer jobs, against a real server; on an
    # older release, the one that exercises queue_job's graphs, hooks and retries the
    # most (a minute, where the whole short run takes ten).
    if [ -z "${DQJ_SKIP_STRESS:-}" ]; then
        local only=() what=stress
        [ -n "$full" ] || { only=(--only graphs-poison); what="stress graphs-poison"; }
        if cmd_stress_run "$template" --short "${only[@]}"; then
            conclude "$what ($(run_label)): passed"
        else
            conclude "$what ($(run_label)): FAILED"
            rc=1
        fi
    fi
    return $rc
}

cmd_test() {
    local rc=0 versions version series started=$SECONDS skipped=()
    install_requirements
    cmd_lint || rc=1
    versions=$(matrix_versions) || return 1
    [ -n "$versions" ] || die "no queue_job release matches DQJ_SERIES / DQJ_QUEUE_JOB"
    start_postgres
    SUMMARY=()
    PASSED_TOTAL=0
    FAILED_TOTAL=0
    for version in $versions; do
        series=$(series_of "$version")
        if [[ " ${skipped[*]} " == *" $series "* ]]; then
            conclude "odoo (Odoo $series, queue_job $version): SKIPPED, Odoo $series could not be set up"
            continue
        fi
        # A series that cannot be set up fails the run, loudly: DQJ_SERIES leaves it out.
        if ! use_series "$series"; then
            skipped+=("$series")
            conclude "odoo (Odoo $series, queue_job $version): SKIPPED, Odoo $series could not be set up (see above; DQJ_SERIES leaves a series out)"
            rc=1
            continue
        fi
        test_release "$version" || rc=1
    done
    echo
    echo "Odoo ${DQJ_SERIES:-of every series}, queue_job releases ${versions// /, }: $((SECONDS - started)) s"
    printf '%s\n' "${SUMMARY[@]}"
    if [ ${#skipped[@]} -gt 0 ]; then
        echo "odoo: $PASSED_TOTAL passed, $FAILED_TOTAL failed; SKIPPED (not set up): Odoo ${skipped[*]}"
    else
        echo "odoo: $PASSED_TOTAL passed, $FAILED_TOTAL failed"
    fi
    return $rc
}

cmd_stress_run() {
    local template=$1 log="$LOG_DIR/stress.log" rc=0
    shift
    say "stress and chaos suite $* (log: ${log#"$HERE"/}, server: ${LOG_DIR#"$HERE"/}/stress-server.log)"
    (cd / && TZ=UTC timeout 3600 "$PY" -m dqj_harness.stress.run --template "$template" \
        --addons-path "$(addons_path)" --data-dir "$DATA_DIR" --log-dir "$LOG_DIR" "$@") \
        2>&1 | tee "$log" || rc=1
    grep -q '^stress (.*): passed' "$log" || rc=1
    return $rc
}

cmd_stress() {
    install_requirements
    start_postgres
    use_queue_job "$(default_version)"
    cmd_stress_run "$(template_db)" "$@"
}

cmd_serve() {
    install_requirements
    start_postgres
    use_queue_job "$(default_version)"
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
    start_postgres
    use_queue_job "$(default_version)"
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
    # --server-only: the end-to-end part only; --no-server: dqj_harness.bench.bench only
    # (the options of that part follow).
    local part=both rc=0
    case "${1:-}" in
        --server-only) part=server; shift ;;
        --no-server) part=shell; shift ;;
    esac
    if [ $part != server ]; then
        (cd / && TZ=UTC "$PY" -m dqj_harness.bench.bench --ours "$ours" --baseline "$base" \
            --addons-path "$(addons_path)" --data-dir "$DATA_DIR" "$@") || rc=1
        set --
    fi
    if [ $part != shell ]; then
        (cd / && TZ=UTC "$PY" -m dqj_harness.bench.bench_server --ours "$ours" \
            --baseline "$base" --addons-path "$(addons_path)" --data-dir "$DATA_DIR" \
            --log-dir "$LOG_DIR" "$@") || rc=1
    fi
    if [ "${DQJ_KEEP_DB:-0}" != 1 ]; then drop_db "$ours"; drop_db "$base"; fi
    return $rc
}

cmd_clean() {
    # Drop the databases this checkout created (its templates included) and .build/. The
    # Odoo sources in the cache stay (other checkouts use them): rm -rf "$CACHE" drops them.
    start_postgres
    local version template
    for version in $(matrix versions); do
        # The template names need the series' Odoo: a series never set up made none.
        [ -x "$BUILD/venv-$(series_of "$version")/bin/python" ] || continue
        PY="$BUILD/venv-$(series_of "$version")/bin/python"
        template=$(template_name "$version")
        drop_db "$template"
        drop_db "$(template_name "$version" demo)"
        drop_db "dqj_bench_ours_${template#dqj_template_}"
        drop_db "dqj_bench_cron_jobrunner_${template#dqj_template_}"
    done
    rm -rf "$BUILD"
    say "removed this checkout's template databases and .build/"
}

cmd_shell() {
    install_requirements
    start_postgres
    use_queue_job "$(default_version)"
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
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
