# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
from . import ir_cron
from . import queue_job
