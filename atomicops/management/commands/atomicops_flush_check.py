"""manage.py atomicops_flush_check: prove the scripts survive losing the script cache."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from atomicops.engine import connection
from atomicops.exceptions import AtomicOpsError
from atomicops.ops.flushcheck import flush_check

from ._output import failure, table


class Command(BaseCommand):
    help = (
        "Load every registered script, SCRIPT FLUSH, run each script's probe on scratch keys "
        "and confirm it recovered through the NOSCRIPT fallback. The flush also empties the "
        "script cache of every other application on the same server (use --no-flush there). "
        "Exits non-zero when a script fails or Redis cannot be reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-flush",
            action="store_true",
            help="Do not run SCRIPT FLUSH: only load, probe and check the scripts are cached.",
        )
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        flush = not options["no_flush"]
        try:
            rows = flush_check(flush=flush)
        except AtomicOpsError as exc:
            raise CommandError(
                failure(f"the flush check of {connection.describe_source()}", exc)
            ) from exc
        failed = [row for row in rows if not row.ok]
        if options["json"]:
            report = {
                "server": connection.describe_source(),
                "flushed": flush,
                "ok": not failed,
                "scripts": [row.as_dict() for row in rows],
            }
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(
                table(
                    ["NAME", "SHA", "BEFORE", "AFTER", "RESULT"],
                    [(r.name, r.sha, r.before, r.after, r.result) for r in rows],
                )
            )
            for row in failed:
                self.stdout.write(f"{row.name}: {row.error}")
            if not failed:
                what = "recovered after SCRIPT FLUSH" if flush else "are cached and run"
                self.stdout.write(self.style.SUCCESS(f"All {len(rows)} scripts {what}."))
        if failed:
            names = ", ".join(row.name for row in failed)
            raise CommandError(f"{len(failed)} of {len(rows)} scripts failed: {names}")
