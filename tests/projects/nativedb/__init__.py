"""Models for the native MySQL tests (tests/unit/db/test_db*.py): every field type
hybrid.db hydrates.

The tests add this app to ``INSTALLED_APPS`` (``override_settings``) for their module and
create its tables on the MariaDB alias with the schema editor; no migrations.
"""
