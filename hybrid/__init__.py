"""hybrid: serve a Django project from Tornado, one IOLoop worker per port.

Importing ``hybrid`` does not import Django; workers set Django up after they are forked.
"""

from __future__ import annotations

__version__ = "0.1.0"

from hybrid import tasks as tasks  # noqa: E402  # hybrid.tasks.wait(...) after `import hybrid`
from hybrid.arbiter import serve
from hybrid.bridge import (
    DjangoHandler,
    DjangoWebSocketHandler,
    csrf_exempt,
    login_required,
    permission_required,
    run_sync,
)
from hybrid.config import Config, build_config, parse_ports
from hybrid.errors import (
    AppLoadError,
    BindError,
    ConfigError,
    ControlError,
    GroupError,
    GroupsUnavailable,
    HybridError,
    NginxError,
    ServerError,
    TasksUnavailable,
    TaskTimeout,
    UnsupportedVersionError,
    WorkerBootError,
)
from hybrid.groups import GroupsMixin, group_send, group_send_sync
from hybrid.process import (
    AllowList,
    CommandBusy,
    CommandError,
    CommandFailed,
    CommandNotAllowed,
    CommandNotFound,
    CommandResult,
    CommandSpec,
    CommandStream,
    CommandStreamHandler,
    CommandTimeout,
    Limits,
    OutputEvent,
    Subprocess,
    run_command,
    stream_command,
)
from hybrid.web import make_app

__all__ = [
    "AllowList",
    "AppLoadError",
    "BindError",
    "CommandBusy",
    "CommandError",
    "CommandFailed",
    "CommandNotAllowed",
    "CommandNotFound",
    "CommandResult",
    "CommandSpec",
    "CommandStream",
    "CommandStreamHandler",
    "CommandTimeout",
    "Config",
    "ConfigError",
    "ControlError",
    "DjangoHandler",
    "DjangoWebSocketHandler",
    "GroupError",
    "GroupsMixin",
    "GroupsUnavailable",
    "HybridError",
    "Limits",
    "NginxError",
    "OutputEvent",
    "ServerError",
    "Subprocess",
    "TaskTimeout",
    "TasksUnavailable",
    "UnsupportedVersionError",
    "WorkerBootError",
    "__version__",
    "build_config",
    "csrf_exempt",
    "group_send",
    "group_send_sync",
    "login_required",
    "make_app",
    "parse_ports",
    "permission_required",
    "run_command",
    "run_sync",
    "serve",
    "stream_command",
]
