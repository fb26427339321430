"""nginx in front of the workers: render its config from ``Config``, check it, supervise it.

One module per concern:

* :mod:`hybrid.nginx.render`: :func:`render_config` returns the complete ``nginx.conf``
  from ``nginx/hybrid.conf.template`` (``hybrid nginx`` prints it);
* :mod:`hybrid.nginx.binary`: :func:`find_nginx` finds the binary and
  :func:`check_config` runs ``nginx -t`` on a text, raising :class:`NginxError` with
  nginx's complaint in one line;
* :mod:`hybrid.nginx.process`: :class:`NginxProcess` runs nginx in the foreground as a
  child of the master (``hybrid serve --nginx PORT``) in a private prefix, and stops it
  gracefully.

:class:`NginxError` is defined in :mod:`hybrid.errors` and importable from here too.
"""

from __future__ import annotations

from hybrid.errors import NginxError
from hybrid.nginx.binary import check_config, find_nginx
from hybrid.nginx.process import NginxProcess
from hybrid.nginx.render import (
    DEFAULT_LISTEN_PORT,
    INSTALLED_TEMPLATE_PATH,
    TEMPLATE_PATH,
    parse_listen,
    render_config,
)

__all__ = [
    "DEFAULT_LISTEN_PORT",
    "INSTALLED_TEMPLATE_PATH",
    "TEMPLATE_PATH",
    "NginxError",
    "NginxProcess",
    "check_config",
    "find_nginx",
    "parse_listen",
    "render_config",
]
