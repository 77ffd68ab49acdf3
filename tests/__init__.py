from . import test_module
from . import test_engine
from . import test_api
