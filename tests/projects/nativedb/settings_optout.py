"""``nativedb.settings`` with the database opted out of the native path per database."""

from nativedb.settings import *  # noqa: F403
from nativedb.settings import DATABASES

DATABASES["default"]["HYBRID_NATIVE"] = False
