"""A project whose workers die while booting without saying why (os._exit in ready())."""

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bootcrash"]
