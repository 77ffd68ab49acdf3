from . import api_key_wizard
