"""The test project served over https (tests/e2e/test_serve_tls.py): cookies marked Secure."""

from testproject.settings import *  # noqa: F403

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
