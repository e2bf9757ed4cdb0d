"""manage.py atomicops_load: load every registered script (for deploy hooks)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from atomicops.engine import connection
from atomicops.exceptions import AtomicOpsError
from atomicops.scripts.registry import registry

from ._output import failure, table


class Command(BaseCommand):
    help = (
        "SCRIPT LOAD every registered script onto the configured server (every primary of a "
        "cluster), so the first calls after a deploy, restart or failover hit EVALSHA. Exits "
        "non-zero when a script does not compile or Redis cannot be reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print name -> SHA as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            loaded = registry.load_all()
        except AtomicOpsError as exc:
            raise CommandError(
                failure(f"loading the scripts onto {connection.describe_source()}", exc)
            ) from exc
        if options["json"]:
            self.stdout.write(json.dumps(loaded, indent=2))
            return
        if options["verbosity"] >= 2:
            self.stdout.write(table(["NAME", "SHA"], sorted(loaded.items())))
        if options["verbosity"] >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Loaded {len(loaded)} scripts onto {connection.describe_source()}."
                )
            )
