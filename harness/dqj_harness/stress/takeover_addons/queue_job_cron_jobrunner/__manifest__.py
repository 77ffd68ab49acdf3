# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
{
    "name": "queue_job_cron_jobrunner stand-in (test only)",
    "summary": "What OCA's queue_job_cron_jobrunner leaves in a database, for the "
    "takeover check on a series OCA publishes no release of it for (19.0)",
    "version": "1.0.0",
    "license": "AGPL-3",
    "author": "Terrabit, Dorin Hongu",
    "depends": ["queue_job"],
    "data": ["data/ir_cron.xml", "views/ir_cron_views.xml"],
    "installable": True,
}
