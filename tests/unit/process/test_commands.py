"""hybrid.process: run_command, the callback Subprocess, and every safety guarantee.

Every test here spawns real processes. Each checks afterwards (autouse fixture) that no
command is left in the registry and that nobody installed a SIGCHLD handler: with many
pytest-tornado loops in one session, that is the "no global surprises" proof.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from processes import (
    alive,
    group_members,
    my_zombies,
    no_global_surprises,  # noqa: F401  (autouse)
)
from tornado.ioloop import IOLoop
from waiting import until

import hybrid.process
import hybrid.process.runner
from hybrid._compat.asyncio import pidfd_available
from hybrid.errors import HybridError
from hybrid.process import (
    CommandBusy,
    CommandError,
    CommandFailed,
    CommandNotFound,
    CommandResult,
    CommandTimeout,
    Limits,
    Subprocess,
    run_command,
    running_commands,
    set_max_concurrent,
    terminate_all,
)

PY = sys.executable


# --- timeout, success, missing executable, failure: against both APIs -----------------


@pytest.mark.gen_test(timeout=10)
async def test_run_command_times_out() -> None:
    result = await run_command(["sleep", "5"], timeout=0.5)
    assert result.timed_out
    assert result.returncode != 0


@pytest.mark.gen_test
async def test_run_command_succeeds() -> None:
    result = await run_command(["sleep", "0.2"], timeout=3)
    assert result.returncode == 0
    assert not result.timed_out
    assert result.ok


@pytest.mark.gen_test
async def test_run_command_raises_for_an_unknown_executable() -> None:
    with pytest.raises(CommandNotFound) as info:
        await run_command(["sleepdsdasdas", "1"], timeout=3)
    assert isinstance(info.value, FileNotFoundError)  # as with subprocess.run
    assert isinstance(info.value, HybridError)
    assert info.value.cmd == ("sleepdsdasdas", "1")
    assert "install it" in str(info.value)


@pytest.mark.gen_test
async def test_run_command_reports_a_failing_command() -> None:
    result = await run_command(["cat", "/etc/sdfsdfsdfsdfsdfsdfsdf"], timeout=3)
    assert result.returncode != 0
    assert not result.timed_out
    assert b"No such file" in result.stderr


@pytest.mark.gen_test(timeout=10)
async def test_subprocess_timeout_ok_missing_and_error() -> None:
    """The four cases through the callback API, with short sleeps."""
    loop = asyncio.get_running_loop()
    results: dict[str, asyncio.Future[tuple[Any, ...]]] = {
        name: loop.create_future() for name in ("timeout", "ok", "error")
    }

    def recorder(name: str) -> Any:
        def callback(status: int, stdout: Any, stderr: Any, has_timed_out: bool) -> None:
            results[name].set_result((status, stdout, stderr, has_timed_out))

        return callback

    t1 = Subprocess(recorder("timeout"), timeout=0.5, args=["sleep", "5"])
    t2 = Subprocess(recorder("ok"), timeout=3, args=["sleep", "0.2"])
    t3 = Subprocess(recorder("never"), timeout=3, args=["sleepdsdasdas", "1"])
    t4 = Subprocess(recorder("error"), timeout=3, args=["cat", "/etc/sdfsdfsdfsdfsdfsdfsdf"])
    t1.start()
    t2.start()
    with pytest.raises(CommandNotFound):
        t3.start()
    t4.start()
    status, _, _, timed_out = await results["timeout"]
    assert status != 0 and timed_out
    status, _, _, timed_out = await results["ok"]
    assert status == 0 and not timed_out
    status, _, stderr, timed_out = await results["error"]
    assert status != 0 and not timed_out and b"No such file" in stderr
    assert t1.has_timed_out and t2.status == 0 and t4.stderr == stderr


@pytest.mark.gen_test
async def test_subprocess_start_twice_raises() -> None:
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = Subprocess(lambda status, *_: done.set_result(status), args=["true"])
    task.start()
    with pytest.raises(RuntimeError, match="twice"):
        task.start()
    assert await done == 0


@pytest.mark.gen_test
async def test_subprocess_callback_once_with_output_and_no_limit_by_default() -> None:
    calls: list[tuple[Any, ...]] = []
    done = asyncio.Event()

    def callback(*args: Any) -> None:
        calls.append(args)
        done.set()

    task = Subprocess(callback, args=["sh", "-c", "echo out; echo err >&2"], text=True)
    assert task.timeout < 0  # GenericSubprocess's default: no limit
    task.start()
    await done.wait()
    await asyncio.sleep(0.1)  # a second call would come now: time to be sure it does not
    assert calls == [(0, "out\n", "err\n", False)]


@pytest.mark.gen_test
async def test_subprocess_cancel_kills_group_and_calls_back() -> None:
    done: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
    task = Subprocess(
        lambda s, o, e, t: done.set_result((s, t)), timeout=30, args=["sleep", "30"], kill_grace=0.5
    )
    task.start()
    await until(lambda: running_commands() != [], timeout=3, interval=0.02)
    pid = running_commands()[0][0]
    task.cancel()
    status, timed_out = await done
    assert status == -signal.SIGTERM and not timed_out
    assert group_members(pid) == []


def test_subprocess_started_before_the_ioloop_runs(io_loop: IOLoop) -> None:
    """A GenericSubprocess-era script: start() on the current IOLoop first, then IOLoop.start()."""
    got: list[tuple[Any, ...]] = []

    def done(*args: Any) -> None:
        got.append(args)
        io_loop.stop()

    Subprocess(done, timeout=3, args=["echo", "hi"]).start()
    io_loop.start()
    assert got == [(0, b"hi\n", b"", False)]


def test_subprocess_refuses_popen_options() -> None:
    with pytest.raises(TypeError, match="stdout"):
        Subprocess(print, args=["true"], stdout=None)


# --- API details ----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_text_bytes_encoding_input_and_cwd(tmp_path: Path) -> None:
    raw = await run_command(["cat"], timeout=5, input=b"\xff\x00bin")
    assert raw.stdout == b"\xff\x00bin"
    text = await run_command(["cat"], timeout=5, input="héllo\r\nx", text=True)
    assert text.stdout == "héllo\nx"  # universal newlines, as subprocess text mode
    latin = await run_command(["cat"], timeout=5, input="é", encoding="latin-1")
    assert latin.stdout == "é"
    (tmp_path / "here.txt").write_text("x")
    listing = await run_command(["ls"], timeout=5, cwd=tmp_path, text=True)
    assert listing.stdout == "here.txt\n"
    assert isinstance(listing, CommandResult) and listing.pid > 0 and listing.duration >= 0
    with pytest.raises(TypeError, match="text=True"):
        await run_command(["cat"], timeout=5, input="str in bytes mode")


@pytest.mark.gen_test
async def test_input_larger_than_pipe_buffer_and_early_close() -> None:
    big = b"x" * (1 << 20)
    result = await run_command(["wc", "-c"], timeout=5, input=big)
    assert result.stdout.strip() == b"1048576"
    early = await run_command(["true"], timeout=5, input=big)  # EPIPE is not an error
    assert early.returncode == 0


@pytest.mark.gen_test(timeout=10)
async def test_check_raises_errors_that_carry_the_result() -> None:
    with pytest.raises(CommandFailed) as failed:
        await run_command(["sh", "-c", "echo oops >&2; exit 3"], timeout=5, check=True)
    assert failed.value.returncode == 3
    assert failed.value.stderr == b"oops\n"
    assert failed.value.result.returncode == 3
    assert failed.value.cmd == ("sh", "-c", "echo oops >&2; exit 3")
    with pytest.raises(CommandTimeout) as timed_out:
        await run_command(["sleep", "5"], timeout=0.3, check=True)
    assert isinstance(timed_out.value, TimeoutError)
    assert timed_out.value.result.timed_out
    ok = await run_command(["true"], timeout=5, check=True)
    assert ok.returncode == 0


@pytest.mark.gen_test
async def test_bad_arguments_name_the_fix() -> None:
    with pytest.raises(TypeError, match="shell=True"):
        await run_command("ls -l", timeout=5)
    with pytest.raises(TypeError, match="drop shell=True"):
        await run_command(["ls"], timeout=5, shell=True)
    with pytest.raises(ValueError, match="timeout"):
        await run_command(["true"], timeout=0)
    with pytest.raises(ValueError, match="empty"):
        await run_command([], timeout=1)
    with pytest.raises(CommandError, match="cwd"):
        await run_command(["true"], timeout=1, cwd="/nonexistent-dir-xyz")
    with pytest.raises(TypeError, match=r"run_command\(\) missing"):
        await run_command(["true"])  # type: ignore[call-overload]


# --- safety: argv only -----------------------------------------------------------------

METACHAR_ARGS = ["; touch {c}", "$(touch {c})", "`touch {c}`", "x\ntouch {c}", "| touch {c}"]


@pytest.mark.gen_test
async def test_shell_metacharacters_stay_literal(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    args = [a.format(c=canary) for a in METACHAR_ARGS]
    result = await run_command(["printf", "%s\\n", *args], timeout=5, text=True)
    assert result.stdout == "".join(a + "\n" for a in args)
    done = asyncio.Event()
    Subprocess(lambda *_: done.set(), timeout=5, args=["echo", *args]).start()
    await done.wait()
    assert not canary.exists()


@pytest.mark.gen_test
async def test_shell_only_when_asked_by_name(tmp_path: Path) -> None:
    result = await run_command("echo a | tr a b", timeout=5, shell=True)
    assert result.stdout == b"b\n"
    assert result.args == ("/bin/sh", "-c", "echo a | tr a b")


# --- safety: process group, TERM then KILL, reaping -----------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_timeout_kills_whole_group_within_two_seconds() -> None:
    started = time.monotonic()
    result = await run_command(["sh", "-c", "sleep 30 & sleep 30"], timeout=1)
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert elapsed < 2.0
    assert group_members(result.pid) == []
    assert my_zombies() == []


@pytest.mark.gen_test(timeout=10)
async def test_term_ignoring_child_is_killed_after_grace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hybrid.general")
    started = time.monotonic()
    result = await run_command(
        ["sh", "-c", "trap '' TERM; sleep 30 & sleep 30"], timeout=0.5, kill_grace=0.5
    )
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL
    assert 0.9 < elapsed < 2.5
    assert group_members(result.pid) == []
    assert "ignored SIGTERM" in caplog.text


@pytest.mark.gen_test(timeout=10)
async def test_background_leftovers_are_killed_when_the_command_exits() -> None:
    """``cmd &`` holding stdout must neither hang the call nor survive it (CPython 119710)."""
    started = time.monotonic()
    result = await run_command(["sh", "-c", "sleep 30 & echo $!"], timeout=10, text=True)
    assert time.monotonic() - started < 2.0
    assert result.returncode == 0 and not result.timed_out
    await until(lambda: not alive(int(result.stdout)), timeout=3, interval=0.02)
    assert group_members(result.pid) == []


@pytest.mark.gen_test(timeout=10)
async def test_cancelling_the_caller_kills_the_command() -> None:
    task = asyncio.ensure_future(run_command(["sh", "-c", "sleep 30 & sleep 30"], timeout=30))
    await until(lambda: running_commands() != [], timeout=3, interval=0.02)
    pid = running_commands()[0][0]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(
        lambda: group_members(pid) == [] and running_commands() == [], timeout=3, interval=0.02
    )


# --- safety: output caps ----------------------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_yes_on_both_pipes_is_capped_without_deadlock() -> None:
    started = time.monotonic()
    result = await run_command(["sh", "-c", "yes out & yes err >&2"], timeout=1, max_output=100_000)
    assert time.monotonic() - started < 3.0
    assert result.timed_out
    assert len(result.stdout) == len(result.stderr) == 100_000
    assert result.stdout_truncated and result.stderr_truncated
    assert result.stdout.startswith(b"out\nout\n") and result.stderr.startswith(b"err\n")


@pytest.mark.gen_test
async def test_output_under_the_cap_is_complete_and_not_flagged() -> None:
    result = await run_command(["head", "-c", "300000", "/dev/zero"], timeout=5)
    assert len(result.stdout) == 300_000
    assert not result.stdout_truncated and not result.stderr_truncated
    capped = await run_command(["head", "-c", "300000", "/dev/zero"], timeout=5, max_output=10)
    assert capped.returncode == 0 and capped.stdout == b"\0" * 10 and capped.stdout_truncated


# --- safety: environment ---------------------------------------------------------------


@pytest.mark.gen_test
async def test_environment_is_scrubbed_unless_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "SECRET_KEY": "s3cret",
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "HYBRID_PORTS": "8001",
        "DB_PASSWORD": "hunter2",
        "DATABASE_URL": "mysql://u:p@h/d",
        "AWS_SECRET_ACCESS_KEY": "aws",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C")
    result = await run_command(["env"], timeout=5, text=True)
    child = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert not set(secrets) & set(child)
    assert "s3cret" not in result.stdout and "hunter2" not in result.stdout
    assert child["PATH"] and child["LC_ALL"] == "C"
    explicit = await run_command(["env"], timeout=5, text=True, env={"SECRET_KEY": "given"})
    assert "SECRET_KEY=given\n" in explicit.stdout
    assert "PATH=" in explicit.stdout  # env= adds to the safe base


# --- safety: resource limits and user ---------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_cpu_loop_is_stopped_by_cpu_seconds() -> None:
    result = await run_command(
        ["sh", "-c", "while :; do :; done"], timeout=8, limits=Limits(cpu_seconds=1)
    )
    assert not result.timed_out
    assert result.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    assert result.duration < 5


@pytest.mark.gen_test(timeout=10)
async def test_malloc_bomb_is_stopped_by_address_space() -> None:
    bomb = "x = []\nwhile True: x.append(bytearray(16 << 20))"
    result = await run_command([PY, "-c", bomb], timeout=8, limits=Limits(address_space=512 << 20))
    assert not result.timed_out
    assert result.returncode != 0
    assert b"MemoryError" in result.stderr


@pytest.mark.gen_test(timeout=10)
async def test_fd_bomb_is_stopped_by_open_files() -> None:
    bomb = "import os\nfds = [os.open('/dev/null', os.O_RDONLY) for _ in range(100000)]"
    result = await run_command([PY, "-c", bomb], timeout=8, limits=Limits(open_files=64))
    assert result.returncode != 0
    assert b"Too many open files" in result.stderr
    shown = await run_command(["sh", "-c", "ulimit -n"], timeout=5, limits=Limits(open_files=64))
    assert shown.stdout == b"64\n"


@pytest.mark.gen_test
async def test_limits_wrapper_keeps_pid_status_and_not_found() -> None:
    result = await run_command(
        ["sh", "-c", "echo $$; exit 7"], timeout=5, limits=Limits(cpu_seconds=5), text=True
    )
    assert result.returncode == 7
    assert int(result.stdout) == result.pid  # the wrapper exec'd into the command
    with pytest.raises(CommandNotFound):
        await run_command(["no-such-cmd-xyz"], timeout=5, limits=Limits(open_files=10))
    with pytest.raises(ValueError, match="cpu_seconds"):
        Limits(cpu_seconds=-1)


@pytest.mark.gen_test
async def test_run_as_another_user() -> None:
    if os.geteuid() == 0:
        result = await run_command(["id", "-u"], timeout=5, user=65534, group=65534)
        assert result.stdout == b"65534\n"
    else:  # an unprivileged worker can only run commands as itself
        result = await run_command(["id", "-u"], timeout=5, user=os.getuid())
        assert result.stdout == f"{os.getuid()}\n".encode()


# --- safety: per-worker concurrency -----------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_fifty_runs_with_limit_four_never_exceed_four(tmp_path: Path) -> None:
    set_max_concurrent(4)
    script = 'touch "$1/$$"; ls "$1" | wc -l; sleep 0.05; rm "$1/$$"'
    results = await asyncio.gather(
        *(run_command(["sh", "-c", script, "sh", str(tmp_path)], timeout=10) for _ in range(50))
    )
    seen = [int(r.stdout) for r in results]
    assert all(r.returncode == 0 for r in results)
    assert max(seen) <= 4
    assert max(seen) >= 2  # they did run in parallel, up to the limit


@pytest.mark.gen_test(timeout=10)
async def test_queue_timeout_raises_busy() -> None:
    set_max_concurrent(1)
    first = asyncio.ensure_future(run_command(["sleep", "0.5"], timeout=5))
    await until(running_commands, timeout=3, interval=0.01)  # it holds the one slot
    with pytest.raises(CommandBusy, match="set_max_concurrent"):
        await run_command(["true"], timeout=5, queue_timeout=0.1)
    queued = await run_command(["true"], timeout=5)  # without queue_timeout it waits
    assert queued.returncode == 0
    assert (await first).returncode == 0
    with pytest.raises(ValueError):
        set_max_concurrent(0)


# --- safety: 1,000 runs ---------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_thousand_runs_leave_no_zombie_and_no_fd() -> None:
    await asyncio.gather(*(run_command(["true"], timeout=5) for _ in range(20)))
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(10):
        results = await asyncio.gather(*(run_command(["true"], timeout=5) for _ in range(100)))
        assert all(r.returncode == 0 for r in results)
    assert my_zombies() == []
    assert len(os.listdir("/proc/self/fd")) == fds_before


# --- loop health ------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_loop_stays_responsive_while_200_commands_run() -> None:
    """A loose bound for CI; ``scripts/bench/`` measures the 10 ms p99 target."""
    set_max_concurrent(200)
    lags: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - before - 0.005)

    probing = asyncio.ensure_future(probe())
    results = await asyncio.gather(*(run_command(["sleep", "0.5"], timeout=10) for _ in range(200)))
    stop.set()
    await probing
    assert all(r.returncode == 0 for r in results)
    lags.sort()
    p99 = lags[int(len(lags) * 0.99)]
    assert p99 < 0.1, f"loop lag p99 {p99 * 1000:.0f} ms"


#: Runs in a fresh interpreter per loop: 50 commands at once, then what they left behind.
CONCURRENT = """
import asyncio, json, mmap, os, resource, signal, sys, threading
import uvloop
from hybrid.process import run_command
from hybrid.process.gate import Gate, install_command_gate

