# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The development harness of deltatech_queue_job (not shipped with the addon).

- :mod:`dqj_harness.kit`: the test kit shared by the addon's tests, the stress suite
  and the benchmarks (waiting on a condition, free ports, databases, processes, logs);
- :mod:`dqj_harness.stress`: the stress and chaos suite (``python -m
  dqj_harness.stress.run``), and the takeover check;
- :mod:`dqj_harness.bench`: the benchmarks against queue_job_cron_jobrunner;
- :mod:`dqj_harness.tools`: dev.sh's helpers (queue_job releases, Odoo's
  requirements, the Odoo launcher, static checks, the README generator, the check of
  the addon's wheel).
"""
