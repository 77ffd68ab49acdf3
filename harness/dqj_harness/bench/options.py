"""The options both benchmarks take."""

import argparse


def argument_parser(description):
    """A parser with the two databases dev.sh prepares (one per runner: the two addons
    exclude each other) and where their Odoo runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--ours", required=True, help="database with this addon")
    parser.add_argument(
        "--baseline", required=True, help="database with cron_jobrunner"
    )
    parser.add_argument("--addons-path", required=True)
    parser.add_argument("--data-dir", required=True)
    return parser
