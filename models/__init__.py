from . import ir_actions_server
from . import ir_cron
from . import queue_job
from . import queue_job_run
from . import queue_job_stats
from . import queue_job_actions
from . import res_config_settings
from . import api_key_wizard
