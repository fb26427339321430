"""The Django project the test suite serves (SQLite in a temporary file)."""
