"""Odoo's command line for the test tooling: ``python3 tools/odoo_launcher.py ARGS``.

It is ``odoo-bin ARGS`` (``import odoo.cli; odoo.cli.main()``) with two differences:

1. ``odoo.addons`` holds Odoo's own addons and the ``--addons-path`` only. Odoo extends
   the namespace over every ``odoo/addons`` folder on ``sys.path`` (pkgutil), before
   the addons path: a queue_job wheel installed into site-packages would shadow the
   release under test, which dev.sh installs into ``.build/oca/<version>`` and puts on
   the addons path. The launcher drops those other folders, so each run sees exactly
   one queue_job, whatever site-packages holds.
2. With ``DQJ_ODOO_STAND_IN=1``, it applies ``tools/odoo_stand_in.py`` (names a later
   Odoo 18.0 has, for queue_job releases that need them; see that module).

dev.sh exports ``DQJ_ODOO_LAUNCHER`` (this file) for every Odoo process it starts; the
processes that start Odoo in turn (``tests/common.py``'s ``odoo_command``, the stress
and bench harness) use it when it is set and plain ``import odoo.cli; odoo.cli.main()``
otherwise.
"""

import os
import sys


def isolate_addons_namespace():
    """Keep only Odoo's own folder in ``odoo.addons.__path__`` (Odoo appends the
    addons path to it when it reads its configuration); return the folders dropped."""
    import odoo.release  # noqa: PLC0415

    import odoo.addons  # noqa: PLC0415 -- the namespace to trim

    # odoo.release, not odoo: from 19.0 on, odoo is a namespace package (no __file__).
    own = os.path.normcase(
        os.path.realpath(os.path.join(os.path.dirname(odoo.release.__file__), "addons"))
    )
    path = odoo.addons.__path__
    dropped = [p for p in path if os.path.normcase(os.path.realpath(p)) != own]
    path[:] = [p for p in path if p not in dropped]
    return dropped


def prepare():
    """Set Odoo up as the test tooling runs it; return (folders dropped from the
    addons namespace, names supplied by the stand-in)."""
    dropped = isolate_addons_namespace()
    supplied = []
    if os.environ.get("DQJ_ODOO_STAND_IN") == "1":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import odoo_stand_in  # noqa: PLC0415 -- only for the runs that ask for it

        del sys.path[0]
        supplied = odoo_stand_in.apply()
    return dropped, supplied


def main():
    prepare()
    import odoo.cli  # noqa: PLC0415 -- from 19.0 on, "import odoo" does not import it

    return odoo.cli.main()


if __name__ == "__main__":
    # Run as a script, sys.path[0] is tools/: Odoo needs none of it.
    del sys.path[0]
    sys.exit(main())
