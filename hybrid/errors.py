"""The one error tree of hybrid.

::

    HybridError                  base of everything hybrid raises on purpose
    ├── ConfigError              bad option value (ports, host, timeouts...); `option`, `value`
    ├── AppLoadError             the Django project or HYBRID_ROUTES cannot be loaded; `target`
    ├── UnsupportedVersionError  an installed Django/Tornado/aiomysql/Python lacks an internal
    │                            hybrid needs; `library`, `version`, `missing`, `requirement`
    ├── ControlError             a running master cannot be reached through its pidfile, or a
    │                            reload/stop did not complete (hybrid.control); `pidfile`
    ├── GroupError               a group name or message that cannot be sent (not a JSON
    │                            dict with a "type", over the size limit); `group`, `size`,
    │                            `limit` (also a ValueError)
    ├── GroupsUnavailable        the groups backend (Redis) cannot take a message now;
    │                            `group`, `backend`, `reason` (also a ConnectionError)
    ├── TaskTimeout              a Celery task's result did not come within `timeout`
    │                            (hybrid.tasks.wait); `task_id`, `timeout` (also a
    │                            TimeoutError)
    ├── TasksUnavailable         the Celery broker (Redis) cannot take a task now
    │                            (hybrid.tasks.delay); `broker`, `reason` (also a
    │                            ConnectionError)
    ├── ServerError              the process model could not do its job
    │   ├── BindError            a port could not be bound; `host`, `port`, `errno`
    │   ├── WorkerBootError      a worker failed while booting; `port`, `reason`
    │   └── NginxError           nginx missing, config rejected by ``nginx -t``, or it could
    │                            not start; `output`, `returncode` (raised by hybrid.nginx)
    └── CommandError             a system command could not be run as asked; `cmd`
        ├── CommandNotFound      no such executable on PATH (also a FileNotFoundError)
        ├── CommandNotAllowed    an AllowList refused the command or an argument;
        │                        `name`, `argument`
        ├── CommandBusy          no command slot within `queue_timeout`, or shutting down
        └── CommandFailed        check=True and it exited non-zero; `result`,
            │                    `returncode`, `stdout`, `stderr`
            └── CommandTimeout   check=True and it ran past its timeout; `timeout`
                                 (also a TimeoutError)

Every class in the tree is exported from :mod:`hybrid`. The ``Command*`` errors are defined
in :mod:`hybrid.process.errors`, next to the command runner that raises them; the others
here.

Every message says what went wrong and how to fix it, in one line, because the CLI prints
``str(exc)`` as its single line of output on stderr.
"""

from __future__ import annotations

__all__ = [
    "AppLoadError",
    "BindError",
    "ConfigError",
    "ControlError",
    "GroupError",
    "GroupsUnavailable",
    "HybridError",
    "NginxError",
    "ServerError",
    "TaskTimeout",
    "TasksUnavailable",
    "UnsupportedVersionError",
    "WorkerBootError",
]


class HybridError(Exception):
    """Base class of every error hybrid raises on purpose."""


