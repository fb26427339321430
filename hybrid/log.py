"""hybrid's named loggers and the default handler the CLI installs.

``hybrid.access`` gets one line per request, ``hybrid.application`` uncaught errors in
handlers, ``hybrid.general`` everything about processes. A project's Django ``LOGGING``
setting can configure them like any other logger.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["access_log", "app_log", "configure_logging", "gen_log"]

access_log = logging.getLogger("hybrid.access")
app_log = logging.getLogger("hybrid.application")
gen_log = logging.getLogger("hybrid.general")

LOG_FORMAT = "[%(asctime)s.%(msecs)03d] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def configure_logging(level: str = "info") -> None:
    """Send hybrid's and tornado's logs to stderr at ``level``, unless already configured.

    Called by the CLI and ``runhybrid`` before any worker is forked, so workers inherit it.
    """
    numeric = getattr(logging, level.upper())
    for name in ("hybrid", "tornado"):
        logger = logging.getLogger(name)
        logger.setLevel(numeric)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
            logger.addHandler(handler)
            logger.propagate = False
