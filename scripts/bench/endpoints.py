"""The benchmark project's endpoints, how many connections drive each, and the check that
an answer is what the benchmark means to measure."""

from __future__ import annotations

import json

from .harness import Stack

LIST_ROWS = 20

# name -> (path suffix, connections); the 1,000-connection I/O run is the same URL as "io".
ENDPOINTS: dict[str, tuple[str, int]] = {
    "hello": ("hello", 64),
    "row": ("row", 64),
    "list": ("list", 64),
    "query": ("query", 64),
    "io": ("io", 64),
    "cmd": ("cmd", 64),
    "io-1000": ("io", 1000),  # last: a stack that cannot keep up drains its backlog after it
}
DESCRIPTIONS = {
    "hello": "plaintext hello through the default middleware",
    "row": "one row by pk as JSON",
    "list": f"{LIST_ROWS} rows as JSON",
    "query": "a 50 ms query (SLEEP(0.05))",
    "io": "50 ms of simulated I/O (sleep)",
    "cmd": "one command (`true`) per request",
    "io-1000": "50 ms of simulated I/O at 1,000 connections",
}
# Headers Django's default middleware adds to every response (SecurityMiddleware,
# XFrameOptionsMiddleware): proof that a stack's hello went through the chain.
MIDDLEWARE_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def check(stack: Stack, endpoint: str, headers: dict[str, str], body: bytes) -> str | None:
    """Why the answer of ``endpoint`` is not what the benchmark means to measure, or None."""
    if endpoint == "list":
        try:
            count = len(json.loads(body)["rows"])
        except (ValueError, KeyError, TypeError):
            return f"list answered no JSON rows: {body[:80]!r}"
        if count != LIST_ROWS:
            return f"list answered {count} rows, not {LIST_ROWS}"
    if endpoint == "hello" and stack.django:
        missing = [f"{k}: {v}" for k, v in MIDDLEWARE_HEADERS.items() if headers.get(k) != v]
        if missing:
            return "hello lacks the default middleware's headers: " + ", ".join(missing)
    return None
