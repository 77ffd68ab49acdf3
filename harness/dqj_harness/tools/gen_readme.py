"""Build README.rst from the fragments in readme/ (the OCA way: fragments are the
source, README.rst is generated). ``--check`` fails when README.rst is out of date.

    python3 harness/dqj_harness/tools/gen_readme.py          # write README.rst
    python3 harness/dqj_harness/tools/gen_readme.py --check  # used by ./dev.sh lint
"""

import ast
import pathlib
import sys

# (fragment, section title); a missing fragment is skipped.
SECTIONS = [
    ("DESCRIPTION.rst", None),
    ("INSTALL.rst", "Installation"),
    ("COMPATIBILITY.rst", "Compatibility"),
    ("MIGRATE.rst", "Migrating from the original"),
    ("CONFIGURE.rst", "Configuration"),
    ("USAGE.rst", "Usage"),
    ("GUARANTEES.rst", "Guarantees"),
    ("API.rst", "External API"),
    ("DESIGN.rst", "How it works"),
    ("BENCHMARK.rst", "Benchmark"),
    ("SCALING.rst", "Scaling"),
    ("STRESS.rst", "Stress and chaos suite"),
    ("DEVELOP.rst", "Development"),
    ("ROADMAP.rst", "Known issues / Roadmap"),
    ("CONTRIBUTORS.rst", "Contributors"),
]


def build(root):
    manifest = ast.literal_eval((root / "__manifest__.py").read_text())
    title = manifest["name"]
    parts = [
        "=" * len(title),
        title,
        "=" * len(title),
        "",
        "..",
        "   This file is generated from readme/*.rst by",
        "   harness/dqj_harness/tools/gen_readme.py: edit the fragments, then run it.",
        "",
        f"**{manifest['summary']}**",
        "",
        # Series-free: Odoo records it with its series in front (18.0.x.y.z).
        f"Version {manifest['version']} (Odoo 18.0 and 19.0) · "
        f"License {manifest['license']} · "
        f"Status {manifest['development_status']} · Depends on "
        + ", ".join(f"``{d}``" for d in manifest["depends"]),
        "",
        ".. contents::",
        "   :local:",
        "   :depth: 1",
        "",
    ]
    for name, heading in SECTIONS:
        path = root / "readme" / name
        if not path.exists():
            continue
        if heading:
            parts += [heading, "=" * len(heading), ""]
        parts += [path.read_text().rstrip(), ""]
    return "\n".join(parts)


def main():
    # The repository (harness/dqj_harness/tools/gen_readme.py).
    root = pathlib.Path(__file__).resolve().parents[3]
    text = build(root)
    target = root / "README.rst"
    if "--check" in sys.argv:
        if not target.exists() or target.read_text() != text:
            print(
                "README.rst is out of date: run "
                "python3 harness/dqj_harness/tools/gen_readme.py"
            )
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
