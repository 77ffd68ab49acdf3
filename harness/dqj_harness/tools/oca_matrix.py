"""The queue_job releases ``./dev.sh test`` runs against, and the steps dev.sh asks of
Python for each of them.

A release is a file ``requirements-oca/<queue_job version>.txt`` (queue_job, the
test_queue_job and queue_job_cron_jobrunner that go with it); its version's first two
parts name the Odoo series it runs on. Each is installed into a folder of its own,
``.build/oca/<version>``, never into site-packages, and that folder's ``odoo/addons``
goes on the addons path of that release's runs only (``python
harness/dqj_harness/tools/oca_matrix.py COMMAND``)::

    oca_matrix.py versions [--only V[,V]] [--series S[,S]]  # oldest first
    oca_matrix.py install V TARGET          # pip --no-deps --target
    oca_matrix.py python-deps TARGET        # external Python dependencies
    oca_matrix.py check-copy ADDONS_PATH TARGET
    oca_matrix.py compare LABEL LOG_WITH LOG_WITHOUT
"""

import argparse
import ast
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys

# The repository (harness/dqj_harness/tools/oca_matrix.py).
ROOT = pathlib.Path(__file__).resolve().parents[3]
RELEASES = ROOT / "requirements-oca"
STAMP = ".dqj-requirements"


def version_key(version):
    return tuple(int(part) for part in version.split("."))


def series_of(version):
    return ".".join(version.split(".")[:2])


def all_versions():
    return sorted((p.stem for p in RELEASES.glob("*.txt")), key=version_key)


def odoo_series():
    """The series of the Odoo this Python imports ("18.0", "19.0"), or None."""
    try:
        import odoo.release  # noqa: PLC0415 -- only this question needs Odoo
    except ImportError:
        return None
    return odoo.release.series


def cmd_versions(args):
    versions = all_versions()
    if args.only:
        wanted = [v.strip() for v in args.only.split(",") if v.strip()]
        unknown = [v for v in wanted if v not in versions]
        if unknown:
            sys.exit(
                f"unknown queue_job version(s) {', '.join(unknown)}: "
                f"requirements-oca/ has {', '.join(versions)}"
            )
        versions = [v for v in versions if v in wanted]
    if args.series:
        series = [s.strip() for s in args.series.split(",") if s.strip()]
        known = {series_of(v) for v in all_versions()}
        unknown = [s for s in series if s not in known]
        if unknown:
            sys.exit(
                f"unknown Odoo series {', '.join(unknown)}: requirements-oca/ has "
                f"releases for {', '.join(sorted(known, key=version_key))}"
            )
        versions = [v for v in versions if series_of(v) in series]
    print(" ".join(versions))


def cmd_install(args):
    """Install the release's wheels into TARGET (again only when its file changed)."""
    requirements = RELEASES / f"{args.version}.txt"
    want = hashlib.sha1(requirements.read_bytes()).hexdigest()
    target = pathlib.Path(args.target)
    stamp = target / STAMP
    if stamp.is_file() and stamp.read_text() == want:
        return
    print(f"installing queue_job {args.version} into {target}", file=sys.stderr)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # --no-deps: the wheels require an 'odoo' distribution, which an Odoo installed
    # from its source need not register; everything else they need is Odoo's.
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
        + ["--target", str(partial), "-r", str(requirements)],
        capture_output=True,
        text=True,
        check=False,
    )
    if pip.returncode:
        sys.exit(f"pip failed:\n{pip.stdout}{pip.stderr}")
    (partial / STAMP).write_text(want)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def cmd_python_deps(args):
    """The Python distributions the release's addons declare (external_dependencies),
    for dev.sh to install into the series' environment: queue_job 19.0 needs
    openupgradelib, which Odoo does not."""
    names = set()
    for manifest in sorted(
        pathlib.Path(args.target).glob("odoo/addons/*/__manifest__.py")
    ):
        declared = ast.literal_eval(manifest.read_text()).get(
            "external_dependencies", {}
        )
        names.update(declared.get("python", []))
    print(" ".join(sorted(names)))


