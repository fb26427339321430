"""Group names and messages: what group_send accepts, and the one-line errors it raises."""

from __future__ import annotations

import datetime

import pytest

import hybrid
from hybrid.config import Config
from hybrid.groups.members import DEFAULT_QUEUE_LIMIT
from hybrid.groups.message import (
    DEFAULT_MESSAGE_LIMIT,
    check_group,
    decode,
    encode,
    method_name,
)


@pytest.mark.parametrize("name", ["room-42", "a", "chat.lobby_1", "x" * 99])
def test_channels_style_group_names_are_accepted(name: str) -> None:
    assert check_group(name) == name


@pytest.mark.parametrize("name", ["", "x" * 100, "room 42", "räum", "a/b", None, 42])
def test_bad_group_names_are_a_group_error_that_names_the_rule(name: object) -> None:
    with pytest.raises(hybrid.GroupError, match="invalid group name") as caught:
        check_group(name)
    assert caught.value.group == name
    assert isinstance(caught.value, ValueError)


def test_a_message_round_trips_as_json() -> None:
    message = {"type": "chat.message", "text": "héllo", "n": 1, "tags": ("a", "b")}
    data = encode("room", message, DEFAULT_MESSAGE_LIMIT)
    assert data == '{"type":"chat.message","text":"héllo","n":1,"tags":["a","b"]}'.encode()
    assert decode(data) == {"type": "chat.message", "text": "héllo", "n": 1, "tags": ["a", "b"]}


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ("text", "must be a dict with a 'type' key, not str"),
        ({"text": "no type"}, "needs a 'type' string"),
        ({"type": ""}, "needs a 'type' string"),
        ({"type": 3}, "needs a 'type' string"),
        ({"type": "t", "when": datetime.date(2026, 1, 1)}, "not JSON-serialisable"),
        ({"type": "t", "x": float("nan")}, "not JSON-serialisable"),
        ({"type": "t", 1: "int key"}, None),  # JSON turns the key into "1": accepted
    ],
)
def test_bad_messages_are_refused_with_the_reason(message: object, match: str | None) -> None:
    if match is None:
        assert decode(encode("room", message, 1000)) == {"type": "t", "1": "int key"}
        return
    with pytest.raises(hybrid.GroupError, match=match) as caught:
        encode("room", message, 1000)
    assert caught.value.group == "room"


def test_a_message_over_the_limit_says_its_size_the_limit_and_the_fix() -> None:
    message = {"type": "t", "blob": "x" * 2000}
    with pytest.raises(hybrid.GroupError) as caught:
        encode("room", message, 1024)
    error = caught.value
    assert error.size == len(encode("room", message, 10_000))
    assert error.limit == 1024
    assert "over the limit of 1,024" in str(error)
    assert "group_max_message" in str(error)
    assert "\n" not in str(error)


def test_types_map_to_method_names_as_in_channels() -> None:
    assert method_name("chat.message") == "chat_message"
    assert method_name("tick") == "tick"


def test_config_defaults_are_the_groups_defaults() -> None:
    config = Config()
    assert config.groups is None
    assert config.group_queue == DEFAULT_QUEUE_LIMIT
    assert config.group_max_message == DEFAULT_MESSAGE_LIMIT
