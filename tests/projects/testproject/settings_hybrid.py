"""Options from settings.HYBRID; the tests give the port list through HYBRID_TEST_PORTS."""

import os

from testproject.settings import *  # noqa: F403

HYBRID = {"ports": os.environ["HYBRID_TEST_PORTS"], "graceful_timeout": 5}
