"""hybrid.protocol: the lines a worker sends its master."""

from __future__ import annotations

import pytest

from hybrid.protocol import (
    MAX_LINE,
    Blocked,
    BootError,
    Heartbeat,
    Message,
    Ready,
    Recycle,
    encode,
    heartbeat_interval,
    parse,
    split_lines,
)


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (Ready(), b"ready\n"),
        (Ready("uvloop 0.23.0"), b"ready uvloop 0.23.0\n"),
        (Heartbeat(0), b"hb 0\n"),
        (Heartbeat(12345), b"hb 12345\n"),
        (
            BootError("AppLoadError: no module x (a.py:3)"),
            b"boot-error AppLoadError: no module x (a.py:3)\n",
        ),
        (BootError("élan"), "boot-error élan\n".encode()),
        (
            Recycle("served 10 requests (--max-requests)"),
            b"recycle served 10 requests (--max-requests)\n",
        ),
        (
            Blocked("GET", "/stuck", 4.25, "/srv/app/views.py:12 in get"),
            b"blocked 4.250 GET /stuck /srv/app/views.py:12 in get\n",
        ),
        (Blocked(where="loop.py:3 in run"), b"blocked - - - loop.py:3 in run\n"),
        (Blocked(), b"blocked - - - \n"),
    ],
)
def test_round_trip(message: Message, line: bytes) -> None:
    assert encode(message) == line
    assert parse(line) == message
    assert parse(line.rstrip(b"\n")) == message


def test_newlines_in_a_reason_stay_on_one_line() -> None:
    line = encode(BootError("Traceback:\n  line 1\r\nboom"))
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert parse(line) == BootError("Traceback:   line 1  boom")


def test_a_long_reason_is_cut_to_one_atomic_write() -> None:
    line = encode(BootError("x" * 10 * MAX_LINE))
    assert len(line) == MAX_LINE and line.endswith(b"\n")
    message = parse(line)
    assert isinstance(message, BootError) and message.reason == "x" * (MAX_LINE - 12)
    cut = encode(Recycle("é" * MAX_LINE))  # cut inside a character: still readable
    assert isinstance(parse(cut), Recycle)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\n",
        b"hello",
        b"hb",
        b"hb ",
        b"hb x",
        b"hb -1",
        b"hb 1.5",
        "hb ²".encode(),
        b"HB 1",
        b"\xff\xfe",
        b" ready",
    ],
)
def test_malformed_lines_are_none(line: bytes) -> None:
    assert parse(line) is None


def test_empty_reasons_and_the_loop_after_ready() -> None:
    assert parse(b"boot-error") == BootError("")
    assert parse(b"recycle ") == Recycle("")
    assert parse(b"ready asyncio ") == Ready("asyncio")
    assert parse(b"ready") == parse(b"ready ") == Ready()


def test_split_lines_keeps_a_partial_line() -> None:
    assert split_lines(b"") == ([], b"")
    assert split_lines(b"ready\nhb 1\nhb") == ([b"ready", b"hb 1"], b"hb")
    assert split_lines(b"hb 2\n") == ([b"hb 2"], b"")
    data = encode(Ready()) + encode(Heartbeat(3)) + encode(Recycle("r"))[:4]
    lines, rest = split_lines(data)
    assert [parse(line) for line in lines] == [Ready(), Heartbeat(3)]
    lines, rest = split_lines(rest + b"cle r\n")
    assert [parse(line) for line in lines] == [Recycle("r")] and rest == b""


def test_a_blocked_path_stays_one_field() -> None:
    line = encode(Blocked("GET", "/a b\tc", 1.0, "x.py:1 in f"))
    assert line == b"blocked 1.000 GET /a%20b%09c x.py:1 in f\n"
    assert parse(line) == Blocked("GET", "/a%20b%09c", 1.0, "x.py:1 in f")


@pytest.mark.parametrize(
    "line",
    [b"blocked", b"blocked 1.0 GET", b"blocked x GET /", b"blocked -1 GET /", b"blocked nan GET /"],
)
def test_malformed_blocked_lines_are_none(line: bytes) -> None:
    assert parse(line) is None


def test_heartbeat_interval_fits_several_beats_in_the_timeout() -> None:
    assert heartbeat_interval(30) == 1.0
    assert heartbeat_interval(2) == 0.4
    assert heartbeat_interval(0.1) == 0.05
