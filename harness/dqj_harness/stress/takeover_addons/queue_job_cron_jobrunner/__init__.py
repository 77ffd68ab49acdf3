# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""A stand-in for OCA's queue_job_cron_jobrunner where OCA publishes no release of it.

The original deltatech_queue_job 19.0.1.4.3 depends on queue_job_cron_jobrunner, which
OCA released up to 18.0 only: a 19.0 database running the original runs a port of it
made elsewhere. The takeover check (stress/takeover_check.py) puts this folder on the
addons path on such a series, so that the original's 19.0 footprint sits beside what
that module leaves in a database, under the same names as its 18.0 release: the
``ir.cron.queue_job_runner`` field, its runner cron (XML id ``queue_job_cron``, code
``model._job_runner()``), its field on the cron form, and a ``queue.job._job_runner``
that replaces the runner without calling ``super()``. Test tooling only: never
shipped, never copied from OCA.
"""

from . import models
