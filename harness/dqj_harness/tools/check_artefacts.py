# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The addon's artefacts carry the addon only: its wheel and ``git archive``.

Run by ``./dev.sh lint`` (so by ``./dev.sh test`` and CI)::

    python3 harness/dqj_harness/tools/check_artefacts.py REPOSITORY [--list]

From a snapshot of the repository's tracked files as they are in the working tree (a
throw-away git repository whose folder is named ``deltatech_queue_job``, as whool
wants), it makes the release archive (``git archive HEAD``) and builds the wheel twice
with pip (whool, through ``build_backend/addon_wheel.py``): from the git checkout, and
from the archive unpacked (no git there: the route of a release tarball), one for each
Odoo series the tree serves (``DQJ_ODOO_SERIES``, see the backend). Each must
hold exactly the tracked files but the harness's (:data:`HARNESS`, written out here,
not read from ``.gitattributes``); the wheels also leave out the build's own files.
``--list`` prints the wheel's files.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ADDON = "deltatech_queue_job"
# The development harness and the repository's own files: no site runs them.
HARNESS = (
    "harness/",
    ".ci/",
    "requirements-oca/",
    "dev.sh",
    "requirements-dev.txt",
    ".pylintrc",
    ".gitattributes",
    ".gitignore",
)
# What whool (pyproject.toml) and the backend (build_backend/) leave out of the wheel.
BUILD_ONLY = ("pyproject.toml", "build_backend/")
# The series one tree serves: a wheel each, versioned <series>.<manifest version>.
SERIES = ("18.0", "19.0")


def matches(name, prefixes):
    return any(name == p or (p.endswith("/") and name.startswith(p)) for p in prefixes)


def git(*args, cwd, **kwargs):
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, **kwargs
    ).stdout


def snapshot(root, dest):
    """A git repository at ``dest`` holding ``root``'s tracked files, as they are in
    its working tree, committed; their names."""
    names = [
        n
        for n in git("ls-files", "-z", cwd=root, text=True).split("\0")
        if n and (root / n).is_file()
    ]
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    git("init", "-q", cwd=dest)
    git("add", "-A", cwd=dest)
    git(
        "-c", "user.name=check", "-c", "user.email=check@localhost",
        "commit", "-q", "--no-verify", "-m", "snapshot", cwd=dest,
    )  # fmt: skip
    return set(names)


def wheel_files(source, out, series):
    """The addon's files in the wheel of Odoo ``series`` pip builds from ``source``."""
    out.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source],
        check=True,
        cwd=out,
        env=dict(os.environ, DQJ_ODOO_SERIES=series),
    )
    (wheel,) = out.glob("*.whl")
    prefix = f"odoo/addons/{ADDON}/"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    return wheel.name, {n[len(prefix) :] for n in names if n.startswith(prefix)}


def compare(what, found, expected):
    problems = [
        f"{what}: harness file {n}" for n in sorted(found) if matches(n, HARNESS)
    ]
    problems += [f"{what}: unexpected file {n}" for n in sorted(found - expected)]
    problems += [f"{what}: missing file {n}" for n in sorted(expected - found)]
    return problems


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    with tempfile.TemporaryDirectory(prefix="dqj-artefacts-") as tmp:
        tmp = pathlib.Path(tmp)
        checkout = tmp / "checkout" / ADDON
        checkout.mkdir(parents=True)
        tracked = snapshot(root, checkout)
        addon = {n for n in tracked if not matches(n, HARNESS)}
        in_wheel = {n for n in addon if not matches(n, BUILD_ONLY)}

        release = tmp / "release"
        release.mkdir()
        tar = tmp / "release.tar"
        tar.write_bytes(git("archive", "--format=tar", "HEAD", cwd=checkout))
        with tarfile.open(tar) as archive:
            archived = {m.name for m in archive.getmembers() if m.isfile()}
            archive.extractall(release / ADDON, filter="data")
        problems = compare("git archive", archived, addon)

        names = []
        for series, source in zip(SERIES, (checkout, release / ADDON), strict=True):
            name, files = wheel_files(source, tmp / f"wheel-{series}", series)
            names.append(name)
            if f"-{series}." not in name:
                problems.append(f"{name}: not versioned for Odoo {series}")
            problems += compare(
                f"{name} (from the {source.parent.name})", files, in_wheel
            )
        name = " and ".join(names)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(
        f"{name}: {len(files)} files, the addon's only; git archive: {len(archived)} "
        f"files ({len(tracked) - len(addon)} harness files left out)"
    )
    if "--list" in sys.argv:
        print("\n".join(sorted(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
