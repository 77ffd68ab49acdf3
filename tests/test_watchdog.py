# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The watchdog's clock as the runner reads it, and the duration estimates."""

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time

import psutil

import odoo
from odoo.service import server as odoo_server
from odoo.tests import BaseCase, tagged
from odoo.tools import config

from ..engine import watchdog
from ..engine.runner import BudgetedRunner
from ..engine.transaction import SAVEPOINTS_ONLY
from ..engine.watchdog import Watchdog
from .common import QueueJobCase, as_cron_thread, time_limits

SLEEP = "env.cr.execute('SELECT pg_sleep({})')"
RUNNER_LOGGER = "odoo.addons.deltatech_queue_job.engine.runner"


@contextlib.contextmanager
def cpu_time_limit(seconds_left, limit_time_cpu):
    """This process under a real soft RLIMIT_CPU ``seconds_left`` CPU seconds
    (whole seconds, rounded up) past what it used, and ``limit_time_cpu``, as a
    prefork worker is after its check_limits(); yields the CPU seconds left."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    saved = config["limit_time_cpu"]
    resource.setrlimit(resource.RLIMIT_CPU, (int(used) + 1 + seconds_left, hard))
    config["limit_time_cpu"] = limit_time_cpu
    try:
        yield int(used) + 1 + seconds_left - used
    finally:
        config["limit_time_cpu"] = saved
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


@tagged("post_install", "-at_install")
class TestWatchdogClock(BaseCase):
    def test_limits_are_read_as_each_server_mode_reads_them(self):
        cases = [
            # (limit_time_real_cron, limit_time_real): (prefork, threaded)
            ((75, 120), (75, 75)),
            ((-1, 120), (120, 120)),
            ((0, 120), (None, 120)),  # prefork: no cron watchdog at all
            ((-1, 0), (None, None)),
        ]
        for limits, expected in cases:
            with self.subTest(limits=limits), time_limits(*limits):
                self.assertEqual(
                    (watchdog.prefork_cron_limit(), watchdog.threaded_cron_limit()),
                    expected,
                )

    def test_deadline_is_the_limit_minus_the_margin_after_the_heartbeat(self):
        self.assertEqual(watchdog.watchdog_after(1000.0, 75), (1060.0, 60))  # 20 %
        self.assertEqual(watchdog.watchdog_after(1000.0, 20), (1015.0, 15))  # 5 s
        self.assertIsNone(watchdog.watchdog_after(None, 75))
        self.assertIsNone(watchdog.watchdog_after(1000.0, None))

    def test_worker_ping_is_recorded_and_still_reaches_the_master(self):
        self.assertTrue(odoo_server.PreforkServer.pipe_ping.dqj_heartbeat)
        server = odoo_server.PreforkServer(odoo.http.root)
        server.pipe = server.pipe_new()  # the master's own wake-up pipe
        worker_pipe = server.pipe_new()
        saved = watchdog._last_ping
        try:
            before = time.monotonic()
            server.pipe_ping(worker_pipe)
            self.assertEqual(os.read(worker_pipe[0], 10), b".", "the master's ping")
            pid, beat = watchdog._last_ping
            self.assertEqual(pid, os.getpid())
            self.assertGreaterEqual(beat, before)
            self.assertEqual(watchdog.prefork_heartbeat(), beat)
            server.pipe_ping(server.pipe)  # a signal woke the master: no heartbeat
            self.assertEqual(watchdog._last_ping, (os.getpid(), beat))
            self.assertEqual(os.read(server.pipe[0], 10), b".")
        finally:
            watchdog._last_ping = saved
            for fd in (*server.pipe, *worker_pipe):
                os.close(fd)

    def test_heartbeat_is_installed_by_post_load_once_not_by_an_import(self):
        """In a fresh interpreter: importing the addon patches nothing; Odoo's loading
        of the addon (which calls post_load) does, and a second post_load does not
        wrap the wrapper."""

        def fresh_python(*steps):
            code = "\n".join(
                (
                    "import sys",
                    "import odoo",
                    "from odoo.modules import module",
                    "from odoo.service import server",
                    "for path in sys.argv[1:]:",
                    "    odoo.addons.__path__.append(path)",
                    "prefork = server.PreforkServer",
                    "beat = 'dqj_heartbeat'",
                    "def patched(): return getattr(prefork.pipe_ping, beat, False)",
                    *steps,
                )
            )
            return subprocess.run(
                [sys.executable, "-c", code, *odoo.addons.__path__],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout.split()

        imported = fresh_python(
            "import odoo.addons.deltatech_queue_job.engine.watchdog",
            "print(patched())",
        )
        self.assertEqual(imported, ["False"], "an import patches nothing")
        loaded = fresh_python(
            "module.load_openerp_module('deltatech_queue_job')",
            "print(patched())",
            "sys.modules['odoo.addons.deltatech_queue_job'].post_load()",
            "wrapped = prefork.pipe_ping.__wrapped__",
            "print(getattr(wrapped, beat, False))",
        )
        self.assertEqual(loaded, ["True", "False"], "installed once, by post_load")
        # An upgrade from the original: its pre-migration script imports the addon
        # before Odoo loads it, so Odoo's loading does not call post_load.
        migrated = fresh_python(
            "import importlib.util",
            "path = (module.get_module_path('deltatech_queue_job')"
            " + '/migrations/18.0.2.0.0/pre-migrate.py')",
            "spec = importlib.util.spec_from_file_location('pre_migrate', path)",
            "script = importlib.util.module_from_spec(spec)",
            "spec.loader.exec_module(script)",
            "script.migrate(None, None)",
            "module.load_openerp_module('deltatech_queue_job')",
            "print(patched())",
        )
        self.assertEqual(migrated, ["True"], "installed by the pre-migration")

    def test_worker_without_a_ping_of_its_own_counts_from_its_start(self):
        saved = watchdog._last_ping
        test_start = time.monotonic()
        try:
            # A ping inherited from the master (another pid), however recent, is no
            # heartbeat of this process.
            watchdog._last_ping = (os.getppid(), time.monotonic() + 1000)
            inherited = watchdog.prefork_heartbeat()
            watchdog._last_ping = None
            none_yet = watchdog.prefork_heartbeat()
        finally:
            watchdog._last_ping = saved
        self.assertAlmostEqual(inherited, none_yet, delta=0.5)
        self.assertLess(none_yet, test_start, "before anything this process did")

    def test_cron_thread_heartbeat_is_its_pass_start(self):
        self.assertEqual(watchdog.cron_heartbeat(), (None, None), "not a cron thread")
        with time_limits(75, 120), as_cron_thread(time.time() - 30):
            heartbeat, limit = watchdog.cron_heartbeat()
            deadline, budget = watchdog.cron_watchdog()
        self.assertEqual(watchdog.cron_heartbeat(), (None, None), "restored")
        self.assertIsNone(watchdog.cron_watchdog())
        self.assertEqual((limit, budget), (75, 60))
        self.assertAlmostEqual(time.monotonic() - heartbeat, 30, delta=1)
        self.assertAlmostEqual(deadline - time.monotonic(), 60 - 30, delta=1)

    def test_cpu_limit_is_a_deadline_the_margin_before_the_signal(self):
        self.assertIsNone(watchdog.cpu_watchdog(), "this process has no CPU limit")
        with cpu_time_limit(100, 60) as left:
            now = time.monotonic()
            deadline, budget = watchdog.cpu_watchdog()
            alone = watchdog.process_watchdog(in_cron=False)
            with time_limits(75, 120), as_cron_thread(time.time() - 30):
                under_cron = watchdog.process_watchdog(in_cron=True)
        self.assertIsNone(watchdog.process_watchdog(in_cron=False), "restored")
        # limit_time_cpu 60: a margin of 12 s, as for the other limits.
        self.assertEqual(budget, 48)
        self.assertAlmostEqual(deadline - now, left - 12, delta=0.5)
        self.assertAlmostEqual(alone.deadline, deadline, delta=0.5)
        # Under the cron, the earlier of the two: the cron's, 60 - 30 s away.
        self.assertAlmostEqual(under_cron.deadline - now, 30, delta=1)
        self.assertEqual(under_cron.budget, 48)
        # 3 s left, less than the margin: the deadline has passed.
        self.assertEqual(watchdog.cpu_watchdog_after(50, 47, 0.0), (-2.0, 0))

    def test_cpu_seconds_left_come_no_sooner_on_the_wall_clock(self):
        """A real child process burning CPU under a real soft RLIMIT_CPU: it gets
        SIGXCPU no earlier than its CPU seconds left, counted on the wall clock,
        which is what the watchdog's deadline counts on."""
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        process = psutil.Process(child.pid)
        _soft, hard = resource.prlimit(child.pid, resource.RLIMIT_CPU)
        cpu = process.cpu_times()
        resource.prlimit(
            child.pid, resource.RLIMIT_CPU, (int(cpu.user + cpu.system) + 2, hard)
        )
        now = time.monotonic()
        soft, _hard = resource.prlimit(child.pid, resource.RLIMIT_CPU)
        cpu = process.cpu_times()
        used = cpu.user + cpu.system
        left = soft - used
        # limit_time_cpu 10: a margin of 5 s.
        deadline, budget = watchdog.cpu_watchdog_after(soft, used, now, 10)
        self.assertEqual((deadline, budget), (now + left - 5, 5))
        self.assertEqual(child.wait(timeout=60), -signal.SIGXCPU)
        self.assertGreaterEqual(time.monotonic() - now, left - 0.1)


