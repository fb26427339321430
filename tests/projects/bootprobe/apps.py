import os

from django.apps import AppConfig


class BootProbeConfig(AppConfig):
    """Appends the pid of every process that runs django.setup() to $BOOTPROBE_FILE."""

    name = "bootprobe"

    def ready(self) -> None:
        with open(os.environ["BOOTPROBE_FILE"], "a") as f:
            f.write(f"{os.getpid()}\n")
