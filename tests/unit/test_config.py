"""Config: port syntax, where options come from, and what a bad value says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECTS_DIR

from hybrid.config import MAX_PORTS, OPTIONS, Config, parse_ports
from hybrid.errors import ConfigError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8001-8004", (8001, 8002, 8003, 8004)),
        ("8001,8003", (8001, 8003)),
        ("8001-8002,9000", (8001, 8002, 9000)),
        ("8001", (8001,)),
        (" 8001 , 8002 ", (8001, 8002)),
        ("65535", (65535,)),
        (8001, (8001,)),
        ([8001, "8002-8003"], (8001, 8002, 8003)),
    ],
)
def test_parse_ports_accepts_ranges_and_lists(spec: object, expected: tuple[int, ...]) -> None:
    assert parse_ports(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("80x1", "invalid port '80x1'"),
        ("9000-8000", "port range '9000-8000' is backwards: write 8000-9000"),
        ("70000", "port 70000 is out of range: use 1-65535"),
        ("0", "port 0 is out of range"),
        ("", "invalid port ''"),
        ("8001,", "invalid port ''"),
        ("-8001", "invalid port '-8001'"),
        ("8001-", "invalid port '8001-'"),
        ("8001,8001", "port 8001 is listed twice"),
        ("8001-8003,8002", "port 8002 is listed twice"),
        ("1-1000", f"more than {MAX_PORTS} workers"),
        (None, "ports must be a string"),
        (True, "ports must be a string"),
    ],
)
def test_parse_ports_rejects_nonsense_with_the_reason(spec: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ports(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_defaults_listen_on_loopback_only() -> None:
    config = Config.from_sources({}, {}, {})
    assert config.host == "127.0.0.1"
    assert config.ports == (8001,)
    assert config == Config()


def test_command_line_beats_environment_beats_settings_beats_default() -> None:
    cli = {"ports": "9001-9002", "host": None, "graceful_timeout": None}
    env = {"HYBRID_PORTS": "7001", "HYBRID_HOST": "0.0.0.0", "HYBRID_GRACEFUL_TIMEOUT": "5"}
    django = {"ports": "6001", "host": "::1", "graceful_timeout": 9, "max_body_size": 1024}
    config = Config.from_sources(cli, env, django)
    assert config.ports == (9001, 9002)  # command line
    assert config.host == "0.0.0.0"  # environment
    assert config.graceful_timeout == 5.0  # environment over settings
    assert config.max_body_size == 1024  # settings.HYBRID
    assert config.log_level == "info"  # default
    assert config.sources["ports"] == "--ports"
    assert config.sources["host"] == "HYBRID_HOST"
    assert config.sources["max_body_size"] == "settings.HYBRID['max_body_size']"


def test_settings_hybrid_values_are_typed_like_the_others() -> None:
    config = Config.from_sources({}, {}, {"ports": [8001, 8002], "xheaders": False})
    assert config.ports == (8001, 8002)
    assert config.xheaders is False


@pytest.mark.parametrize(
    ("cli", "env", "django", "message"),
    [
        ({"ports": "80x1"}, {}, {}, "--ports: invalid port '80x1'"),
        ({}, {"HYBRID_PORTS": "9000-8000"}, {}, "HYBRID_PORTS: port range '9000-8000'"),
        ({}, {}, {"ports": "70000"}, "settings.HYBRID['ports']: port 70000 is out of range"),
        ({"graceful_timeout": "-1"}, {}, {}, "--graceful-timeout: bad value '-1'"),
        ({}, {"HYBRID_XHEADERS": "maybe"}, {}, "HYBRID_XHEADERS: bad value 'maybe'"),
        ({"max_body_size": "1.5"}, {}, {}, "--max-body-size: bad value '1.5'"),
        (
            {"max_body_size": "10 megs"},
            {},
            {},
            "--max-body-size: bad value '10 megs': expected a size in bytes, or with a K, M "
            "or G suffix, e.g. 10M",
        ),
        ({}, {"HYBRID_MAX_HEADER_SIZE": "0"}, {}, "HYBRID_MAX_HEADER_SIZE: bad value '0'"),
        (
            {"timeout": "abc"},
            {},
            {},
            "--timeout: bad value 'abc': expected a positive number of seconds, e.g. 30 or 2.5",
        ),
        ({"db_threads": "x"}, {}, {}, "--db-threads: bad value 'x': expected a positive whole"),
        ({}, {}, {"gc_threshold": -1}, "bad value -1: expected 0 or a positive whole number"),
        ({"max_requests": "many"}, {}, {}, "expected 0 or a positive whole number"),
        (
            {"pythonpath": "/nonexistent/dir"},
            {},
            {},
            "--pythonpath: bad value '/nonexistent/dir': no such directory: /nonexistent/dir",
        ),
        ({"log_level": "loud"}, {}, {}, "--log-level: bad value 'loud'"),
        (
            {"loop": "tokio"},
            {},
            {},
            "--loop: bad value 'tokio': expected one of auto, asyncio, uvloop",
        ),
        ({}, {"HYBRID_LOOP": ""}, {}, "HYBRID_LOOP: bad value ''"),
        ({}, {}, {"loop": True}, "settings.HYBRID['loop']: bad value True"),
        ({"host": " "}, {}, {}, "--host: bad value"),
        (
            {"nginx": "0.0.0.0:80"},
            {},
            {},
            "--nginx: bad value '0.0.0.0:80': expected one port number, e.g. 8000 (its address "
            "goes in --nginx-host)",
        ),
        ({}, {"HYBRID_NGINX": "8000-8001"}, {}, "expected one port number, e.g. 8000"),
        (
            {"ports": "8001-8004"},
            {"HYBRID_NGINX": "8003"},
            {},
            "HYBRID_NGINX: port 8003 is also one of --ports: give nginx a port of its own",
        ),
        ({}, {}, {"nginx": 8001}, "settings.HYBRID['nginx']: port 8001 is also one of --ports"),
        (
            {"static": ["/static/=/srv/static", "nope"]},
            {},
            {},
            "--static: bad value '/static/=/srv/static' 'nope': 'nope' is not URL=DIR",
        ),
        ({}, {}, {"prots": "8001"}, "unknown option 'prots' in settings.HYBRID"),
        ({}, {}, {"settings": "x.y"}, "unknown option 'settings' in settings.HYBRID"),
    ],
)
def test_bad_values_name_their_source(
    cli: dict[str, object], env: dict[str, str], django: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_sources(cli, env, django)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1048576", 1 << 20),
        (4096, 4096),
        ("64K", 64 << 10),
        ("512kb", 512 << 10),
        ("10M", 10 << 20),
        ("10MiB", 10 << 20),
        (" 10 MB ", 10 << 20),
        ("1G", 1 << 30),
        ("100b", 100),
    ],
)
def test_sizes_take_the_suffixes_nginx_takes(value: object, size: int) -> None:
    config = Config.from_sources({"max_body_size": value}, {"HYBRID_MAX_HEADER_SIZE": str(value)})
    assert (config.max_body_size, config.max_header_size) == (size, size)


def test_loop_is_auto_by_default_and_comes_from_every_source() -> None:
    assert Config().loop == Config.from_sources({}, {}, {}).loop == "auto"
    assert Config.from_sources({"loop": " UVLOOP "}).loop == "uvloop"
    config = Config.from_sources({}, {"HYBRID_LOOP": "asyncio"}, {"loop": "uvloop"})
    assert (config.loop, config.sources["loop"]) == ("asyncio", "HYBRID_LOOP")
    config = Config.from_sources({}, {}, {"loop": "uvloop"})
    assert (config.loop, config.sources["loop"]) == ("uvloop", "settings.HYBRID['loop']")


def test_request_timeout_is_off_by_default_and_comes_from_every_source() -> None:
    assert Config().request_timeout == 0.0
    assert Config.from_sources({"request_timeout": "2.5"}).request_timeout == 2.5
    env = {"HYBRID_REQUEST_TIMEOUT": "30"}
    assert Config.from_sources({}, env).request_timeout == 30.0
    assert Config.from_sources({}, {}, {"request_timeout": 60}).request_timeout == 60.0
    for off in ("0", 0, "off", None):
        assert Config.from_sources({}, {}, {"request_timeout": off}).request_timeout == 0.0
    for bad in ("-1", "soon", "inf", True):
        with pytest.raises(ConfigError, match="expected a number of seconds, e.g. 60, or 0"):
            Config.from_sources({"request_timeout": bad})


def test_trusted_proxies_are_addresses_and_networks_from_every_source() -> None:
    assert Config().trusted_proxies == ()
    config = Config.from_sources({"trusted_proxies": " 10.0.0.0/8, 192.0.2.7/32 ,2001:db8::/32"})
    assert config.trusted_proxies == ("10.0.0.0/8", "192.0.2.7", "2001:db8::/32")
    env = {"HYBRID_TRUSTED_PROXIES": "127.0.0.1,127.0.0.1"}
    assert Config.from_sources({}, env).trusted_proxies == ("127.0.0.1",)
    django = {"trusted_proxies": ["172.16.0.0/12", "::1"]}
    assert Config.from_sources({}, {}, django).trusted_proxies == ("172.16.0.0/12", "::1")
    assert Config.from_sources({}, {"HYBRID_TRUSTED_PROXIES": ""}).trusted_proxies == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "10.0.0.1/8",
            "--trusted-proxies: bad value '10.0.0.1/8': '10.0.0.1/8' has bits set past its "
            "prefix: write 10.0.0.0/8",
        ),
        (
            "lb.example.com",
            "--trusted-proxies: bad value 'lb.example.com': 'lb.example.com' is not an IP "
            "address or network; expected IP addresses or networks separated by commas, e.g. "
            "10.0.0.0/8,192.0.2.7",
        ),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address or network"),
        (7, "bad value 7: expected IP addresses or networks separated by commas"),
    ],
)
def test_bad_trusted_proxies_say_what_to_write(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_sources({"trusted_proxies": value})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_proxy_read_timeout_is_automatic_unless_given() -> None:
    assert Config().proxy_read_timeout == 0.0
    assert Config.from_sources({"proxy_read_timeout": "90"}).proxy_read_timeout == 90.0
    env = {"HYBRID_PROXY_READ_TIMEOUT": "off"}
    assert Config.from_sources({}, env).proxy_read_timeout == 0.0
    with pytest.raises(ConfigError, match="--proxy-read-timeout: bad value '-5'"):
        Config.from_sources({"proxy_read_timeout": "-5"})


def test_nginx_may_share_a_worker_port_number_on_another_address() -> None:
    config = Config.from_sources({"ports": "8001-8002", "nginx": "8001", "nginx_host": "0.0.0.0"})
    assert (config.nginx, config.nginx_host) == (8001, "0.0.0.0")


def test_pythonpath_may_be_any_existing_directory(tmp_path: Path) -> None:
    assert Config.from_sources({"pythonpath": str(tmp_path)}, {}).pythonpath == str(tmp_path)


def test_every_option_has_a_field_a_flag_and_an_env_var() -> None:
    fields = set(Config.__dataclass_fields__) - {"sources"}
    assert {o.name for o in OPTIONS} == fields
    for option in OPTIONS:
        assert option.flag == "--" + option.name.replace("_", "-")
        assert option.env == "HYBRID_" + option.name.upper()


def test_replace_keeps_everything_else() -> None:
    config = Config(ports=(8001, 8002), host="::1")
    assert config.replace(ports=(9000,)) == Config(ports=(9000,), host="::1")


def test_load_puts_pythonpath_and_cwd_on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    Config(pythonpath=str(tmp_path)).load()
    assert sys.path[0] == str(tmp_path)
    assert os.getcwd() in sys.path


def test_load_exports_the_settings_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "testproject.settings")
    Config(settings="testproject.settings").load()
    assert os.environ["DJANGO_SETTINGS_MODULE"] == "testproject.settings"
    assert Config().settings_module == "testproject.settings"


def _load_in_fresh_process(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter: Django is already configured in this one."""
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )


