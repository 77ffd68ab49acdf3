# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The engine: the plain Python that decides, apart from the ORM classes.

``models/`` and ``controllers/`` import from here; nothing here imports them back.

- :mod:`.job_locks`: every SQL statement that takes or releases a lock on jobs;
- :mod:`.counts`: the queue's counts (running, pending, due, waiting), bounded
  whatever the backlog;
- :mod:`.jobrunner_guard`: queue_job's own jobrunner beside the runners (the enqueue
  guard);
- :mod:`.attempts`: tries of jobs whose worker died, counted outside their
  transaction;
- :mod:`.runner`: the budgeted loop every entry point goes through;
- :mod:`.transaction`: how a run treats its cursor's transaction (commit per job, or
  savepoints only for a caller that owns it), chosen once per run;
- :mod:`.settings`: defaults, bounds and the reading of the runner's parameters;
- :mod:`.watchdog`: when Odoo's watchdog would kill the worker running a cron, and
  the CPU time limit any process;
- :mod:`.api_key`: the external API's key, hashed;
- :mod:`.throttle`: brute-force damping of the external API;
- :mod:`.compat`: what differs between the Odoo series served (18.0, 19.0).
"""
