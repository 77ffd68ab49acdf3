# Copyright 2024 Terrabit
# Copyright 2024 Dorin Hongu <dhongu(@)gmail(.)com
# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
{
    "name": "Deltatech Queue Job Enhancements",
    "summary": "Run queue_job jobs without the job runner: SKIP LOCKED workers, "
    "savepoint isolation, time budgets, external trigger API",
    "version": "2.0.0",
    "author": "Terrabit, Dorin Hongu",
    "website": "https://www.terrabit.ro",
    "category": "Generic Modules",
    "license": "AGPL-3",
    "depends": ["queue_job"],
    "data": [
        "security/ir.model.access.csv",
        "data/ir_cron.xml",
        "data/queue_job_run_data.xml",
        "views/queue_job_views.xml",
        "views/queue_job_run_views.xml",
        "views/res_config_settings_views.xml",
        "views/res_config_settings_scheduler_views.xml",
        "wizards/api_key_wizard_views.xml",
        "views/menus.xml",
    ],
    "assets": {
        "web.assets_tests": [
            "deltatech_queue_job/static/tests/tours/**/*",
        ],
    },
    "development_status": "Alpha",
    "maintainers": ["dhongu"],
    "images": ["static/description/main_screenshot.png"],
    "installable": True,
    "post_load": "post_load",
    "pre_init_hook": "pre_init_hook",
    "uninstall_hook": "uninstall_hook",
}
