"""hybrid.nginx.upstreams: one upstream over this host's workers and every other host's,
each worker once, every host name resolvable before nginx runs."""

from __future__ import annotations

import pytest

from hybrid.config import Config
from hybrid.errors import ConfigError
from hybrid.nginx.upstreams import check_upstreams, servers


def hosts(*entries: str, **changes: object) -> Config:
    return Config.from_sources({"upstream": list(entries), **changes}, environ={})


def test_this_hosts_ports_come_first_then_each_host_in_order() -> None:
    config = hosts("10.0.0.3:8001-8002", "[fd00::2]:9000", ports="8001-8002", host="10.0.0.2")
    assert servers(config) == [
        ("10.0.0.2", 8001),
        ("10.0.0.2", 8002),
        ("10.0.0.3", 8001),
        ("10.0.0.3", 8002),
        ("fd00::2", 9000),
    ]


def test_a_wildcard_host_is_reached_on_loopback() -> None:
    config = hosts("10.0.0.3:8001", ports="8001", host="0.0.0.0")
    assert servers(config)[0] == ("127.0.0.1", 8001)


@pytest.mark.parametrize(
    ("entries", "changes", "message"),
    [
        (("127.0.0.1:8001",), {}, "127.0.0.1:8001 is listed twice (already in --ports on --host"),
        (("10.0.0.3:8001", "10.0.0.3:8000-8002"), {}, "10.0.0.3:8001 is listed twice"),
        (("WEB-3:8001", "web-3.:8001"), {}, "web-3:8001 is listed twice"),
        (("[fd00::0:2]:80", "[fd00::2]:80"), {}, "[fd00::2]:80 is listed twice"),
        (("0.0.0.0:8001",), {}, "0.0.0.0 is a wildcard"),
    ],
)
def test_a_worker_listed_twice_is_a_config_error(
    entries: tuple[str, ...], changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        servers(hosts(*entries, **changes))
    assert message in str(info.value)
    assert str(info.value).startswith("--upstream: ")
    assert "\n" not in str(info.value)


def test_the_error_names_where_the_value_came_from() -> None:
    config = Config.from_sources(environ={"HYBRID_UPSTREAM": "127.0.0.1:8001"})
    with pytest.raises(ConfigError, match=r"^HYBRID_UPSTREAM: 127.0.0.1:8001 is listed twice"):
        servers(config)


def test_addresses_and_names_that_resolve_pass_the_check() -> None:
    check_upstreams(hosts("10.0.0.3:8001", "localhost:9001", "[fd00::2]:8001"))


def test_a_name_that_does_not_resolve_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        check_upstreams(hosts("10.0.0.3:8001", "no-such-host.invalid:8001"))
    message = str(info.value)
    assert message.startswith("--upstream: host 'no-such-host.invalid' cannot be resolved (")
    assert "\n" not in message


def test_a_name_and_an_address_of_the_same_worker_are_caught() -> None:
    # localhost is 127.0.0.1 here (/etc/hosts), this host's own --ports.
    config = hosts("localhost:8001", ports="8001", host="127.0.0.1")
    servers(config)  # as text, two different workers
    with pytest.raises(ConfigError) as info:
        check_upstreams(config)
    message = str(info.value)
    assert message == (
        "--upstream: localhost:8001 and 127.0.0.1:8001 are the same worker (both reach "
        "127.0.0.1:8001): give every worker once"
    )
    check_upstreams(hosts("localhost:8002", ports="8001", host="127.0.0.1"))  # other port
