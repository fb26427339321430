"""The test project on the private MariaDB of ``scripts/mariadb`` (the ``mariadb`` fixture).

Django's MySQL backend runs on PyMySQL here (pure Python, no C build): it stands in for
mysqlclient, whose version Django checks.
"""

import os

import pymysql

from testproject.settings import *  # noqa: F403

pymysql.version_info = (2, 2, 7, "final", 0)  # what Django's backend requires of mysqlclient
pymysql.install_as_MySQLdb()

HYBRID_ROUTES = "testproject.bridge_routes.routes"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        "HOST": os.environ["MARIADB_HOST"],
        "PORT": os.environ["MARIADB_PORT"],
        "USER": os.environ["MARIADB_USER"],
        "PASSWORD": os.environ["MARIADB_PASSWORD"],
        "NAME": os.environ.get("MARIADB_DATABASE", "hybrid_test"),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"charset": "utf8mb4"},
    }
}

# Tracebacks of failed requests on stderr, where the tests read them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
