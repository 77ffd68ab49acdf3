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
ADDON = "deltatech_queue_job"
# Which of the addon's parts each part must not import: the engine is plain Python
# that the ORM classes and the controllers import, never the reverse; the ORM classes
# and the controllers do not import each other, nor do the models and takeover.py.
FORBIDDEN_IMPORTS = {
    "engine": ("models", "wizards", "controllers", "takeover"),
    "models": ("controllers", "takeover"),
    "wizards": ("controllers", "takeover"),
    "controllers": ("models", "wizards", "takeover"),
    "takeover": ("models", "wizards", "controllers"),
}


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
    problems += check_import_directions(root)
    problems += check_private_names(root)
    return problems


def imported_parts(rel, tree):
    """The addon's top-level parts (``engine``, ``models``, ``takeover``...) that the
    module at ``rel`` (a path inside the addon) imports."""
    package = list(rel.parent.parts)
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            if node.level - 1 > len(package):
                continue  # above the addon
            if node.module:
                modules = [".".join([*base, node.module])]
            else:
                modules = [".".join([*base, alias.name]) for alias in node.names]
            parts.update(module.split(".")[0] for module in modules)
            continue
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        prefix = f"odoo.addons.{ADDON}."
        parts.update(
            module[len(prefix) :].split(".")[0]
            for module in modules
            if module.startswith(prefix)
        )
    return parts


def check_import_directions(root):
    problems = []
    for part, forbidden in FORBIDDEN_IMPORTS.items():
        paths = [root / f"{part}.py"] if (root / f"{part}.py").is_file() else []
        paths += sorted((root / part).glob("*.py")) if (root / part).is_dir() else []
        for path in paths:
            rel = path.relative_to(root)
            tree = ast.parse(path.read_bytes(), str(rel))
            for name in sorted(imported_parts(rel, tree) & set(forbidden)):
                problems.append(f"{rel}: imports {name} ({part} must not)")
    return problems


def check_private_names(root):
    """The private methods of the addon's model classes are named ``_dqj_…`` (or
    ``_compute_dqj_…``, ``_search_dqj_…`` after their field), but the names kept for a
    contract, listed in models/original_compat.py's docstring."""
    compat = root / "models" / "original_compat.py"
    kept = set(
        re.findall(r"``(_\w+)``", ast.get_docstring(ast.parse(compat.read_text())))
    )
    problems = []
    for path in sorted([*root.glob("models/*.py"), *root.glob("wizards/*.py")]):
        rel = path.relative_to(root)
        for node in ast.walk(ast.parse(path.read_bytes(), str(rel))):
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                name = getattr(item, "name", "")
                if (
                    isinstance(item, ast.FunctionDef)
                    and name.startswith("_")
                    and not name.startswith("__")
                    and not re.match(r"_((compute|search|inverse|check)_)?dqj_", name)
                    and name not in kept
                ):
                    problems.append(
                        f"{rel}:{item.lineno}: private method {name} is not named "
                        "_dqj_… nor kept in models/original_compat.py's list"
                    )
    return problems


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    problems = check(root)
    for problem in problems:
        print(problem)
    print(f"static checks: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
