"""Counter and compare-and-set calls per second against three anchors.

1. Raw redis-py ``evalsha`` of the same script on the same connection: what atomicops'
   Python layer (validation, key resolution, registry, result object) costs.
2. The Django ORM way, ``filter(pk=..., n__lt=L).update(n=F("n") + 1)``: one
   conditional UPDATE per call, on SQLite (a file, and ``:memory:``) and on PostgreSQL
   at 127.0.0.1:5432 (database ``test``, user ``postgres``) when it is reachable.
3. Async: ``abounded_incr`` from many concurrent tasks over one ``redis.asyncio``
   pool vs sync ``bounded_incr`` calls one after another.

One redis-server is started for the run; every figure is a median over interleaved
rounds. Run:
    .venv/bin/python benchmarks/bench_counters.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid

from _common import compare, report, setup_django, start_server

N = int(os.environ.get("BENCH_N", "20000"))
N_ORM = int(os.environ.get("BENCH_N_ORM", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
TASKS = int(os.environ.get("BENCH_TASKS", "64"))
BIG = 2**53 - 1  # a limit never reached, so every call applies (like the ORM's UPDATE)
PG = {"NAME": "test", "USER": "postgres", "HOST": "127.0.0.1", "PORT": "5432"}


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(
            dbname=PG["NAME"], user=PG["USER"], host=PG["HOST"], port=PG["PORT"], connect_timeout=2
        ):
            return None
    except Exception as exc:  # any reason means "skip this anchor"
        return f"{type(exc).__name__}: {str(exc).strip()[:120]}"


def setup(redis_url: str, sqlite_path: str, with_pg: bool) -> None:
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path},
        "memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
    if with_pg:
        databases["pg"] = {"ENGINE": "django.db.backends.postgresql", **PG}
    # _common's settings: metrics, spans and the timeline off, as for every anchor (this
    # benchmark configured its own and measured the Prometheus sink as part of each call).
    setup_django(redis_url, DATABASES=databases)


def make_model():
    from django.db import models

    class Tally(models.Model):
        n = models.BigIntegerField(default=0)

        class Meta:
            app_label = "atomicops"
            # A name of its own: the PostgreSQL database may be shared.
            db_table = f"atomicops_bench_tally_{uuid.uuid4().hex[:8]}"

        def __str__(self) -> str:
            return f"tally {self.pk}: {self.n}"

    return Tally


def sync_part(client, Tally, aliases: list[str]) -> dict[str, float]:
    from django.db import connections
    from django.db.models import F

    from atomicops import bounded_incr, compare_and_set, registry

    bsha = registry.get("counter_bounded_incr").sha
    csha = registry.get("cas_set").sha
    client.set("c", "x")
    bounded_incr("k", BIG, client=client)  # loads the scripts
    rates = compare(
        {
            "raw evalsha counter_bounded_incr": lambda: client.evalsha(bsha, 1, "k", BIG, 1, 0),
            "bounded_incr": lambda: bounded_incr("k", BIG, client=client),
            "raw evalsha cas_set": lambda: client.evalsha(csha, 1, "c", "x", 0, "x"),
            "compare_and_set": lambda: compare_and_set("c", "x", "x", client=client),
        },
        N,
        ROUNDS,
    )
    print(f"\n{N} calls x {ROUNDS} interleaved rounds, median, one connection")
    report("bounded_incr vs raw evalsha", rates, "raw evalsha counter_bounded_incr")
    report(
        "compare_and_set vs raw evalsha",
        {k: v for k, v in rates.items() if "cas" in k or "compare" in k},
        "raw evalsha cas_set",
    )

    orm: dict = {"bounded_incr": lambda: bounded_incr("k", BIG, client=client)}
    for alias in aliases:
        with connections[alias].schema_editor() as editor:
            editor.create_model(Tally)
        pk = Tally.objects.using(alias).create(n=0).pk
        qs = Tally.objects.using(alias)

        def orm_update(qs=qs, pk=pk):
            # Autocommit: each UPDATE is its own transaction, as in a view.
            return qs.filter(pk=pk, n__lt=BIG).update(n=F("n") + 1)

        orm[f"ORM conditional UPDATE ({alias})"] = orm_update
    try:
        orm_rates = compare(orm, N_ORM, ROUNDS)
    finally:
        for alias in aliases:
            with connections[alias].schema_editor() as editor:
                editor.delete_model(Tally)
    print(f"\n{N_ORM} calls x {ROUNDS} interleaved rounds, median")
    report("bounded_incr vs the Django ORM way", orm_rates, "bounded_incr")
    return {**rates, **orm_rates}


async def _many_tasks(url: str, calls: int, tasks: int, raw: bool = False) -> float:
    import redis.asyncio

    from atomicops import abounded_incr, registry

    client = redis.asyncio.Redis.from_url(url, max_connections=tasks)
    sha = registry.get("counter_bounded_incr").sha
    per_task = calls // tasks

    async def worker() -> None:
        if raw:
            for _ in range(per_task):
                await client.evalsha(sha, 1, "a", BIG, 1, 0)
        else:
            for _ in range(per_task):
                await abounded_incr("a", BIG, client=client)

    await abounded_incr("a", BIG, client=client)  # load the scripts
    await asyncio.gather(*(worker() for _ in range(tasks)))  # warm: one connection per task
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return per_task * tasks / elapsed


def async_part(url: str, client) -> None:
    from _common import rate

    from atomicops import bounded_incr

    many = f"abounded_incr, {TASKS} concurrent tasks"
    contenders = {
        "sync bounded_incr, one caller": lambda: rate(
            lambda: bounded_incr("s", BIG, client=client), N // 4
        ),
        "abounded_incr, 1 task": lambda: asyncio.run(_many_tasks(url, N // 4, 1)),
        many: lambda: asyncio.run(_many_tasks(url, N, TASKS)),
        f"raw async evalsha, {TASKS} concurrent tasks": lambda: asyncio.run(
            _many_tasks(url, N, TASKS, raw=True)
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(ROUNDS):
        for name, measure in contenders.items():
            results[name].append(measure())
    rates = {name: statistics.median(values) for name, values in results.items()}
    print(f"\n{ROUNDS} interleaved rounds, median; async tasks share one redis.asyncio pool")
    report("async throughput vs sync", rates, "sync bounded_incr, one caller")
    raw_many = rates[f"raw async evalsha, {TASKS} concurrent tasks"]
    print(f"  {many} / raw async evalsha: {rates[many] / raw_many:.3f}")


def main() -> None:
    server = start_server()
    workdir = tempfile.mkdtemp(prefix="atomicops-bench-")
    pg_problem = postgres_reachable()
    try:
        setup(server.url, os.path.join(workdir, "bench.sqlite3"), pg_problem is None)
        import redis

        client = redis.Redis(port=server.port, single_connection_client=True)
        print(f"server {server.name} {server.version()}")
        aliases = ["default", "memory"] + (["pg"] if pg_problem is None else [])
        if pg_problem:
            print(f"PostgreSQL anchor skipped: {pg_problem}")
        sync_part(client, make_model(), aliases)
        async_part(server.url, client)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
