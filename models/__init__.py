from . import runner_settings
from . import api_key
from . import ir_cron
from . import queue_job
from . import queue_job_run
from . import queue_job_stats
