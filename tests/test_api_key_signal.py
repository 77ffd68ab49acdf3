# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""A key generated anywhere works on running servers at once."""

import re

from odoo import api
from odoo.tests import tagged

from ..engine.api_key import (
    api_key_configured,
    generate_api_key,
    revoke_api_key,
    verify_api_key,
)
from .common import CommittedQueueCase


@tagged("post_install", "-at_install")
class TestKeyReachesRunningServers(CommittedQueueCase):
    """A key generated in another process (an ``odoo shell``, a script that commits)
    is used by this process -- standing for a running server -- at its next request:
    the change is signalled through the database as Odoo does for cached
    parameters, and this process picks the signal up as each request does."""

    def test_key_generated_in_a_shell_works_here_at_once(self):
        with self.committed() as env:
            revoke_api_key(env)
        # What a running server has cached: no key.
        with self.committed() as env:
            self.assertFalse(api_key_configured(env))
        proc = self.start_runner_process(
            "from odoo.addons.deltatech_queue_job.engine.api_key import "
            "generate_api_key\n"
            "print('KEY', generate_api_key(env))\n"
            "env.cr.commit()\n"
        )
        out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err[-3000:])
        key = re.search(r"^KEY (\S+)$", out, re.MULTILINE).group(1)
        with self.committed() as env:
            self.assertFalse(
                api_key_configured(env), "cached until the signal is picked up"
            )
        # What Odoo does at the start of each request.
        self.registry = self.registry.check_signaling()
        with self.committed() as env:
            self.assertTrue(verify_api_key(env, key))

    def test_a_rolled_back_key_signals_nothing(self):
        def signal_sequence():
            # Read as the registry reads it (a sequence per cache on 18.0, a table on
            # 19.0), over every cache: parameters are in "default" on 18.0, in
            # "stable" on 19.0.
            with self.committed() as env:
                return sum(self.registry.get_sequences(env.cr)[1].values())

        before = signal_sequence()
        with self.registry.cursor() as cr:
            generate_api_key(api.Environment(cr, api.SUPERUSER_ID, {}))
            cr.rollback()
        self.assertEqual(signal_sequence(), before)
        with self.committed() as env:
            generate_api_key(env)
        self.assertGreater(signal_sequence(), before)
