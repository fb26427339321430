"""``manage.py groupsend GROUP TEXT``: a group message from outside any worker."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

import hybrid


class Command(BaseCommand):
    help = "Send {'type': 'chat.message', 'text': TEXT} to GROUP"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group")
        parser.add_argument("text")

    def handle(self, *args: Any, **options: Any) -> None:
        hybrid.group_send_sync(
            options["group"], {"type": "chat.message", "text": options["text"], "via": "command"}
        )
        self.stdout.write(f"sent with {hybrid.groups.backend().name}")
