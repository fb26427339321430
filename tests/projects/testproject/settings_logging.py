"""Django's LOGGING sends hybrid's access log to $ACCESS_LOG_FILE."""

import os

from testproject.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
    "handlers": {
        "file": {
            "class": "logging.FileHandler",
            "filename": os.environ["ACCESS_LOG_FILE"],
            "formatter": "plain",
        }
    },
    "loggers": {"hybrid.access": {"handlers": ["file"], "level": "INFO", "propagate": False}},
}
