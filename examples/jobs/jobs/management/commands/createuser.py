"""``manage.py createuser alice bob``: plain (not staff) users for the jobs example.

The password comes from ``$JOBS_PASSWORD``, or is asked for. Users that exist already are
left as they are.
"""

import getpass
import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create job users (password from $JOBS_PASSWORD, or asked for)."

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="+")

    def handle(self, *args, usernames, **options):
        users = get_user_model()
        for name in usernames:
            if users.objects.filter(username=name).exists():
                self.stdout.write(f"{name}: exists already, left as it is")
                continue
            password = os.environ.get("JOBS_PASSWORD") or getpass.getpass(f"password for {name}: ")
            users.objects.create_user(name, password=password)
            self.stdout.write(f"{name}: created")