def cmd_check_copy(args):
    """Import queue_job as the run's Odoo processes do; it must be TARGET's copy."""
    from dqj_harness.tools import odoo_launcher  # noqa: PLC0415

    dropped = odoo_launcher.prepare()
    import odoo  # noqa: PLC0415
    from odoo.tools import config  # noqa: PLC0415

    config.parse_config(
        ["--addons-path", args.addons_path, "--http-interface", "127.0.0.1"]
    )
    odoo.modules.module.initialize_sys_path()
    from odoo.addons import queue_job  # noqa: PLC0415

    where = pathlib.Path(queue_job.__file__).resolve().parent
    expected = (pathlib.Path(args.target) / "odoo" / "addons" / "queue_job").resolve()
    manifest = ast.literal_eval((where / "__manifest__.py").read_text())
    dists = sorted(where.parents[2].glob("odoo_addon_queue_job-*.dist-info"))
    dist = dists[0].name.removesuffix(".dist-info").split("-")[1] if dists else "?"
    print(
        f"queue_job {dist} (manifest {manifest['version']}) imported from "
        f"{os.path.relpath(where, ROOT)}"
    )
    for folder in dropped:
        print(f"  ignored (not on the addons path): {folder}")
    if where != expected:
        sys.exit(f"FAIL: expected queue_job from {expected}")


# "FAIL: TestClass.test_method" / "ERROR: TestClass.test_method" (odoo.tests.result),
# logged by the test's module logger.
OUTCOME = re.compile(r" (ERROR|CRITICAL) \S+ (\S+): (FAIL|ERROR): (.+)$")
SUMMARY = re.compile(r"(\d+) failed, (\d+) error\(s\) of (\d+) tests")


def outcomes(log):
    failing, total, failed = set(), 0, 0
    with open(log, errors="replace") as lines:
        for line in lines:
            match = OUTCOME.search(line)
            if match:
                failing.add(f"{match.group(2)}: {match.group(4).strip()}")
            summary = SUMMARY.search(line)
            if summary:
                failed = int(summary.group(1)) + int(summary.group(2))
                total = int(summary.group(3))
    return total, failed, failing


def cmd_compare(args):
    """queue_job's and test_queue_job's suites with the addon against without it."""
    with_total, with_failed, with_failing = outcomes(args.log_with)
    without_total, without_failed, without_failing = outcomes(args.log_without)
    added = sorted(with_failing - without_failing)
    print(
        f"queue_job suites ({args.label}): with the addon {with_total} "
        f"tests, {with_failed} failing; without it {without_total} tests, "
        f"{without_failed} failing; failing only with the addon: {len(added)}"
    )
    for test in added:
        print(f"  only with the addon: {test}")
    for test in sorted(without_failing):
        print(f"  also without the addon: {test}")
    problems = []
    if added:
        problems.append("the addon adds failures")
    if not with_total or not without_total:
        problems.append("a run ran no test")
    if with_failed > without_failed:
        problems.append(
            f"{with_failed} failing with the addon, only {without_failed} without"
        )
    if problems:
        sys.exit(f"FAIL: {'; '.join(problems)}")


# The subcommands dev.sh runs: name, function, arguments.
COMMANDS = (
    ("versions", cmd_versions, ["--only", "--series"]),
    ("install", cmd_install, ["version", "target"]),
    ("python-deps", cmd_python_deps, ["target"]),
    ("check-copy", cmd_check_copy, ["addons_path", "target"]),
    ("compare", cmd_compare, ["label", "log_with", "log_without"]),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, run, arguments in COMMANDS:
        command = sub.add_parser(name)
        for argument in arguments:
            command.add_argument(argument)
        command.set_defaults(run=run)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
