from . import runner_settings
from . import api_key
from . import job_locks
from . import ir_actions_server
from . import ir_cron
from . import queue_job
from . import queue_job_run
