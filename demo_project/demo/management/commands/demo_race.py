from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from atomicops import AtomicOpsError
from atomicops.engine import connection
from demo_project.demo import race

BAR = 40
LABELS = {"pipeline": "GET then SET (pipeline)", "lua": "Lua script (demo_incr)"}


class Command(BaseCommand):
    help = (
        "N worker processes increment one counter: GET then SET in a pipeline, then the same "
        "read-modify-write in a Lua script. Ends with the lost updates of each."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--workers", type=int, default=8)
        parser.add_argument("--increments", type=int, default=500, help="per worker")

    def handle(self, *args: Any, **options: Any) -> None:
        workers, increments = options["workers"], options["increments"]
        if not 1 <= workers <= 64:
            raise CommandError("--workers must be from 1 to 64")
        if not 1 <= increments <= 1_000_000:
            raise CommandError("--increments must be from 1 to 1000000")
        self.stdout.write(
            f"{workers} workers x {increments} increments each on {connection.describe_source()}"
        )
        tty = getattr(self.stdout, "isatty", lambda: False)() or sys.stdout.isatty()
        shown: dict[str, int] = {}

        def progress(side: str, done: int, total: int) -> None:
            filled = BAR * done // total
            line = f"{LABELS[side]:<26} [{'#' * filled}{'.' * (BAR - filled)}] {done}/{total}"
            if tty:
                self.stdout.write("\r" + line, ending="")
                if done == total:
                    self.stdout.write("")
            elif filled // 10 > shown.get(side, -1):  # not a terminal: a line per quarter
                shown[side] = filled // 10
                self.stdout.write(line)

        try:
            results = race.run(workers, increments, progress)
        except AtomicOpsError as exc:
            raise CommandError(f"the race stopped: {exc}") from exc
        self.stdout.write("")
        for result in results:
            verdict = (
                "0 updates lost"
                if result.lost == 0
                else f"{result.lost} updates lost ({100 * result.lost / result.expected:.0f}%)"
            )
            self.stdout.write(
                f"{LABELS[result.name]:<26} counter = {result.final}, expected {result.expected}: "
                f"{verdict}  [{result.seconds:.2f}s]"
            )
