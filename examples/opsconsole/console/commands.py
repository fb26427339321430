"""What the console may run: nothing else, and no argument a user could bend."""

from pathlib import Path

from hybrid import AllowList, CommandSpec, Limits

DEMO = Path(__file__).resolve().parent / "longjob.sh"

COMMANDS = AllowList(
    [
        CommandSpec("disk", ["df", "-h"], timeout=10, text=True, description="Disk usage"),
        CommandSpec("uptime", ["uptime"], timeout=5, text=True, description="Uptime and load"),
        CommandSpec(
            "ping",
            ["ping", "-c", "4", "-i", "0.5", "127.0.0.1"],
            timeout=10,
            text=True,
            description="Ping localhost",
        ),
        CommandSpec(
            "long",
            ["sh", str(DEMO)],
            timeout=120,
            text=True,
            limits=Limits(cpu_seconds=10),
            description="A long demo job (a line a second for a minute)",
        ),
    ]
)

#: Output kept in the history, per run (the live view shows everything).
MAX_STORED_OUTPUT = 64 * 1024
