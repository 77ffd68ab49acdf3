from . import engine
from . import models
from . import controllers
from .hooks import post_load, uninstall_hook
