"""Records, from AppConfig.ready(), which process ran django.setup()."""

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bootprobe"]