@tagged("post_install", "-at_install")
class TestDurationEstimates(QueueJobCase):
    def setUp(self):
        super().setUp()
        self.durations = self.env["queue.job.duration"]

    def test_estimate_follows_a_longer_run_at_once_and_a_shorter_one_halfway(self):
        self.durations._dqj_learn({"<a>.f": 2.0, "<b>.g": 1.0, None: 9.0})
        self.assertEqual(self.durations._dqj_estimates(), {"<a>.f": 2.0, "<b>.g": 1.0})
        self.durations._dqj_learn({"<a>.f": 4.0})
        self.assertEqual(self.durations._dqj_estimates()["<a>.f"], 4.0)
        self.durations._dqj_learn({"<a>.f": 1.0})
        self.assertEqual(self.durations._dqj_estimates()["<a>.f"], 2.5)

    def test_a_run_learns_its_jobs_durations(self):
        job = self.enqueue_code(SLEEP.format(0.2))
        self.run_runner()
        estimates = self.durations._dqj_estimates()
        self.assertGreaterEqual(estimates[job.channel_method_name], 0.2)
        self.assertLess(estimates[job.channel_method_name], 2)

    def test_next_job_estimated_past_the_budget_is_not_started(self):
        jobs = self.enqueue_code(SLEEP.format(0.1)) | self.enqueue_code(
            SLEEP.format(0.1)
        )
        function = jobs[0].channel_method_name
        self.durations._dqj_learn({function: 5.0})
        stats = self.run_runner(max_seconds=2)
        # The first job always starts under max_seconds; the second, estimated at
        # 5 s, would end past the budget.
        self.assertEqual((stats.processed, stats.stopped_by), (1, "time"))
        self.assertEqual(jobs.mapped("state"), ["done", "pending"])

    def test_watchdog_lets_no_job_start_that_would_end_after_it(self):
        jobs = self.enqueue_code(SLEEP.format(0.1))
        self.durations._dqj_learn({jobs.channel_method_name: 3.0})
        runner = BudgetedRunner(
            self.queue_job,
            20,
            600,
            policy=SAVEPOINTS_ONLY,
            source="test",
            watchdog=Watchdog(deadline=time.monotonic() + 2, budget=60),
            estimates=self.durations._dqj_estimates(),
        )
        stats = runner.run()
        self.assertEqual((stats.processed, stats.stopped_by), (0, "time"))
        self.assertEqual(jobs.state, "pending")
        self.assertEqual(stats.pending_count, 1)

    def test_job_longer_than_any_cron_run_starts_when_the_run_is_fresh(self):
        jobs = self.enqueue_code(SLEEP.format(0.1))
        estimates = {jobs.channel_method_name: 90.0}

        def run(seconds_left):
            return BudgetedRunner(
                self.queue_job,
                20,
                600,
                policy=SAVEPOINTS_ONLY,
                source="test",
                watchdog=Watchdog(time.monotonic() + seconds_left, budget=60),
                estimates=estimates,
            ).run()

        self.assertEqual(run(20).processed, 0, "a third of the budget: not now")
        with self.assertLogs(RUNNER_LOGGER, "WARNING"):
            stats = run(55)
        self.assertEqual(stats.processed, 1, "it could never fit: it gets its chance")
        self.assertEqual(jobs.state, "done")

    def test_cpu_time_left_is_a_watchdog_of_every_run(self):
        """Under a CPU limit (prefork's limit_time_cpu) a run that is not the cron's
        also starts no job that the limit would kill: here less CPU time is left
        than the margin."""
        jobs = self.enqueue_code(SLEEP.format(0.1))
        with cpu_time_limit(10, 60):
            stats = self.run_runner(source="api")
        self.assertEqual((stats.processed, stats.stopped_by), (0, "time"))
        self.assertEqual(jobs.state, "pending")
        with cpu_time_limit(100, 60):
            stats = self.run_runner(source="api")
        self.assertEqual((stats.processed, jobs.state), (1, "done"))
