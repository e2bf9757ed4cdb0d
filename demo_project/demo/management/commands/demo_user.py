from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demo_project.demo.users import USERNAME, ensure_demo_user, password_file
from demo_project.private_files import UnsafeSecretFile


class Command(BaseCommand):
    help = (
        f"Create (or reset) the demo superuser {USERNAME!r} with a generated password, kept in "
        "DEMO_PASSWORD_FILE. Refuses to run unless DEBUG is on (or --force)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default=USERNAME)
        parser.add_argument(
            "--password", help="use this password instead of the stored or a generated one"
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="run even with DEBUG off (a superuser with a known password is a demo-only thing)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: this looks like a real site, and a superuser with a password "
                "printed on the terminal does not belong there. Pass --force if you mean it."
            )
        try:
            password, created = ensure_demo_user(options["username"], options["password"])
        except UnsafeSecretFile as exc:
            raise CommandError(f"the demo password file is not safe to use: {exc}") from exc
        where = password_file()
        self.stdout.write(
            f"{'Created' if created else 'Updated'} superuser {options['username']!r}; "
            f"password: {password}" + (f" (kept in {where})" if where else "")
        )