def test_unknown_settings_module_is_an_app_load_error() -> None:
    result = _load_in_fresh_process(
        "from hybrid.errors import AppLoadError\n"
        "from hybrid.config import Config\n"
        "try:\n"
        "    Config(settings='no_such_project.settings').load()\n"
        "except AppLoadError as exc:\n"
        "    print(exc.target, '|', exc)\n"
    )
    assert result.stdout.startswith(
        "no_such_project.settings | settings module 'no_such_project.settings' not found"
    ), result.stderr


def test_settings_module_that_raises_is_reported_with_its_location(tmp_path: Path) -> None:
    (tmp_path / "badsettings.py").write_text("SECRET_KEY = 'x'\nDEBUG = undefined_name\n")
    result = _load_in_fresh_process(
        "from hybrid.errors import AppLoadError\n"
        "from hybrid.config import Config\n"
        f"try:\n    Config(settings='badsettings', pythonpath={str(tmp_path)!r}).load()\n"
        "except AppLoadError as exc:\n    print(exc)\n"
    )
    assert (
        "settings module 'badsettings' failed to import: NameError: name 'undefined_name' "
        "is not defined" in result.stdout
    ), result.stderr
    assert "badsettings.py:2" in result.stdout


def test_no_settings_module_at_all_says_how_to_name_one() -> None:
    result = _load_in_fresh_process(
        "from hybrid.errors import ConfigError\n"
        "from hybrid.config import Config\n"
        "try:\n    Config().load()\n"
        "except ConfigError as exc:\n    print(exc)\n"
    )
    assert "pass --settings mysite.settings or set DJANGO_SETTINGS_MODULE" in result.stdout


