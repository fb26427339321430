import os

from django.apps import AppConfig


class BootCrashConfig(AppConfig):
    name = "bootcrash"

    def ready(self) -> None:
        os._exit(7)
