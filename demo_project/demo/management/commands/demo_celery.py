from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from atomicops.celery import parse_rate
from atomicops.conf import get_settings
from atomicops.exceptions import InvalidInput
from demo_project.demo import celery_rate


class Command(BaseCommand):
    help = (
        "Four Celery worker nodes, one rate: the same tasks under atomicops' "
        "global_rate_limit (held to the rate across all nodes) and Celery's rate_limit "
        "(each node on its own). Prints the starts per second and per node."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--workers", type=int, default=4)
        parser.add_argument("--tasks", type=int, default=40, help="per side")
        parser.add_argument("--rate", default="10/s", help="a Celery rate: 10/s, 100/m")

    def handle(self, *args: Any, **options: Any) -> None:
        workers, tasks, rate = options["workers"], options["tasks"], options["rate"]
        if not 1 <= workers <= 8:
            raise CommandError("--workers must be from 1 to 8")
        if not 1 <= tasks <= 1000:
            raise CommandError("--tasks must be from 1 to 1000")
        try:
            parse_rate(rate, task="demo_celery")
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        url = get_settings()["URL"]
        if not url:
            raise CommandError("demo_celery needs ATOMICOPS['URL'] (REDIS_URL): the broker")
        try:
            sides = celery_rate.run(url, workers, tasks, rate, say=self.stdout.write)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        for side in sides:
            self.stdout.write("")
            bodies = celery_rate.most_in_one_second(side.bodies)
            note = (
                f" (by the bodies' own clock: {bodies}, each begins a moment after it is admitted)"
                if bodies != side.most_in_one_second
                else ""
            )
            self.stdout.write(
                f"{side.label}: at most {side.most_in_one_second} starts in any one second{note}"
            )
            for second, nodes in enumerate(side.per_second()):
                by_node = ", ".join(f"{node} {n}" for node, n in sorted(nodes.items()))
                self.stdout.write(f"  second {second}: {sum(nodes.values()):3d}  ({by_node})")
