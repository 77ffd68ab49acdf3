from . import test_module
from . import test_engine
from . import test_concurrency
from . import test_settings
from . import test_ui
from . import test_api
from . import test_watchdog
