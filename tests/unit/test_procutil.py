"""hybrid.procutil: the one reader of /proc/PID/stat, and what is built on it."""

from __future__ import annotations

import os
import subprocess
import time

from hybrid.procutil import children_of, group_alive, is_running


def test_group_alive_sees_live_members_not_zombies() -> None:
    leader = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert group_alive(leader.pid) and is_running(leader.pid)
        assert leader.pid in children_of(os.getpid())
        leader.kill()
        deadline = time.monotonic() + 10
        while is_running(leader.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        # A zombie until reaped: killpg(0) still succeeds, the group has no live member.
        assert not is_running(leader.pid)
        assert not group_alive(leader.pid)
        assert leader.pid not in children_of(os.getpid())
    finally:
        leader.kill()
        leader.wait()
    assert not group_alive(leader.pid)
