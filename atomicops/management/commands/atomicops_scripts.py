"""manage.py atomicops_scripts: list the registered scripts (optionally their cache state)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from atomicops.engine import connection
from atomicops.exceptions import AtomicOpsError
from atomicops.ops.flushcheck import primaries, script_exists
from atomicops.scripts.registry import registry

from ._output import failure, table


class Command(BaseCommand):
    help = (
        "List every registered script: name, SHA1, read-only or not, app, KEYS and ARGV. "
        "With --server, also whether each is cached on the server (SCRIPT EXISTS on every "
        "primary); without it nothing is sent to Redis."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--server", action="store_true", help="Ask the server which scripts it has cached."
        )
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        scripts = list(registry)
        cached: list[bool | None] = [None] * len(scripts)
        if options["server"]:
            shas = [script.sha for script in scripts]
            try:
                per_server = [script_exists(s, shas) for s in primaries(connection.get_client())]
            except AtomicOpsError as exc:
                raise CommandError(
                    failure(f"asking {connection.describe_source()} for its scripts", exc)
                ) from exc
            cached = [all(found) for found in zip(*per_server, strict=True)] or cached
        if options["json"]:
            entries = []
            for script, loaded in zip(scripts, cached, strict=True):
                entry = {
                    "name": script.name,
                    "sha": script.sha,
                    "readonly": script.readonly,
                    "app": script.app,
                    "origin": script.origin,
                    "keys": list(script.keys),
                    "args": list(script.args),
                    "probe": None if script.probe is None else list(script.probe),
                    "description": script.description,
                }
                if options["server"]:
                    entry["cached"] = loaded
                entries.append(entry)
            self.stdout.write(json.dumps(entries, indent=2))
            return
        headers = ["NAME", "SHA", "READONLY", "APP", "KEYS", "ARGV"]
        rows: list[list[Any]] = [
            [s.name, s.sha, s.readonly, s.app, ",".join(s.keys) or "-", ",".join(s.args) or "-"]
            for s in scripts
        ]
        if options["server"]:
            headers.append("CACHED")
            for row, loaded in zip(rows, cached, strict=True):
                row.append(loaded)
        self.stdout.write(table(headers, rows))