def test_build_config_merges_settings_hybrid_under_cli_and_env() -> None:
    result = _load_in_fresh_process(
        "from hybrid.config import build_config\n"
        "c = build_config({'ports': None, 'settings': 'testproject.settings_hybrid'},"
        " {'HYBRID_HOST': '::1'})\n"
        "print(c.ports, c.host, c.graceful_timeout, c.sources['ports'])\n",
        HYBRID_TEST_PORTS="8101-8102",
        PYTHONPATH=str(PROJECTS_DIR),
    )
    assert result.stdout.strip() == "(8101, 8102) ::1 5.0 settings.HYBRID['ports']", result.stderr


def test_groups_come_from_every_source_and_default_to_in_process() -> None:
    assert Config.from_sources({}, {}, {}).groups is None
    url = "redis://127.0.0.1:6379/0"
    assert Config.from_sources({"groups": url}).groups == url
    config = Config.from_sources({}, {"HYBRID_GROUPS": "memory://"}, {"groups": url})
    assert (config.groups, config.sources["groups"]) == ("memory://", "HYBRID_GROUPS")
    config = Config.from_sources({}, {}, {"groups": url, "group_queue": 5})
    assert (config.groups, config.group_queue) == (url, 5)
    assert Config.from_sources({"group_max_message": "1M"}).group_max_message == 1 << 20
    assert Config.from_sources({"groups": ""}).groups is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("amqp://127.0.0.1", "--groups: bad value 'amqp://127.0.0.1': expected redis://HOST"),
        ("127.0.0.1:6379", "expected redis://HOST:PORT/DB"),
        ("redis:///0", "no host in 'redis:///0': write redis://127.0.0.1:6379/0"),
    ],
)
def test_bad_groups_urls_say_what_to_write(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_sources({"groups": value})


def test_groups_over_redis_without_the_client_name_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hybrid.groups.layer import check

    check(Config(groups="memory://"))
    check(Config(groups="redis://127.0.0.1:6379/0"))  # installed in the test venvs
    monkeypatch.setitem(sys.modules, "redis", None)  # an import of it now fails
    config = Config.from_sources({"groups": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ConfigError, match=re.escape("pip install 'hybrid[redis]'")) as caught:
        check(config)
    assert caught.value.option == "--groups"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["10.0.0.2:8001-8004"], (("10.0.0.2", (8001, 8002, 8003, 8004)),)),
        (
            "10.0.0.2:8001 web-3.internal:8001,8003",
            (
                ("10.0.0.2", (8001,)),
                ("web-3.internal", (8001, 8003)),
            ),
        ),
        (["[fd00::2]:9000"], (("fd00::2", (9000,)),)),
        ("", ()),
    ],
)
def test_upstream_takes_one_host_per_entry(raw: object, expected: object) -> None:
    assert Config.from_sources({"upstream": raw}, environ={}).upstream == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("10.0.0.2", "'10.0.0.2' is not HOST:PORTS"),
        ("http://10.0.0.2:8001", "'http://10.0.0.2:8001' is not HOST:PORTS"),
        ("user@web:8001", "'user@web:8001' is not HOST:PORTS"),
        ("fd00::2:8001", "an IPv6 address goes in brackets: [fd00::2]:8001"),
        ("[10.0.0.2]:8001", "'[10.0.0.2]:8001' is not HOST:PORTS"),
        ("web_3:8001", "'web_3:8001' is not HOST:PORTS"),
        ("10.0.0.2:80x", "invalid port '80x'"),
    ],
)
def test_upstream_errors_name_the_entry(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_sources(environ={"HYBRID_UPSTREAM": raw})
    assert str(info.value).startswith("HYBRID_UPSTREAM: bad value")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_tls_files_are_made_absolute_and_the_redirect_port_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = Config.from_sources(
        {"certfile": "site.crt", "keyfile": "~/site.key", "redirect_port": "80"}, environ={}
    )
    assert config.certfile == str(tmp_path / "site.crt")
    assert config.keyfile == os.path.expanduser("~/site.key")
    assert config.redirect_port == 80
    with pytest.raises(ConfigError, match="--redirect-port: bad value '80-81'"):
        Config.from_sources({"redirect_port": "80-81"}, environ={})


def test_access_log_options(tmp_path: Path) -> None:
    config = Config.from_sources(
        {"access_log": str(tmp_path / "access.log"), "access_log_format": "%(h)s %(s)s "},
        environ={},
    )
    assert config.access_log == str(tmp_path / "access.log")
    assert config.access_log_format == "%(h)s %(s)s "  # spaces are part of the format
    assert Config.from_sources({"access_log": "off"}, environ={}).access_log == "off"
    assert Config.from_sources({}, environ={}).access_log_format is None
    # nginx's own: off, or a file; unset, each command has its default.
    assert Config.from_sources({}, environ={}).nginx_access_log is None
    nginx_log = Config.from_sources(
        {}, environ={"HYBRID_NGINX_ACCESS_LOG": str(tmp_path / "n.log")}
    ).nginx_access_log
    assert nginx_log == str(tmp_path / "n.log")
    assert Config.from_sources({"nginx_access_log": "off"}, environ={}).nginx_access_log == "off"


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        (
            {"access_log_format": "%(h)s %(nope)s"},
            "--access-log-format: '%(h)s %(nope)s': unknown atom %(nope)s",
        ),
        ({"access_log_format": "%(h"}, "--access-log-format: '%(h': unbalanced %("),
        ({"access_log": "/no/such/dir/access.log"}, "--access-log: bad value"),
        ({"nginx_access_log": "/no/such/dir/a.log"}, "--nginx-access-log: bad value"),
        ({"nginx_access_log": "-"}, "--nginx-access-log: bad value '-': expected off or a file"),
    ],
)
def test_bad_access_log_options_are_one_line_errors(cli: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_sources(cli, environ={})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
