"""Odoo's ``requirements.txt``, with the pins fixed that cannot install on this machine.

Run by dev.sh with the Python of a series' virtual environment, before installing
Odoo's requirements into it::

    python harness/dqj_harness/tools/odoo_requirements.py ODOO_SOURCE > requirements.txt

Odoo pins the versions of the Debian/Ubuntu release each Python comes with. A few of
those pins have no wheel for the Python they are pinned for, and their source
distribution does not build with today's build tools: they are replaced by the version
Odoo pins for the next Python. ``python-ldap`` builds from source only (no wheel at
all) and needs the OpenLDAP and SASL headers: without them it is left out (only the
``auth_ldap`` addon needs it) and a note says what to install. Everything else is
Odoo's file as it is; pip evaluates the environment markers.
"""

import pathlib
import re
import shutil
import subprocess
import sys

# pin -> replacement (the line keeps its environment marker).
PINS = {
    # cbor2 5.4.2 has no wheel for Python 3.11 and its sdist fails to build; Odoo pins
    # 5.6.2 from Python 3.12 on, which has wheels for 3.8 to 3.13.
    "cbor2==5.4.2": "cbor2==5.6.2",
}
LDAP = re.compile(r"^python-ldap\b", re.IGNORECASE)
LDAP_HEADERS = "#include <lber.h>\n#include <ldap.h>\n#include <sasl/sasl.h>\n"


def ldap_builds():
    """Whether python-ldap can be built here: a C compiler and the headers it needs."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return False
    probe = subprocess.run(
        [compiler, "-E", "-x", "c", "-"],
        input=LDAP_HEADERS,
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0


def fixed(lines, with_ldap):
    for line in lines:
        requirement = line.split("#", 1)[0].strip()
        if LDAP.match(requirement) and not with_ldap:
            yield f"# left out (no OpenLDAP/SASL headers to build it): {line}"
            continue
        pin = requirement.split(";", 1)[0].strip()
        if pin in PINS:
            yield line.replace(pin, PINS[pin], 1)
            continue
        yield line


def main():
    source = pathlib.Path(sys.argv[1])
    lines = (source / "requirements.txt").read_text().splitlines()
    with_ldap = ldap_builds()
    if not with_ldap:
        print(
            "python-ldap left out: it builds from source and needs the OpenLDAP and "
            "SASL headers (Debian: apt-get install libldap2-dev libsasl2-dev); only "
            "Odoo's auth_ldap addon needs it",
            file=sys.stderr,
        )
    for line in fixed(lines, with_ldap):
        print(line)


if __name__ == "__main__":
    main()
