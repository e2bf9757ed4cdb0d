"""Threads calling ``bounded_incr`` on one counter while a nemesis runs: what each call answered.

Shared by the retry-deadline scenarios (tests/faults, tests/cluster, tests/sentinel). A
call that answered was applied (the limit is never reached); one that raised
``OutcomeUnknown`` may have been; anything else raised is kept, by type and message, for
the test to judge. With nothing applied twice and every answered write durable:

    applied <= final <= applied + unknown
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from atomicops import OutcomeUnknown, bounded_incr, registry

LIMIT = 10**12  # never reached: every answered bounded_incr is applied
SCRIPT = "counter_bounded_incr"


@dataclass
class Answers:
    applied: int = 0
    unknown: int = 0
    refused: int = 0  # "not applied" below the limit: a wrong answer
    errors: list[tuple[float, str, str]] = field(default_factory=list)  # (when, type, message)

    def kinds(self) -> Counter:
        return Counter(kind for _, kind, _ in self.errors)


class Hammer:
    """``threads`` threads calling ``bounded_incr(key, LIMIT)`` until :meth:`stop`."""

    def __init__(self, key: str, threads: int = 4) -> None:
        self.key = key
        self.stopping = threading.Event()
        self.answers = [Answers() for _ in range(threads)]
        self.threads = [
            threading.Thread(target=self._run, args=(a,), daemon=True) for a in self.answers
        ]
        stats = registry.get(SCRIPT).stats
        self.retries_before = stats["retries"]
        self.reasons_before = dict(stats.reasons)

    def _run(self, answers: Answers) -> None:
        while not self.stopping.is_set():
            try:
                if bounded_incr(self.key, LIMIT).applied:
                    answers.applied += 1
                else:
                    answers.refused += 1
            except OutcomeUnknown:
                answers.unknown += 1
            except Exception as exc:  # judged by the test
                answers.errors.append((time.time(), type(exc).__name__, str(exc)))
                time.sleep(0.01)

    def __enter__(self) -> Hammer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> Answers:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), "a caller is still stuck after 30 s"
        total = Answers()
        for answers in self.answers:
            total.applied += answers.applied
            total.unknown += answers.unknown
            total.refused += answers.refused
            total.errors += answers.errors
        return total

    def retries(self) -> tuple[int, dict[str, int]]:
        """Retries of bounded_incr since the hammer was built: the total and per reason."""
        stats = registry.get(SCRIPT).stats
        reasons = {
            reason: count - self.reasons_before[reason]
            for reason, count in stats.reasons.items()
            if count > self.reasons_before[reason]
        }
        return stats["retries"] - self.retries_before, reasons


def check_history(total: Answers, final: int, *, deadline_ms: int) -> None:
    """What every scenario must show: the retries never applied a call twice, and with a
    deadline long enough for the fault no error but OutcomeUnknown reached a caller."""
    assert total.applied > 0, "no call was applied: the test proves nothing"
    assert not total.refused, f"{total.refused} calls answered 'not applied' below the limit"
    assert final <= total.applied + total.unknown, (
        f"{final} applied, more than the {total.applied} answered plus {total.unknown} "
        "unknown: a call was applied twice, or one that said 'not applied' was"
    )
    if deadline_ms >= 10_000:
        assert not total.errors, f"errors reached the callers: {total.kinds()} {total.errors[:3]}"
    else:
        # Without retries (or with too short a deadline) only "nothing applied" errors.
        allowed = {"RedisUnavailable", "ServerRefused", "ServerLoading"}
        assert set(total.kinds()) <= allowed, total.errors[:3]
