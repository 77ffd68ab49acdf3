# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
{
    "name": "deltatech_queue_job stress jobs (test only)",
    "summary": "Job methods the stress suite needs and server actions cannot do: "
    "a job that kills its worker, a job whose outcome cannot be stored.",
    "version": "1.0.0",
    "license": "AGPL-3",
    "author": "Terrabit, Dorin Hongu",
    "depends": ["queue_job"],
    "data": [],
    "installable": True,
}
