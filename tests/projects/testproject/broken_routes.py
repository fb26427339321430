"""A routes module that fails to import, for the boot-error tests."""

import hybrid_no_such_module  # noqa: F401

routes: list[object] = []
