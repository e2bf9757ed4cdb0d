from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from atomicops import AtomicOpsError
from atomicops.engine import connection
from demo_project.demo import tour


class Command(BaseCommand):
    help = (
        "Print the seed article's examples, computed live: the counter that stops at 10, "
        "KEYS/ARGV, Lua return conversions, SCRIPT LOAD/EVALSHA/NOSCRIPT with atomicops "
        "recovering, compare-and-set, the rate limiter's twelve requests and EVAL_RO."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--flush",
            action="store_true",
            default=None,
            help="run SCRIPT FLUSH to show the NOSCRIPT recovery (default: only on the "
            "demo's embedded server)",
        )
        parser.add_argument("--no-flush", dest="flush", action="store_false")

    def handle(self, *args: Any, **options: Any) -> None:
        flush = options["flush"]
        if flush is None:
            # Emptying the script cache of a server someone else uses is not the tour's call.
            flush = os.environ.get("ATOMICOPS_EMBEDDED") == "1"
        client = connection.get_client()
        self.stdout.write(f"Server: {tour.server_name(client)} at {connection.describe_source()}")
        try:
            tour.run(self.stdout.write, flush=flush)
        except AtomicOpsError as exc:
            raise CommandError(f"the tour stopped: {exc}") from exc
