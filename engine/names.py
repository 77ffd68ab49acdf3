# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Names that the models, the controllers and takeover.py share: the external API's
routes, this addon's module name and the one of the addon it replaces. Literal
constants only: the harness reads them from this file's source."""

MODULE = "deltatech_queue_job"
# OCA's addon that the original deltatech_queue_job depended on; this addon takes its
# place (takeover.py) and refuses to be installed beside it.
CRON_JOBRUNNER = "queue_job_cron_jobrunner"

# The external API (controllers/main.py), shown with this server's URL in the
# settings.
PROCESS_ROUTE = "/api/v1/queue/process"
STATS_ROUTE = "/api/v1/queue/stats"
