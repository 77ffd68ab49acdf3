# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The build backend of the addon's wheel: whool, packing the files ``git archive``
exports.

whool (OCA's backend for addon wheels) packs every file ``git ls-files`` lists in the
addon's folder (outside git, or in an sdist: every file of the folder), and has no
option to leave files out. This repository's root is the addon, and it also holds the
development harness (``harness/``, ``dev.sh``, ...), which ``.gitattributes`` marks
``export-ignore``. This backend is whool, with two of its steps narrowed:

- the files it packs from a git checkout are the tracked files git would export (the
  ``export-ignore`` ones left out), so the wheel and ``git archive`` of a release carry
  the same files, whichever of the two the wheel is built from;
- the addon's copy in the wheel drops this folder, as whool drops ``pyproject.toml``
  (the sdist keeps both: its wheel is built with them);
- the Odoo series of the wheel (its dependency on Odoo) is ``pyproject.toml``'s, or the
  one named by the environment variable ``DQJ_ODOO_SERIES`` (one tree serves 18.0 and
  19.0: ``DQJ_ODOO_SERIES=19.0 pip wheel --no-deps .`` builds the 19.0 wheel), and
  the wheel's version is the one Odoo records for the addon on that series, the
  manifest's series-free version with the series in front (``18.0.2.0.0``), as OCA's
  wheels are versioned.

``harness/dqj_harness/tools/check_artefacts.py`` (run by ``./dev.sh lint``) builds the
wheel both ways and fails if a harness file is inside, e.g. after a whool release that
changes the steps narrowed here.
"""

import os
import shutil
import subprocess
from pathlib import Path

from whool import buildapi
from whool.buildapi import (  # noqa: F401 -- the PEP 517 hooks, whool's own
    build_editable,
    build_sdist,
    build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

BACKEND_FOLDER = Path(__file__).resolve().parent.name

_whool_ls_files = buildapi._scm_ls_files
_whool_ensure_absent = buildapi._ensure_absent
_whool_load_pyproject_toml = buildapi.load_pyproject_toml
_whool_get_metadata = buildapi._get_metadata
SERIES_VARIABLE = "DQJ_ODOO_SERIES"


def _exported_files(addon_dir):
    """The files whool lists (``git ls-files``), but those marked ``export-ignore``."""
    files = _whool_ls_files(addon_dir)
    # -z: "path NUL attribute NUL value NUL" per file.
    out = subprocess.run(
        ["git", "check-attr", "-z", "--stdin", "export-ignore"],
        input="\0".join(files),
        cwd=addon_dir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    ignored = {out[i] for i in range(0, len(out) - 2, 3) if out[i + 2] == "set"}
    return [name for name in files if name not in ignored]


def _ensure_absent(paths):
    """whool's removal of ``pyproject.toml`` and ``PKG-INFO`` from the addon's copy in
    the wheel, and of this folder."""
    _whool_ensure_absent(paths)
    for folder in {Path(path).parent for path in paths}:
        shutil.rmtree(folder / BACKEND_FOLDER, ignore_errors=True)


def _load_pyproject_toml(addon_dir):
    """whool's options, the wheel's Odoo series from ``DQJ_ODOO_SERIES`` when set."""
    pyproject = _whool_load_pyproject_toml(addon_dir)
    series = os.environ.get(SERIES_VARIABLE)
    if series:
        whool = pyproject.setdefault("tool", {}).setdefault("whool", {})
        whool["odoo_series_override"] = series
    return pyproject


def _get_metadata(addon_dir):
    """whool's metadata, the version prefixed with the wheel's series as Odoo does."""
    metadata = _whool_get_metadata(addon_dir)
    whool = _load_pyproject_toml(addon_dir).get("tool", {}).get("whool", {})
    series = whool.get("odoo_series_override")
    if series and not metadata["Version"].startswith(series + "."):
        version = f"{series}.{metadata['Version']}"
        metadata.replace_header("Version", version)
    return metadata


buildapi._scm_ls_files = _exported_files
buildapi._ensure_absent = _ensure_absent
buildapi.load_pyproject_toml = _load_pyproject_toml
buildapi._get_metadata = _get_metadata
