"""Odoo's command line for the test tooling:
``python -m dqj_harness.tools.odoo_launcher ARGS``.

It is ``odoo-bin ARGS`` (``import odoo.cli; odoo.cli.main()``) with one difference:
``odoo.addons`` holds Odoo's own addons and the ``--addons-path`` only. Odoo extends
the namespace over every ``odoo/addons`` folder on ``sys.path`` (pkgutil on 18.0, a
namespace package on 19.0), before the addons path: a queue_job wheel installed into
the environment's site-packages would shadow the release under test, which dev.sh
installs into ``.build/oca/<version>`` and puts on the addons path. The launcher drops
those other folders, so each run sees exactly one queue_job.

dev.sh exports ``DQJ_ODOO_LAUNCHER`` (this module's name) for every Odoo process it
starts; the processes that start Odoo in turn (``tests/common.py``'s ``odoo_command``,
the stress and bench harness, through :func:`dqj_harness.kit.odoo_main`) use it when
it is set and plain ``import odoo.cli; odoo.cli.main()``
otherwise.
"""

import os
import sys


def isolate_addons_namespace():
    """Keep only Odoo's own folder in ``odoo.addons.__path__`` (Odoo appends the
    addons path to it when it reads its configuration); return the folders dropped."""
    import odoo.release  # noqa: PLC0415

    import odoo.addons  # noqa: PLC0415 -- the namespace to trim

    # Odoo's own folder is the one of odoo/release.py (Odoo 19's odoo is a namespace
    # package: no __file__, and its __path__ may hold other folders).
    own = os.path.normcase(
        os.path.realpath(os.path.join(os.path.dirname(odoo.release.__file__), "addons"))
    )
    path = odoo.addons.__path__
    dropped = [p for p in path if os.path.normcase(os.path.realpath(p)) != own]
    kept = [p for p in path if p not in dropped]
    if isinstance(path, list):
        path[:] = kept
    else:
        # A namespace package's path (Odoo 19), computed from sys.path until Odoo
        # freezes it (initialize_sys_path): set what it holds.
        path._path = kept
    return dropped


def prepare():
    """Set Odoo up as the test tooling runs it; return the folders dropped from the
    addons namespace."""
    return isolate_addons_namespace()


def main():
    prepare()
    import odoo.cli  # noqa: PLC0415

    return odoo.cli.main()


if __name__ == "__main__":
    sys.exit(main())
