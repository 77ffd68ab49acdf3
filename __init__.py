from . import engine
from . import models
from . import wizards
from . import controllers
from .hooks import post_load, pre_init_hook, uninstall_hook
