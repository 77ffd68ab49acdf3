"""Build README.rst from the fragments in readme/ (the OCA way: fragments are the
source, README.rst is generated), and check the developer documentation in docs/.

The README is the administrator's page (what the addon does, install, configure, use,
troubleshoot, changelog, credits); how it works, the benchmark, scaling, stress,
development, compatibility and migration live in docs/. ``--check`` fails when
README.rst is out of date or longer than MAX_LINES, when a link to docs/ (from the
README or between docs/ files) points to no file, when a docs/ file is missing from
docs/index.rst or does not render, when readme/ holds a fragment the README leaves out,
or when the README repeats a passage of docs/ (one explanation per concept).

    python3 harness/dqj_harness/tools/gen_readme.py          # write README.rst
    python3 harness/dqj_harness/tools/gen_readme.py --check  # used by ./dev.sh lint
"""

import ast
import pathlib
import re
import sys

# (fragment, section title), in OCA's order. Bug Tracker and Credits (Authors,
# Contributors, Maintainers) follow, built from the manifest and CONTRIBUTORS.rst.
SECTIONS = [
    ("DESCRIPTION.rst", None),
    ("INSTALL.rst", "Installation"),
    ("CONFIGURE.rst", "Configuration"),
    ("USAGE.rst", "Usage"),
    ("TROUBLESHOOTING.rst", "Troubleshooting"),
    ("ROADMAP.rst", "Known issues / Roadmap"),
    ("HISTORY.rst", "Changelog"),
]
CONTRIBUTORS = "CONTRIBUTORS.rst"

# An admin reads the README in ten minutes; the rest belongs to docs/.
MAX_LINES = 350

# Two texts share a passage when they share this many words in a row (markup aside):
# long enough that common phrases ("the runner crons", a setting's name) do not count.
SHARED_WORDS = 12

LINK = re.compile(r"`[^`<]*<([^>`]+)>`_")


def heading(title, underline):
    return [title, underline * len(title), ""]


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
        "**Table of contents**",
        "",
        ".. contents::",
        "   :local:",
        "   :depth: 1",
        "",
    ]
    for name, title in SECTIONS:
        path = root / "readme" / name
        if not path.exists():
            continue
        if title:
            parts += heading(title, "=")
        parts += [path.read_text().rstrip(), ""]
    parts += heading("Bug Tracker", "=")
    parts += [
        "Report a bug in the issue tracker of the repository this addon comes from;",
        "check there first whether it is known. Say which Odoo series and queue_job",
        "release run, and add the server log lines and the *Runner History* row of the",
        "run concerned. Developers' documentation: `docs/ <docs/index.rst>`_.",
        "",
    ]
    parts += heading("Credits", "=")
    parts += heading("Authors", "-")
    parts += [f"* {a.strip()}" for a in manifest["author"].split(",")] + [""]
    contributors = root / "readme" / CONTRIBUTORS
    if contributors.exists():
        parts += heading("Contributors", "-")
        parts += [contributors.read_text().rstrip(), ""]
    parts += heading("Maintainers", "-")
    parts += [
        "This module is maintained by "
        + ", ".join(f"`{m} <https://github.com/{m}>`_" for m in manifest["maintainers"])
        + f" ({manifest['website']}).",
        "",
    ]
    return "\n".join(parts)


def words(text):
    """The words of an rst text, markup and punctuation aside, lower case."""
    text = re.sub(r"`([^`<]*)<[^>`]*>`_", r"\1", text)
    return re.findall(r"[\w.%'-]+", text.lower())


def shared_passages(text, other, size=SHARED_WORDS):
    """The runs of ``size`` words ``text`` shares with ``other``, first of each."""
    theirs = words(other)
    seen = {tuple(theirs[i : i + size]) for i in range(len(theirs) - size + 1)}
    ours = words(text)
    found, i = [], 0
    while i <= len(ours) - size:
        if tuple(ours[i : i + size]) in seen:
            found.append(" ".join(ours[i : i + size]))
            i += size
        else:
            i += 1
    return found


def renders(path):
    import docutils.core  # noqa: PLC0415 (only the check needs it)
    import docutils.utils  # noqa: PLC0415

    try:
        docutils.core.publish_string(
            path.read_text(),
            writer_name="null",
            settings_overrides={"report_level": 5, "halt_level": 2},
        )
    except docutils.utils.SystemMessage as err:
        return str(err)
    return None


def check_links(path, root):
    """Relative links of ``path`` that point to no file of the repository."""
    problems = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s), mailto
            continue
        resolved = (path.parent / target.split("#")[0]).resolve()
        if not resolved.is_relative_to(root) or not resolved.exists():
            problems.append(f"{path.relative_to(root)}: link to {target}: no such file")
    return problems


def check(root, readme_text):
    problems = []
    lines = readme_text.count("\n") + 1
    if lines > MAX_LINES:
        problems.append(
            f"README.rst has {lines} lines, more than {MAX_LINES}: move what is not "
            "for an administrator to docs/"
        )
    listed = {name for name, _title in SECTIONS} | {CONTRIBUTORS}
    for fragment in sorted((root / "readme").glob("*")):
        if fragment.name not in listed:
            problems.append(
                f"readme/{fragment.name}: not part of the README (tools/gen_readme.py "
                "SECTIONS); developer documentation goes to docs/"
            )
    docs = root / "docs"
    index = docs / "index.rst"
    if not index.exists():
        return problems + ["docs/index.rst is missing"]
    problems += check_links(root / "README.rst", root)
    error = renders(root / "README.rst")  # PyPI and the Apps store show it
    if error:
        problems.append(f"README.rst: {error}")
    indexed = {(docs / target).resolve() for target in LINK.findall(index.read_text())}
    for page in sorted(docs.glob("*.rst")):
        problems += check_links(page, root)
        if page != index and page.resolve() not in indexed:
            problems.append(f"docs/{page.name}: not linked from docs/index.rst")
        error = renders(page)
        if error:
            problems.append(f"docs/{page.name}: {error}")
        passages = shared_passages(readme_text, page.read_text())
        if passages:
            more = f" (and {len(passages) - 1} more)" if len(passages) > 1 else ""
            problems.append(
                f"README.rst repeats docs/{page.name}: '{passages[0]} ...'{more}: keep "
                "one explanation, in docs/, and say in the README what an admin needs"
            )
    return problems


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
        problems = check(root, text)
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    target.write_text(text)
    lines = text.count("\n") + 1
    print(f"README.rst written: {lines} lines (at most {MAX_LINES})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
