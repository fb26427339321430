"""hybrid.process streaming, the allow-list and CommandStreamHandler."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import tornado.web
from processes import (
    group_members,
    no_global_surprises,  # noqa: F401  (autouse: SIGCHLD, registry)
)
from tornado.httpclient import AsyncHTTPClient
from tornado.tcpclient import TCPClient
from waiting import until

from hybrid.process import (
    AllowList,
    CommandNotAllowed,
    CommandNotFound,
    CommandSpec,
    CommandStreamHandler,
    OutputEvent,
    run_command,
    running_commands,
    set_max_concurrent,
    stream_command,
)
from hybrid.process.commands import _HIGH_WATER
from hybrid.process.pipes import CHUNK

TICKER = "echo first; sleep 1; echo second"


# --- stream_command -------------------------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_stream_yields_output_before_the_command_finishes() -> None:
    started = time.monotonic()
    seen: list[tuple[float, OutputEvent[str]]] = []
    async with stream_command(
        ["sh", "-c", "echo first; sleep 1; echo oops >&2; printf tail"],
        timeout=5,
        lines=True,
        text=True,
    ) as stream:
        assert stream.pid > 0
        async for event in stream:
            seen.append((time.monotonic() - started, event))
    assert [(e.stream, e.data) for _, e in seen] == [
        ("stdout", "first\n"),
        ("stderr", "oops\n"),
        ("stdout", "tail"),
    ]
    assert seen[0][0] < 0.8  # arrived while the command was still sleeping
    assert seen[1][0] >= 0.9
    assert stream.result.returncode == 0 and not stream.result.timed_out


@pytest.mark.gen_test(timeout=10)
async def test_stream_bytes_chunks_and_long_lines_split() -> None:
    async with stream_command(
        ["sh", "-c", "printf 'abcdefghij\\nxy'"], timeout=5, lines=True, max_line=4
    ) as stream:
        data = [event.data async for event in stream]
    assert data == [b"abcd", b"efgh", b"ij\n", b"xy"]


@pytest.mark.gen_test(timeout=10)
async def test_stream_backpressure_bounds_memory_and_loses_nothing() -> None:
    total = 3_000_000
    async with stream_command(["head", "-c", str(total), "/dev/zero"], timeout=8) as stream:
        await asyncio.sleep(0.3)  # a slow consumer: reading pauses, the child blocks
        assert stream._buffered <= _HIGH_WATER + CHUNK
        received = 0
        async for event in stream:
            received += len(event.data)
    assert received == total
    assert stream.result.returncode == 0


@pytest.mark.gen_test(timeout=10)
async def test_leaving_the_stream_early_kills_the_command() -> None:
    started = time.monotonic()
    async with stream_command(
        ["sh", "-c", "echo $$; sleep 30 & sleep 30"], timeout=30, kill_grace=0.5
    ) as stream:
        async for event in stream:
            pid = int(event.data)
            break
    assert time.monotonic() - started < 2
    assert stream.result.returncode < 0
    assert group_members(pid) == []


@pytest.mark.gen_test(timeout=10)
async def test_a_flooding_command_does_not_starve_the_loop() -> None:
    """``yes`` read as lines: the loop still runs a 10 ms ticker (about 70-100 times a
    second here; 9 before the stream handed out events in bounded runs)."""
    ticks = 0
    streaming = True

    async def ticker() -> None:
        nonlocal ticks
        while streaming:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    lines = 0
    started = time.monotonic()
    async with stream_command(["yes"], timeout=1, lines=True, text=True) as stream:
        async for event in stream:
            assert event.data == "y\n"
            lines += 1
    took = time.monotonic() - started
    streaming = False
    await task
    assert stream.result.timed_out
    assert lines > 10_000
    assert ticks >= 25 * took, f"{ticks} ticks in {took:.2f}s"


@pytest.mark.gen_test(timeout=10)
async def test_stream_timeout_and_errors() -> None:
    async with stream_command(["sleep", "30"], timeout=0.3) as stream:
        with pytest.raises(RuntimeError, match="still running"):
            stream.result  # noqa: B018
        assert [event async for event in stream] == []
    assert stream.result.timed_out
    with pytest.raises(CommandNotFound):
        stream_command(["no-such-cmd-xyz"], timeout=1)


# --- AllowList ------------------------------------------------------------------------

ALLOW = AllowList(
    [
        CommandSpec("echo", ["echo"], args=[r"[a-z]+"]),
        CommandSpec("words", ["printf", "%s\\n"], varargs=r"(?s).+", max_args=8),
        CommandSpec(
            "grep",
            ["grep", "-c"],
            args=[r"[a-z-]+", r"/etc/[a-z]+"],
            allow_dash=True,
            end_of_options=True,
        ),
        CommandSpec("ticker", ["sh", "-c", TICKER], text=True),
        CommandSpec("forever", ["sh", "-c", "echo $$; sleep 30 & sleep 30"], timeout=60),
        CommandSpec("flood", ["yes"], timeout=2, text=True),
        CommandSpec("missing", ["/nonexistent/hybrid-test-program"]),
    ]
)


def test_allow_list_rejects_commands_not_listed() -> None:
    with pytest.raises(CommandNotAllowed) as info:
        ALLOW.build("rm", ["-rf", "/"])
    assert info.value.name == "rm" and info.value.argument is None
    assert "not in the allow-list" in str(info.value)
    assert "rm" not in ALLOW and "echo" in ALLOW


def test_allow_list_rejects_leading_dash_unless_allowed() -> None:
    with pytest.raises(CommandNotAllowed, match="allow_dash") as info:
        ALLOW.build("words", ["ok", "--output=/etc/passwd"])
    assert info.value.argument == "--output=/etc/passwd"
    assert ALLOW.build("grep", ["-root", "/etc/passwd"]) == [
        "grep",
        "-c",
        "--",
        "-root",
        "/etc/passwd",
    ]


def test_allow_list_checks_patterns_and_arity() -> None:
    assert ALLOW.build("echo", ["hello"]) == ["echo", "hello"]
    with pytest.raises(CommandNotAllowed, match="does not match"):
        ALLOW.build("echo", ["Hello"])
    with pytest.raises(CommandNotAllowed, match="exactly 1 argument"):
        ALLOW.build("echo", ["a", "b"])
    with pytest.raises(CommandNotAllowed, match="exactly 1 argument"):
        ALLOW.build("echo", [])
    with pytest.raises(CommandNotAllowed, match="at most 8"):
        ALLOW.build("words", ["x"] * 9)
    with pytest.raises(CommandNotAllowed, match="does not match"):
        ALLOW.build("grep", ["root", "/etc/../root"])


def test_command_spec_validates_itself() -> None:
    with pytest.raises(ValueError, match="argv"):
        CommandSpec("bad", "rm -rf /")
    with pytest.raises(ValueError, match="pattern"):
        CommandSpec("bad", ["ls"], args=["("])
    with pytest.raises(ValueError, match="twice"):
        AllowList([CommandSpec("a", ["ls"]), CommandSpec("a", ["ls"])])


@pytest.mark.gen_test
async def test_allow_list_run_keeps_metacharacters_literal(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    args = [f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", f"a\ntouch {canary}"]
    result = await ALLOW.run("words", args, text=True)
    assert result.stdout == "".join(a + "\n" for a in args)
    assert not canary.exists()


# --- CommandStreamHandler -------------------------------------------------------------


@pytest.fixture
def app() -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/run/(?P<name>[a-z]+)", CommandStreamHandler, {"allow": ALLOW}),
            (r"/sse", CommandStreamHandler, {"allow": ALLOW, "command": "echo", "sse": True}),
            (
                r"/impatient/(?P<name>[a-z]+)",
                CommandStreamHandler,
                {"allow": ALLOW, "run_options": {"queue_timeout": 0.1}},
            ),
        ]
    )


@pytest.mark.gen_test(timeout=10)
async def test_handler_streams_chunks_before_the_command_finishes(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    started = time.monotonic()
    chunks: list[tuple[float, bytes]] = []
    response = await http_client.fetch(
        f"{base_url}/run/ticker",
        streaming_callback=lambda chunk: chunks.append((time.monotonic() - started, chunk)),
    )
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers.get("Transfer-Encoding") == "chunked"
    assert b"".join(c for _, c in chunks) == b"first\nsecond\n"
    assert chunks[0][0] < 0.8  # "first" came while the command slept
    assert time.monotonic() - started >= 1.0


@pytest.mark.gen_test(timeout=10)
async def test_handler_sends_server_sent_events(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response = await http_client.fetch(f"{base_url}/sse?arg=hello")
    assert response.headers["Content-Type"] == "text/event-stream"
    body = response.body.decode()
    assert body.startswith("event: stdout\ndata: hello\n\n")
    assert body.endswith('event: exit\ndata: {"returncode": 0, "timed_out": false}\n\n')
    by_accept = await http_client.fetch(
        f"{base_url}/run/echo?arg=hi", headers={"Accept": "text/event-stream"}
    )
    assert by_accept.body.decode().startswith("event: stdout\ndata: hi\n\n")
    exit_line = by_accept.body.decode().strip().splitlines()[-1]
    assert json.loads(exit_line.removeprefix("data: "))["returncode"] == 0


@pytest.mark.gen_test(timeout=10)
async def test_handler_refuses_unlisted_commands_and_bad_arguments(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    async def refused(path: str) -> tuple[int, str]:
        response = await http_client.fetch(base_url + path, raise_error=False)
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        return response.code, response.body.decode()

    assert await refused("/run/rm?arg=-rf") == (404, "404 Not Found: no command named 'rm'\n")
    # Why, in one line; never the spec's patterns or settings (the log line has them).
    assert await refused("/run/echo?arg=-n") == (
        400,
        "400 Bad Request: command 'echo': argument 1 may not start with '-'\n",
    )
    assert await refused("/run/echo?arg=A;id") == (
        400,
        "400 Bad Request: command 'echo': argument 1 is not accepted\n",
    )
    assert await refused("/run/echo") == (
        400,
        "400 Bad Request: command 'echo': takes exactly 1 argument, got 0\n",
    )
    # The patterns see the raw argument: not stripped, control characters kept.
    for sent in ("%20hi", "hi%09", "%0a"):
        assert await refused(f"/run/echo?arg={sent}") == (
            400,
            "400 Bad Request: command 'echo': argument 1 is not accepted\n",
        )
    assert await refused("/run/echo?arg=%FF") == (
        400,
        "400 Bad Request: argument 1 is not UTF-8\n",
    )
    assert running_commands() == []


@pytest.mark.gen_test(timeout=10)
async def test_handler_says_when_a_listed_program_is_missing(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response = await http_client.fetch(f"{base_url}/run/missing", raise_error=False)
    assert response.code == 500
    assert response.body == (
        b"500 Internal Server Error: command 'missing' is not available on this server\n"
    )
    assert b"nonexistent" not in response.body


@pytest.mark.gen_test(timeout=10)
async def test_handler_without_a_free_slot_is_a_503_with_retry_after(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    set_max_concurrent(1)
    first = asyncio.ensure_future(run_command(["sleep", "1"], timeout=5))
    await until(running_commands, timeout=3, interval=0.01)  # it holds the one slot
    response = await http_client.fetch(f"{base_url}/impatient/echo?arg=hi", raise_error=False)
    assert response.code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.body.startswith(b"503 Service Unavailable: every command slot")
    assert (await first).returncode == 0
    served = await http_client.fetch(f"{base_url}/impatient/echo?arg=hi")
    assert served.body == b"hi\n"


@pytest.mark.gen_test(timeout=15)
async def test_a_flooding_stream_leaves_the_loop_to_other_requests(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    """``yes`` through the handler, to a client reading as fast as it can: another request
    on the same worker still answers quickly (it waited seconds when each 64 KiB read
    became 32,768 events handed out without a turn for the loop)."""
    received = chunks = 0

    def count(chunk: bytes) -> None:
        nonlocal received, chunks
        received += len(chunk)
        chunks += 1

    flood = asyncio.ensure_future(
        http_client.fetch(f"{base_url}/run/flood", streaming_callback=count, request_timeout=10)
    )
    await until(lambda: received > 1 << 16, timeout=3, interval=0.02)
    started = time.monotonic()
    other = await http_client.fetch(f"{base_url}/run/echo?arg=hi")
    took = time.monotonic() - started
    assert other.body == b"hi\n"
    assert took < 1.0, f"took {took:.2f}s"
    await flood
    assert received > 1 << 20
    # What is already there goes as one HTTP chunk (one per 2-byte line crawled at 400 KB/s)
    assert received / chunks > 1000, (received, chunks)


@pytest.mark.gen_test(timeout=10)
async def test_client_disconnect_kills_the_command(http_server: object, http_port: int) -> None:
    """A raw socket, so the test controls exactly when the client goes away."""
    stream = await TCPClient().connect("127.0.0.1", http_port)
    await stream.write(b"GET /run/forever HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await stream.read_until(b"\r\n\r\n")
    assert b"200 OK" in head and b"chunked" in head.lower()
    await stream.read_until(b"\r\n")  # chunk size
    pid = int(await stream.read_until(b"\n"))
    assert group_members(pid) != []
    stream.close()
    await until(
        lambda: group_members(pid) == [] and running_commands() == [], timeout=3, interval=0.02
    )
