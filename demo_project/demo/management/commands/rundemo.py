from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from atomicops.engine import connection
from demo_project.demo.seed import ensure_demo_data
from demo_project.demo.users import USERNAME, ensure_demo_user
from demo_project.private_files import UnsafeSecretFile


class Command(BaseCommand):
    help = "Migrate, create the demo superuser and demo content, and serve the demo on a port."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("port", nargs="?", default="8000", help="port on 127.0.0.1")
        parser.add_argument("--reload", action="store_true", help="restart on code changes")

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        if not str(port).isdigit() or not 0 < int(port) < 65536:
            raise CommandError(f"port must be a number from 1 to 65535, got {port!r}")
        # With --reload, runserver re-executes this command in a child (RUN_MAIN=true):
        # the set-up and the banner are the parent's job.
        if os.environ.get("RUN_MAIN") != "true":
            self.prepare(int(port))
        # With DEBUG off runserver serves no static files unless told to: the demo's pages
        # need their CSS and script, and it only ever listens on 127.0.0.1.
        call_command(
            "runserver",
            f"127.0.0.1:{port}",
            use_reloader=options["reload"],
            skip_checks=False,
            insecure_serving=not settings.DEBUG,
        )

    def prepare(self, port: int) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        created = ensure_demo_data()
        lines = [
            "",
            f"atomicops demo on http://127.0.0.1:{port}/",
            f"  Redis:  {connection.describe_source()}"
            + (
                " (embedded valkey-server, gone when the demo stops)"
                if os.environ.get("ATOMICOPS_EMBEDDED")
                else ""
            ),
            f"  Data:   {settings.DATABASES['default']['NAME']}"
            + (" (demo content created)" if created else ""),
        ]
        if settings.DEBUG:
            try:
                password, _ = ensure_demo_user()
            except UnsafeSecretFile as exc:
                raise CommandError(f"the demo password file is not safe to use: {exc}") from exc
            lines.append(
                f"  Admin:  http://127.0.0.1:{port}/admin/  user {USERNAME!r}, password {password}"
            )
        else:
            lines.append(
                "  Admin:  DEBUG is off, so no demo superuser was created "
                "(bin/demo sets DJANGO_DEBUG=1; or run manage.py demo_user --force)"
            )
        lines += [
            "  Tour:   .venv/bin/python manage.py demo_tour   (the seed article, live)",
            "  Race:   .venv/bin/python manage.py demo_race   (pipeline vs Lua, lost updates)",
            "",
        ]
        self.stdout.write("\n".join(lines))
