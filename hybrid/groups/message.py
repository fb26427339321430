"""Group names and group messages: what may be sent, and how it travels.

A group message is a dict with a ``"type"`` string, as in Channels: ``{"type":
"chat.message", "text": "hi"}``. It is encoded once, by the sender, as compact UTF-8 JSON;
each worker with members decodes it once and hands every member socket its own shallow
copy. Both backends go through the same encoding, so what a socket receives is the same
whether the message crossed Redis or not (a tuple arrives as a list, keys as strings).
"""

from __future__ import annotations

import json
import re
from typing import Any

from hybrid.errors import GroupError

__all__ = [
    "DEFAULT_MESSAGE_LIMIT",
    "check_group",
    "decode",
    "encode",
    "method_name",
]

#: The default limit on an encoded message (``HYBRID["group_max_message"]``). Big enough
#: for any chat line or dashboard update, small enough that a fan-out to thousands of
#: sockets cannot turn one careless send into gigabytes of writes.
DEFAULT_MESSAGE_LIMIT = 256 * 1024

# Channels' rule for group names, so that names carry over: ASCII letters, digits,
# hyphens, underscores and periods, fewer than 100 of them.
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,99}")

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def check_group(group: object) -> str:
    """``group`` if it is a valid group name; :class:`GroupError` otherwise."""
    if not isinstance(group, str) or _GROUP_NAME.fullmatch(group) is None:
        raise GroupError(
            f"invalid group name {group!r}: use 1 to 99 ASCII letters, digits, "
            "hyphens, underscores or periods (e.g. 'room-42')",
            group=group,
        )
    return group


def encode(group: str, message: object, limit: int) -> bytes:
    """``message`` as the bytes every backend carries; :class:`GroupError` when it is not a
    dict with a ``"type"`` string, not JSON-serialisable, or over ``limit`` bytes."""
    if not isinstance(message, dict):
        raise GroupError(
            f"group message for {group!r} must be a dict with a 'type' key, "
            f"not {type(message).__name__}",
            group=group,
        )
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise GroupError(
            f"group message for {group!r} needs a 'type' string naming the handler, "
            "e.g. {'type': 'chat.message', ...} calls chat_message()",
            group=group,
        )
    try:
        data = _encoder.encode(message).encode()
    except (TypeError, ValueError) as exc:
        raise GroupError(
            f"group message for {group!r} is not JSON-serialisable ({exc}): send strings, "
            "numbers, booleans, None, lists and dicts with string keys",
            group=group,
        ) from None
    if len(data) > limit:
        raise GroupError(
            f"group message for {group!r} is {len(data):,} bytes as JSON, over the limit of "
            f"{limit:,} (HYBRID['group_max_message']): send a reference (a primary key, a "
            "URL) rather than the data",
            group=group,
            size=len(data),
            limit=limit,
        )
    return data


def decode(data: bytes) -> dict[str, Any]:
    """The message ``encode`` made."""
    message: dict[str, Any] = json.loads(data)
    return message


def method_name(kind: str) -> str:
    """The handler method a message type names, as Channels maps it: ``chat.message`` ->
    ``chat_message``."""
    return kind.replace(".", "_")