def refuse(*args, **kwargs):
    raise AssertionError("asyncio's subprocess support was used")

asyncio.create_subprocess_exec = refuse

def sigchld_caught():
    caught = next(l for l in open("/proc/self/status") if l.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGCHLD - 1)))

# A fork marks every page of the worker copy-on-write: the worker's next write to each one
# faults. vfork (Popen's way) shares the memory until exec and marks nothing.
memory = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
memory.madvise(mmap.MADV_NOHUGEPAGE)

def write_faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for offset in range(0, len(memory), mmap.PAGESIZE):
        memory[offset] = (memory[offset] + 1) & 0xFF
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

async def main():
    install_command_gate(Gate(50))
    out = {"loop": type(asyncio.get_running_loop()).__module__}
    write_faults()
    await run_command(["true"], timeout=5)
    out["pages"] = [write_faults(), len(memory) // mmap.PAGESIZE]
    before = threading.active_count()
    running = [
        asyncio.ensure_future(run_command(["sleep", "0.5"], timeout=10)) for _ in range(50)
    ]
    await asyncio.sleep(0.3)
    out["threads"] = [before, threading.active_count()]
    out["returncodes"] = sorted({r.returncode for r in await asyncio.gather(*running)})
    result = await run_command(["id", "-u"], timeout=5, user=os.getuid(), text=True)
    out["user"] = result.stdout.strip()
    out["sigchld"] = [sigchld_caught(), signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL]
    out["zombies"] = os.popen(f"ps -o stat= --ppid {os.getpid()}").read().count("Z")
    print(json.dumps(out))

factory = uvloop.new_event_loop if sys.argv[1] == "uvloop" else asyncio.new_event_loop
with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_commands_spawn_without_a_thread_signal_handler_or_transport_on_both_loops(
    loop: str,
) -> None:
    """Popen (vfork) and a pidfd on either loop: libuv's spawn, a fork of the worker, would
    leave the worker's pages copy-on-write; a waitpid thread per child would show in the
    thread count; asyncio's subprocess support is refused outright; no SIGCHLD handler at
    all; user= works on uvloop too."""
    import json

    done = subprocess.run([PY, "-c", CONCURRENT, loop], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["loop"].startswith(loop)
    faulted, pages = out["pages"]
    assert faulted < pages // 4, f"{faulted} of {pages} pages copied on write: a fork"
    before, during = out["threads"]
    assert during == before
    assert out["returncodes"] == [0]
    assert out["user"] == str(os.getuid())
    assert out["sigchld"] == [False, True]
    assert out["zombies"] == 0


@pytest.mark.gen_test
async def test_spawn_errors_are_told_as_before(tmp_path: Path) -> None:
    """Popen's own errors, raised as it execs: a missing interpreter and a file that is
    not a program."""
    script = tmp_path / "script"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(CommandNotFound, match="install it or pass its full path"):
        await run_command([str(script)], timeout=5)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not a program")
    garbage.chmod(0o755)
    with pytest.raises(CommandError, match="Exec format error.*check permissions") as info:
        await run_command([str(garbage)], timeout=5)
    assert info.value.cmd == (str(garbage),)
    assert not isinstance(info.value, CommandNotFound)
    assert my_zombies() == []


@pytest.mark.gen_test(timeout=10)
async def test_a_child_whose_pidfd_cannot_be_opened_is_polled_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert pidfd_available()  # decided before pidfd_open starts failing

    def no_more_fds(pid: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "pidfd_open", no_more_fds)
    result = await run_command(["sh", "-c", "sleep 0.1; exit 4"], timeout=5)
    assert result.returncode == 4
    result = await run_command(["sleep", "5"], timeout=0.3)
    assert result.timed_out and result.returncode == -signal.SIGTERM


def test_pidfd_available_says_once_why_not(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def enosys(pid: int) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", enosys)
    with caplog.at_level(logging.DEBUG, logger="hybrid.general"):
        assert pidfd_available.__wrapped__() is False
    assert "os.pidfd_open failed: [Errno 38] Function not implemented" in caplog.text
    assert "asyncio's subprocess support" in caplog.text
    monkeypatch.delattr(os, "pidfd_open")
    assert pidfd_available.__wrapped__() is False


@pytest.mark.gen_test(timeout=10)
async def test_without_pidfds_asyncio_subprocess_support_runs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hybrid.process.runner, "pidfd_available", lambda: False)
    spawned: list[tuple[Any, ...]] = []
    original = asyncio.create_subprocess_exec

    async def recording(*args: Any, **kwargs: Any) -> Any:
        spawned.append(args)
        return await original(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    result = await run_command(["sh", "-c", "echo out; exit 2"], timeout=5, text=True)
    assert (result.returncode, result.stdout) == (2, "out\n")
    result = await run_command(["id", "-u"], timeout=5, user=os.getuid(), text=True)
    assert result.stdout.strip() == str(os.getuid())
    result = await run_command(["sleep", "5"], timeout=0.3)
    assert result.timed_out and result.returncode == -signal.SIGTERM
    assert [args[0] for args in spawned] == ["sh", "id", "sleep"]


WITHOUT_PIDFDS_ON_UVLOOP = """
import asyncio, os, uvloop
import hybrid.process.runner
from hybrid.process import CommandError, run_command

hybrid.process.runner.pidfd_available = lambda: False

async def main():
    print((await run_command(["true"], timeout=5)).returncode)
    try:
        await run_command(["true"], timeout=5, user=os.getuid())
    except CommandError as exc:
        print(exc)

uvloop.run(main())
"""


def test_without_pidfds_uvloop_says_it_cannot_switch_users() -> None:
    done = subprocess.run(
        [PY, "-c", WITHOUT_PIDFDS_ON_UVLOOP], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.splitlines() == [
        "0",
        "cannot start true with user=: this system has no pidfds (Linux 5.3+), and uvloop's "
        "own spawn cannot start a command as another user; serve with --loop asyncio",
    ], done.stderr


# --- shutdown ---------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_terminate_all_waits_then_kills_and_closes_the_gate() -> None:
    quick = asyncio.ensure_future(run_command(["sleep", "0.2"], timeout=10))
    slow = [asyncio.ensure_future(run_command(["sleep", "30"], timeout=30)) for _ in range(2)]
    stubborn = asyncio.ensure_future(
        run_command(["sh", "-c", "trap '' TERM; sleep 30"], timeout=30)
    )
    await until(lambda: len(running_commands()) == 4, timeout=3, interval=0.02)
    started = time.monotonic()
    killed = await terminate_all(timeout=0.5, kill_grace=0.3)
    assert killed == 3
    assert time.monotonic() - started < 2.5
    assert (await quick).returncode == 0
    assert [(await t).returncode for t in slow] == [-signal.SIGTERM] * 2
    assert (await stubborn).returncode == -signal.SIGKILL
    with pytest.raises(CommandBusy, match="shutting down"):
        await run_command(["true"], timeout=5)


@pytest.mark.gen_test
async def test_terminate_all_with_nothing_running() -> None:
    assert await terminate_all(timeout=1) == 0


# --- no global surprises ------------------------------------------------------------------


def test_no_sigchld_handler_after_many_runs_on_fresh_loops() -> None:
    """Plain asyncio loops, one after another, as separate workers/tests would.

    (Not ``asyncio.run``: after a pytest-tornado test it leaves an unclosed loop behind,
    a pytest-tornado/asyncio interplay unrelated to hybrid.)
    """
    for _ in range(3):
        loop = asyncio.new_event_loop()
        try:
            result = loop.run_until_complete(run_command(["true"], timeout=5))
        finally:
            loop.close()
        assert result.returncode == 0
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL


# --- on uvloop (--loop uvloop), in an interpreter of its own ---------------------------

#: Runs in a fresh interpreter: libuv's SIGCHLD handler stays out of the suite's process.
ON_UVLOOP = """
import asyncio, json, os, sys
import uvloop
from hybrid.process import Limits, run_command
from hybrid.process.gate import Gate, install_command_gate

CMDLINE = ["sh", "-c", "tr '\\\\0' ' ' </proc/$$/cmdline"]

async def main():
    install_command_gate(Gate(4))
    out = {"loop": type(asyncio.get_running_loop()).__module__}
    result = await run_command(CMDLINE, timeout=10, text=True)
    out["argv"] = result.stdout
    out["returncode"] = result.returncode
    result = await run_command(["sh", "-c", "echo $PATH >&2; exit 3"], timeout=10, text=True)
    out["failed"] = [result.returncode, result.stderr.strip()]
    result = await run_command(["cat"], input=b"piped", timeout=10, limits=Limits(open_files=64))
    out["limited"] = result.stdout.decode()
    result = await run_command(["sleep", "5"], timeout=0.3)
    out["timed_out"] = result.timed_out
    result = await run_command(["id", "-u"], timeout=5, user=os.getuid(), text=True)
    out["user"] = result.stdout.strip()
    out["zombies"] = os.popen(f"ps -o stat= --ppid {os.getpid()}").read().count("Z")
    print(json.dumps(out))

with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(main())
"""


def test_commands_on_uvloop_run_as_on_asyncio() -> None:
    import json

    done = subprocess.run([PY, "-c", ON_UVLOOP], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["loop"].startswith("uvloop")
    # argv[0] as written, not the resolved path uvloop would put there
    assert out["argv"].split()[0] == "sh"
    assert out["returncode"] == 0
    assert out["failed"][0] == 3 and "/bin" in out["failed"][1]  # the scrubbed PATH
    assert out["limited"] == "piped"
    assert out["timed_out"] is True
    assert out["user"] == str(os.getuid())  # user= works on uvloop too
    assert out["zombies"] == 0


def test_public_names_are_exported() -> None:
    assert sorted(hybrid.process.__all__, key=lambda n: (not n.isupper(), n)) == [
        *hybrid.process.__all__
    ]
    for name in hybrid.process.__all__:
        assert getattr(hybrid.process, name) is not None
    public = {n for n in dir(hybrid.process) if not n.startswith("_")}
    submodules = {
        "allow",
        "argv",
        "callback",
        "child",
        "commands",
        "errors",
        "gate",
        "handlers",
        "limits",
        "pipes",
        "result",
        "runner",
        "annotations",
    }
    assert public - submodules == set(hybrid.process.__all__)
