"""The test project on MariaDB, with the native-pool probe routes of tests/e2e/test_db_pool.py."""

from testproject.settings_mysql import *  # noqa: F403

HYBRID_ROUTES = "nativedb.routes.routes"
