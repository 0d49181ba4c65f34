"""manage.py ensure_admin: create the first admin from ADMIN_USERNAME / ADMIN_PASSWORD, or
say exactly how to make one."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first superuser from ADMIN_USERNAME and ADMIN_PASSWORD if none exists."

    def handle(self, *args: object, **options: object) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        username = os.environ.get("ADMIN_USERNAME", "")
        password = os.environ.get("ADMIN_PASSWORD", "")
        if not (username and password):
            self.stdout.write(
                "No admin user yet. Create one with:\n"
                "  ADMIN_USERNAME=admin ADMIN_PASSWORD='…' bin/serve\n"
                "or: .venv/bin/python manage.py createsuperuser"
            )
            return
        users.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"Created the admin user “{username}”."))