class ConfigError(HybridError, ValueError):
    """An option has a value hybrid cannot use.

    ``option`` names the option as the user wrote it (``--ports``, ``HYBRID_PORTS``,
    ``settings.HYBRID['ports']``) and ``value`` is the offending value.
    """

    def __init__(self, message: str, *, option: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.option = option
        self.value = value


class AppLoadError(HybridError):
    """The Django project, or a dotted path it names, cannot be imported.

    ``target`` is the dotted path that failed (a settings module, ``HYBRID_ROUTES``).
    """

    def __init__(self, message: str, *, target: str) -> None:
        super().__init__(message)
        self.target = target


class UnsupportedVersionError(HybridError):
    """An installed library lacks a private name hybrid relies on (see :mod:`hybrid._compat`).

    ``library`` and ``version`` name what is installed, ``missing`` lists what is gone
    (each with the reason hybrid needs it), ``requirement`` the range to install instead.
    """

    def __init__(
        self,
        message: str,
        *,
        library: str,
        version: str,
        missing: list[str],
        requirement: str,
    ) -> None:
        super().__init__(message)
        self.library = library
        self.version = version
        self.missing = missing
        self.requirement = requirement

    @classmethod
    def for_library(
        cls,
        *,
        library: str,
        version: str,
        missing: list[str],
        verified: tuple[str, ...],
        requirement: str,
    ) -> UnsupportedVersionError:
        from hybrid import __version__

        message = (
            f"hybrid {__version__} does not support {library} {version}: "
            f"missing {'; '.join(missing)}. Verified on {library} {', '.join(verified)}: "
            f"pip install '{requirement}'"
        )
        return cls(
            message, library=library, version=version, missing=missing, requirement=requirement
        )


class ControlError(HybridError):
    """A running master cannot be reached through its pidfile (missing, stale, not ours to
    signal), or the reload or stop it was asked for did not complete; ``pidfile``."""

    def __init__(self, message: str, *, pidfile: str | None = None) -> None:
        super().__init__(message)
        self.pidfile = pidfile


class GroupError(HybridError, ValueError):
    """A group name or group message hybrid refuses to send (:mod:`hybrid.groups`).

    ``group`` is the group's name as given; ``size`` and ``limit`` are the encoded size in
    bytes and the limit, set when the message was too big.
    """

    def __init__(
        self, message: str, *, group: object, size: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.group = group
        self.size = size
        self.limit = limit


class GroupsUnavailable(HybridError, ConnectionError):
    """The groups backend could not take a message: Redis is down or unreachable.

    Raised on the sender's side by ``group_send``; nothing was delivered (at most once).
    ``backend`` is the backend's URL without its password, ``reason`` what the client said.
    """

    def __init__(self, message: str, *, group: str, backend: str, reason: str) -> None:
        super().__init__(message)
        self.group = group
        self.backend = backend
        self.reason = reason


class TaskTimeout(HybridError, TimeoutError):
    """A Celery task's result did not come within ``timeout`` seconds
    (:func:`hybrid.tasks.wait`); the task itself was left alone. ``task_id``, ``timeout``."""

    def __init__(self, message: str, *, task_id: str, timeout: float) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.timeout = timeout


class TasksUnavailable(HybridError, ConnectionError):
    """The Celery broker could not take a task: Redis (or RabbitMQ) is down or unreachable.

    Raised by :func:`hybrid.tasks.delay` and :func:`hybrid.tasks.apply_async`; the task
    was not sent. ``broker`` is the broker's URL without its password, ``reason`` what the
    client said.
    """

    def __init__(self, message: str, *, broker: str, reason: str) -> None:
        super().__init__(message)
        self.broker = broker
        self.reason = reason


class ServerError(HybridError):
    """The master could not start or keep its workers."""


class BindError(ServerError):
    """A listening socket could not be created."""

    def __init__(self, message: str, *, host: str, port: int, errno: int | None) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.errno = errno


class NginxError(ServerError):
    """nginx is missing, rejected its config, or could not start or stop.

    ``output`` is what nginx printed (empty when it did not run) and ``returncode`` its exit
    status (``None`` when it did not run or has not exited). Raised by :mod:`hybrid.nginx`.
    """

    def __init__(self, message: str, *, output: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.output = output
        self.returncode = returncode


class WorkerBootError(ServerError):
    """A worker exited before it was ready to serve; ``reason`` is its own one-line report."""

    def __init__(self, message: str, *, port: int, reason: str) -> None:
        super().__init__(message)
        self.port = port
        self.reason = reason


def describe_exception(exc: BaseException) -> str:
    """Render ``exc`` as one line: type, message and the innermost source location.

    Used where a traceback would be noise for the reader (the CLI's stderr line, a worker's
    boot report): ``ModuleNotFoundError: No module named 'x' (shop/routes.py:3)``.
    """
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    tb = exc.__traceback__
    location = ""
    while tb is not None:
        location = f" ({tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename:
        location = f" ({exc.filename}:{exc.lineno})"
    return text + location
