/** @odoo-module **/
/* License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html). */

import {registry} from "@web/core/registry";

// web_tour's step helpers: @web_tour/tour_service/tour_utils on 18.0, moved to
// @web_tour/tour_utils on 19.0. Looked up when the tour starts, so that one file
// serves both series.
function tourStepUtils() {
    const modules = odoo.loader.modules;
    const utils =
        modules.get("@web_tour/tour_utils") ||
        modules.get("@web_tour/tour_service/tour_utils");
    return utils.stepUtils;
}

// Saving settings reloads the page (res.config.settings' execute returns the "reload"
// client action), so does closing the key's dialog. Later 18.0 and 19.0 keep running steps after a click unless the step
// says it unloads the page (19.0 even fails the tour on an unannounced unload); the
// 18.0 of November 2024 stopped by itself, and refuses the key as unknown. The key is
// set where the tour framework knows it: its own goToUrl step carries it.
function expectUnloadPage(stepUtils) {
    return "expectUnloadPage" in stepUtils.goToUrl("/odoo") ? {expectUnloadPage: true} : {};
}

// Queue Job > Jobs: Process with nothing selected runs one batch and says so;
// Queue Job > Settings: Generate Key shows the key once, then save.
registry.category("web_tour.tours").add("deltatech_queue_job_ui_tour", {
    url: "/odoo",
    steps: () => {
        const stepUtils = tourStepUtils();
        return [
            stepUtils.showAppsMenuItem(),
            {
                content: "Open the Job Queue app",
                trigger: '.o_app[data-menu-xmlid="queue_job.menu_queue_job_root"]',
                run: "click",
            },
            {
                content: "Open the Queue menu",
                trigger: 'button[data-menu-xmlid="queue_job.menu_queue"]',
                run: "click",
            },
            {
                content: "Open Jobs",
                trigger: '.dropdown-item[data-menu-xmlid="queue_job.menu_queue_job"]',
                run: "click",
            },
            {
                content: "The jobs list shows the tour's job",
                trigger: ".o_list_view .o_data_row:contains('deltatech tour job')",
            },
            {
                content: "Process with nothing selected",
                trigger: ".o_control_panel button[name='action_dqj_process']",
                run: "click",
            },
            {
                content: "The notification gives the counts",
                trigger: ".o_notification:contains('Jobs processed'):contains('1 processed: 1 done')",
            },
            {
                content: "The list reloaded: the job is done, out of the default filters",
                trigger: ".o_list_view:not(:has(.o_data_row:contains('deltatech tour job')))",
            },
            {
                content: "Open Settings from the Job Queue menu",
                trigger: '.o_menu_sections [data-menu-xmlid="deltatech_queue_job.menu_queue_job_settings"]',
                run: "click",
            },
            {
                content: "The Queue Job block says no key is configured yet",
                trigger: "#dqj_api_key_setting:contains('No key is configured')",
            },
            {
                content: "Generate a key",
                trigger: "button[name='action_dqj_generate_api_key']",
                run: "click",
            },
            {
                content: "The key is shown once, in a dialog",
                trigger: ".modal div[name='api_key']",
                run() {
                    const key = this.anchor.textContent.trim();
                    if (key.length < 40) {
                        throw new Error(`expected a generated key, got "${key}"`);
                    }
                },
            },
            {
                content: "Close the dialog",
                trigger: ".modal .modal-footer button:contains('Done')",
                run: "click",
                // Done reloads the settings (the "reload" client action).
                ...expectUnloadPage(stepUtils),
            },
            {
                content: "The settings now say a key is configured",
                trigger: "#dqj_api_key_setting:contains('A key is configured')",
            },
            {
                content: "Change the batch size",
                trigger: "#dqj_batch_size_setting input",
                run: "edit 25",
            },
            {
                content: "Save",
                trigger: ".o_control_panel .o_form_button_save",
                run: "click",
                ...expectUnloadPage(stepUtils),
            },
            {
                content: "Saved: back to the jobs list",
                trigger: 'button[data-menu-xmlid="queue_job.menu_queue"]',
                run: "click",
            },
            {
                content: "Open Jobs again",
                trigger: '.dropdown-item[data-menu-xmlid="queue_job.menu_queue_job"]',
                run: "click",
            },
            {
                content: "The jobs list is shown (no unsaved-changes dialog on the way)",
                trigger: ".o_list_view button[name='action_dqj_process']",
            },
            {
                content: "Reopen Settings",
                trigger: '.o_menu_sections [data-menu-xmlid="deltatech_queue_job.menu_queue_job_settings"]',
                run: "click",
            },
            {
                content: "The saved batch size comes back from the server",
                trigger: "#dqj_batch_size_setting input:value(25)",
            },
        ];
    },
});
