"""Odoo-free checks of the addon: manifest, data files, XML, CSV and Python syntax.

Run by ``./dev.sh lint`` (so by ``./dev.sh test`` and CI) on any machine, Odoo or not.
"""

import ast
import csv
import pathlib
import re
import subprocess
import sys

from lxml import etree

REQUIRED_KEYS = ("name", "version", "license", "author", "depends", "installable")


def tracked_files(root):
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [root / line for line in out.splitlines() if (root / line).exists()]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in root.rglob("*") if p.is_file() and ".build" not in p.parts]


def check(root):
    problems = []
    manifest = ast.literal_eval((root / "__manifest__.py").read_text())
    for key in REQUIRED_KEYS:
        if key not in manifest:
            problems.append(f"__manifest__.py: missing key {key!r}")
    # Series-free: Odoo puts the running series (18.0, 19.0) in front of it, and
    # refuses a version that starts with another series.
    if not re.fullmatch(r"\d+\.\d+\.\d+", str(manifest.get("version", ""))):
        problems.append("__manifest__.py: version must be a series-free x.y.z")
    for rel in manifest.get("data", []) + manifest.get("demo", []):
        if not (root / rel).is_file():
            problems.append(f"__manifest__.py: data file {rel} does not exist")
    for path in tracked_files(root):
        rel = path.relative_to(root)
        if path.suffix == ".py":
            try:
                compile(path.read_bytes(), str(rel), "exec")
            except SyntaxError as err:
                problems.append(f"{rel}: {err}")
        elif path.suffix == ".xml":
            try:
                etree.parse(str(path))
            except etree.XMLSyntaxError as err:
                problems.append(f"{rel}: {err}")
        elif path.suffix == ".csv":
            with path.open(newline="") as fh:
                rows = list(csv.reader(fh))
            if rows and any(len(row) != len(rows[0]) for row in rows):
                problems.append(f"{rel}: rows of unequal length")
    problems += check_rst(root / "README.rst")
    return problems


def check_rst(path):
    """README.rst must render (PyPI and the Apps store show it)."""
    import docutils.core  # noqa: PLC0415 (only this check needs it)
    import docutils.utils  # noqa: PLC0415

    try:
        docutils.core.publish_string(
            path.read_text(),
            writer_name="null",
            settings_overrides={"report_level": 5, "halt_level": 2},
        )
    except docutils.utils.SystemMessage as err:
        return [f"{path.name}: {err}"]
    return []


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    problems = check(root)
    for problem in problems:
        print(problem)
    print(f"static checks: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
