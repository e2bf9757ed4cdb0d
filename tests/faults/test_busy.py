"""A fresh client while another client's Lua script keeps the server BUSY.

The server runs with ``busy-reply-threshold`` lowered to 100 ms, and a raw connection
runs a script that spins until ``SCRIPT KILL``. A client's first call carries ``SCRIPT
LOAD`` of every registered script, and every one of those loads is answered ``-BUSY``.
The call must raise :class:`ScriptBusyError`, write at most one log line (not one per
script), and must not leave the process believing the scripts are loaded: after the
busy script ends, the next call on the same client works without an error and without
a NOSCRIPT fallback (its batch carries the loads again).
"""

from __future__ import annotations

import logging

import pytest

from atomicops import ScriptBusyError, registry
from tests.faults.catalogue import BY_NAME, WHO, Clients, describe, run_case
from tests.faults.servers import BusyScript, probe, raw_command

pytestmark = [pytest.mark.faults, pytest.mark.real]

PRIMITIVE = BY_NAME["bounded_incr"]


def fallbacks() -> int:
    return sum(script.stats["fallbacks"] for script in registry)


async def test_busy_server(kind, make_server, settings, caplog, figures):
    server = make_server(kind, "--busy-reply-threshold", "100")
    # Each refusal itself, as a caller meets it with retries off (riding through
    # them with RETRY_DEADLINE_MS is tests/faults/test_retry.py's).
    settings.ATOMICOPS = {"URL": server.url, "LOAD_ON_STARTUP": False, "RETRY_DEADLINE_MS": 0}
    caplog.set_level(logging.DEBUG, logger="atomicops")
    warm = Clients(server.port)
    fresh = None
    failures = []
    try:
        for who in WHO:  # clients in use before: the scripts are loaded through them
            for mode in ("sync", "async"):
                await run_case(
                    PRIMITIVE, f"faults:busy:warmup:{who}:{mode}", warm.pick(who, mode), mode
                )
        # Empty the script cache: the fresh clients' loads are what the server must get.
        raw_command(server.port, "SCRIPT", "FLUSH")
        # atomicops builds its own clients anew when the settings change: fresh ones.
        # Each refusal itself, as a caller meets it with retries off (riding through
        # them with RETRY_DEADLINE_MS is tests/faults/test_retry.py's).
        settings.ATOMICOPS = {"URL": server.url, "LOAD_ON_STARTUP": False, "RETRY_DEADLINE_MS": 0}
        busy = BusyScript(server.port)
        busy.start()

        fresh = Clients(server.port)
        cases = [("fresh", who, mode) for who in WHO for mode in ("sync", "async")]
        cases += [("warm", "user", mode) for mode in ("sync", "async")]
        log_lines = {}
        outcomes = {}
        for age, who, mode in cases:
            clients = fresh if age == "fresh" else warm
            caplog.clear()
            key = f"faults:busy:{age}:{who}:{mode}"
            outcomes[age, who, mode] = await run_case(PRIMITIVE, key, clients.pick(who, mode), mode)
            log_lines[age, who, mode] = [r.getMessage() for r in caplog.records]
        still_busy = probe(server.port).startswith(b"-BUSY")
        killed = busy.kill()
        server.wait_pong()

        # The fresh clients go first: the server's script cache is still empty then, so a
        # client that took the refused loads as done would need a NOSCRIPT fallback.
        before = fallbacks()
        for (age, who, mode), outcome in outcomes.items():
            label = f"{PRIMITIVE.name} {mode} {who} ({age} client)"
            if not isinstance(outcome, ScriptBusyError):
                failures.append(f"{label} while BUSY {describe(outcome)}")
            if len(log_lines[age, who, mode]) > 1:
                failures.append(
                    f"{label} while BUSY logged {len(log_lines[age, who, mode])} lines, e.g. "
                    f"{log_lines[age, who, mode][:2]}"
                )
            clients = fresh if age == "fresh" else warm
            key = f"faults:busy:{age}:{who}:{mode}"
            again = await run_case(PRIMITIVE, key, clients.pick(who, mode), mode)
            if isinstance(again, Exception) or not PRIMITIVE.ok(again):
                failures.append(f"{label} after BUSY {describe(again)}")
            if age == "fresh":
                recorded_as_loaded = fallbacks() - before
        if recorded_as_loaded:
            failures.append(
                f"{recorded_as_loaded} calls after BUSY needed a NOSCRIPT fallback: the refused "
                "SCRIPT LOADs were recorded as loaded"
            )
    finally:
        await warm.close()
        if fresh is not None:
            await fresh.close()

    figures(
        "c. BUSY (another client's long script)",
        kind,
        calls_while_busy=len(outcomes),
        raised_ScriptBusyError=sum(isinstance(o, ScriptBusyError) for o in outcomes.values()),
        most_log_lines_per_call=max(len(lines) for lines in log_lines.values()),
        fallbacks_after=recorded_as_loaded,
        failures=len(failures),
    )
    assert still_busy, "the busy script ended before the calls were made: the test proves nothing"
    assert killed.startswith(b"-"), f"the busy script was not killed: {killed!r}"
    assert not failures, f"{len(failures)} checks failed:\n" + "\n".join(failures)
