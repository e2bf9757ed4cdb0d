"""Checkers of histories: linearizability of a register with CAS, a bounded counter, a
fenced lock.

The register is checked with the Wing-Gong / Lowe (WGL) search, as Porcupine does it: the
history's invocations and completions in one time-ordered linked list; the search
linearizes an operation whose invocation comes before the first pending completion,
lifts it out of the list, and backtracks when a completion is reached whose operation
no candidate order could place. It stays fast on thousands of operations because

* the history is partitioned by key (P-compositionality: a history is linearizable iff
  each key's sub-history is), so each search sees one key's operations;
* every (set of linearized operations, model state) configuration is searched once
  (memoized; the set is a bitmask), which folds the orders that reach the same place;
* operations that tell nothing are left out first: failed ones (certainly not applied)
  and reads of unknown outcome (a read changes nothing);
* an ``info`` operation (outcome unknown) completes at infinity, so it may be placed at
  any point after its invocation, or never (the model lets it apply or not).

The model is nondeterministic (an unknown CAS may or may not have applied), so the search
runs over sets of states (the powerset construction): a configuration's state is the
frozenset of register values the placed operations allow.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from tests.jepsen.history import Op, excerpt

INFINITY = math.inf


class CheckerGaveUp(Exception):
    """The search explored more configurations than its budget: no verdict."""


# -- the register model ----------------------------------------------------------------
#
# State: the register's value, None while the key does not exist. Operations:
#   read -> v           the value was v
#   write v             the value becomes v
#   cas [e, n] -> True  the value was e and becomes n
#   cas [e, n] -> False the value was not e; nothing changed
# An info write or cas may have applied or not.


def register_step(state: Any, op: Op) -> tuple[Any, ...]:
    """The states the register may be in after ``op`` from ``state``; () if impossible."""
    if op.f == "read":
        return (state,) if op.output == state else ()
    if op.f == "write":
        return (op.value,) if op.type == "ok" else (state, op.value)
    if op.f == "cas":
        expected, new = op.value
        if op.type == "info":
            return (state, new) if state == expected else (state,)
        if op.output:
            return (new,) if state == expected else ()
        return (state,) if state != expected else ()
    raise ValueError(f"register model: unknown operation {op.f!r}")


def mutates(op: Op) -> bool:
    """Whether ``op`` may change the register (observers only read it)."""
    if op.f == "write":
        return True
    if op.f == "cas":
        return op.type == "info" or bool(op.output)
    return False


def relevant(ops: Iterable[Op]) -> list[Op]:
    """What the search needs: fails never happened, an unknown read changes nothing."""
    return [op for op in ops if op.type != "fail" and not (op.type == "info" and op.f == "read")]


@dataclass
class Search:
    """Result of one WGL search."""

    linearizable: bool
    configurations: int  # distinct (linearized set, states) explored
    # The longest partial linearization reached (op indices, in order) and the operation
    # it could not get past: what Porcupine draws.
    longest: list[int] = field(default_factory=list)
    stuck: int | None = None


def wgl(ops: list[Op], init: Any = None, budget: int = 2_000_000) -> Search:
    """Whether ``ops`` (one key's history) is linearizable for the register model."""
    n = len(ops)
    if n == 0:
        return Search(True, 0)
    events = []
    for i, op in enumerate(ops):
        # Calls before returns at equal times: the most concurrency, never a false alarm.
        events.append((op.start, 0, i))
        events.append((INFINITY if op.end is None else op.end, 1, i))
    events.sort()
    head, tail = 2 * n, 2 * n + 1
    nxt = [0] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    node_op = [0] * (2 * n)
    is_call = [False] * (2 * n)
    ret_node = [0] * n
    order = [head, *range(2 * n), tail]
    for position, (_, kind, i) in enumerate(events):
        node_op[position] = i
        is_call[position] = kind == 0
        if kind == 1:
            ret_node[i] = position
    for a, b in zip(order, order[1:], strict=False):
        nxt[a], prv[b] = b, a
    match = [ret_node[node_op[k]] if is_call[k] else -1 for k in range(2 * n)]

    def lift(e: int) -> None:
        nxt[prv[e]], prv[nxt[e]] = nxt[e], prv[e]
        m = match[e]
        nxt[prv[m]], prv[nxt[m]] = nxt[m], prv[m]

    def unlift(e: int) -> None:
        m = match[e]
        nxt[prv[m]] = prv[nxt[m]] = m
        nxt[prv[e]] = prv[nxt[e]] = e

    states: frozenset[Any] = frozenset([init])
    linearized = 0
    cache: set[tuple[int, frozenset[Any]]] = set()
    stack: list[tuple[int, frozenset[Any]]] = []
    longest: list[int] = []
    stuck = -1
    entry = nxt[head]
    while nxt[head] != tail:
        if is_call[entry]:
            i = node_op[entry]
            after = frozenset(s for state in states for s in register_step(state, ops[i]))
            if after:
                key = (linearized | (1 << i), after)
                if key not in cache:
                    cache.add(key)
                    if len(cache) > budget:
                        raise CheckerGaveUp(f"{budget} configurations on {n} operations")
                    stack.append((entry, states))
                    states, linearized = after, key[0]
                    lift(entry)
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        else:
            if len(stack) >= len(longest):
                longest, stuck = [node_op[e] for e, _ in stack], node_op[entry]
            if not stack:
                return Search(False, len(cache), longest, stuck)
            entry, states = stack.pop()
            linearized &= ~(1 << node_op[entry])
            unlift(entry)
            entry = nxt[entry]
    return Search(True, len(cache))


def linearizable(ops: list[Op], budget: int = 2_000_000) -> bool:
    return wgl(relevant(ops), budget=budget).linearizable


# -- the smallest failing sub-history --------------------------------------------------


def minimize(ops: list[Op], seconds: float = 20.0) -> list[Op]:
    """A sub-history of ``ops`` (not linearizable) that is itself not linearizable, with
    no operation that could be left out (1-minimal, by delta debugging), or the smallest
    one found within ``seconds``.

    Only sound removals: a sub-history that fails must prove that ``ops`` fail, so every
    candidate is one that any linearization of ``ops`` would also linearize. Leaving out
    an observer (a read, a refused CAS) is always sound. A read keeps the one operation
    that wrote its value (the workloads write each value once). A CAS whose expected
    value's writer is left out is weakened to a plain write of its new value (a write
    fits wherever the CAS did). A refused CAS can tell more once writes are gone (the
    value it saw may have been left out), so the writes are only shrunk when the failure
    stands without refused CASes; otherwise only the observers are."""
    deadline = time.monotonic() + seconds
    ops = relevant(ops)
    writer = {}
    for op in ops:
        if op.f == "write":
            writer[op.value] = op
        elif op.f == "cas":
            writer[op.value[1]] = op

    def grow(subset: list[Op]) -> list[Op]:
        chosen = {id(op): op for op in subset}
        for op in subset:
            source = writer.get(op.output) if op.f == "read" else None
            if source is not None:
                chosen[id(source)] = source
        return sorted(chosen.values(), key=lambda op: op.start)

    def weaken(subset: list[Op]) -> list[Op]:
        present = {id(op) for op in subset}
        out = []
        for op in subset:
            if op.f == "cas" and mutates(op) and op.value[0] is not None:
                source = writer.get(op.value[0])
                if source is None or id(source) not in present:
                    op = replace(
                        op, f="write", value=op.value[1], error=f"was cas {op.value}, weakened"
                    )
            out.append(op)
        return out

    def fails(candidate: list[Op]) -> bool:
        try:
            return not wgl(candidate, budget=200_000).linearizable
        except CheckerGaveUp:
            return False

    without_refused = [op for op in ops if op.f == "read" or mutates(op)]
    if not fails(weaken(without_refused)):
        # The failure needs a refused CAS: shrink the observers only, every write stays.
        writes = [op for op in ops if mutates(op)]

        def grow(subset: list[Op]) -> list[Op]:
            return sorted({id(op): op for op in [*writes, *subset]}.values(), key=lambda o: o.start)

        def weaken(subset: list[Op]) -> list[Op]:
            return subset

        without_refused = ops

    current = grow(without_refused)
    chunks = 2
    while len(current) > 1 and time.monotonic() < deadline:
        size = math.ceil(len(current) / chunks)
        for start in range(0, len(current), size):
            smaller = grow(current[:start] + current[start + size :])
            if len(smaller) < len(current) and fails(weaken(smaller)):
                current = smaller
                chunks = max(chunks - 1, 2)
                break
        else:
            if chunks >= len(current):
                break
            chunks = min(len(current), chunks * 2)
    return weaken(current)


# -- verdicts --------------------------------------------------------------------------


@dataclass
class Verdict:
    valid: bool | None  # None: no verdict (the search gave up)
    anomaly: dict[str, Any] | None
    stats: dict[str, Any]


def by_key(ops: Iterable[Op]) -> dict[str, list[Op]]:
    keys: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        keys[op.key].append(op)
    return dict(keys)


def settle(ops: list[Op]) -> list[Op]:
    """A history that any linearization of ``ops`` also linearizes, without ``info``
    operations: the search on it is bounded by the clients' concurrency, where open-ended
    unknown operations make it exponential when it has to prove a failure.

    * Refused CASes are left out (observers: always sound).
    * An unknown CAS whose new value nobody observed is left out: with no refused CAS
      left, once it applied (its value is unique) no read or CAS could follow, so a
      linearization can always drop it.
    * An unknown CAS whose new value was observed did apply, before its first observer
      completed: it becomes an ok CAS completing then.

    So if the settled history is not linearizable, neither is ``ops``; the converse needs
    the full search."""
    kept = [op for op in ops if op.f == "read" or mutates(op)]
    ends: dict[Any, int] = {}  # value -> earliest completion of an op that observed it
    changed = True
    while changed:
        changed = False
        for op in kept:
            seen = op.output if op.f == "read" else op.value[0] if op.f == "cas" else None
            end = op.end if op.end is not None else ends.get(op.value[1] if op.f == "cas" else None)
            if seen is not None and end is not None and end < ends.get(seen, INFINITY):
                ends[seen] = end
                changed = True
    out = []
    for op in kept:
        if op.type == "info":
            new = op.value[1] if op.f == "cas" else op.value
            if new not in ends:
                continue
            op = replace(op, type="ok", output=True if op.f == "cas" else None, end=ends[new])
        out.append(op)
    return out


def check_register(
    ops: list[Op], minimize_seconds: float = 20.0, budget: int = 2_000_000
) -> Verdict:
    """Linearizability of every key's register history (reads and CAS).

    Each key is first searched settled (:func:`settle`: bounded, and a failure there is
    a failure of the history), then in full, unknown outcomes open-ended, within
    ``budget`` configurations; past it the verdict is ``None`` (no verdict)."""
    configurations = 0
    keys = by_key(ops)
    gave_up = []
    for key, history in sorted(keys.items()):
        kept = relevant(history)
        settled = settle(kept)
        for candidate, how in ((settled, "settled"), (kept, "full")):
            if (
                how == "full"
                and len(settled) == len(kept)
                and not any(op.f == "cas" and not op.output for op in kept)
            ):
                break  # nothing was settled or left out: the first search was the full one
            try:
                search = wgl(candidate, budget=budget)
            except CheckerGaveUp as exc:
                gave_up.append(f"{key}: {exc}")
                break
            configurations += search.configurations
            if not search.linearizable:
                return _not_linearizable(key, candidate, search, how, minimize_seconds, keys)
    stats = {"keys": len(keys), "configurations": configurations}
    if gave_up:
        return Verdict(
            None,
            {"kind": "no verdict", "description": "the search gave up on " + "; ".join(gave_up)},
            stats,
        )
    return Verdict(True, None, stats)


def _not_linearizable(
    key: str, ops: list[Op], search: Search, how: str, seconds: float, keys: dict[str, Any]
) -> Verdict:
    witness = minimize(ops, seconds)
    stuck = ops[search.stuck] if search.stuck is not None and search.stuck >= 0 else None
    settled = (
        " (unknown outcomes settled: those never observed left out, those observed made ok"
        " up to their first observer; refused CASes left out)"
        if how == "settled"
        else ""
    )
    return Verdict(
        False,
        {
            "kind": "not linearizable",
            "key": key,
            "description": (
                f"no order of the {len(ops)} operations on {key}{settled} respects both real "
                f"time and the register; the search placed at most {len(search.longest)} "
                "and could not place "
                + (stuck.describe() if stuck else "?")
                + f". Smallest failing sub-history found ({len(witness)} ops):"
            ),
            "history": excerpt(witness, 30),
        },
        {"keys": len(keys), "configurations": search.configurations},
    )


def check_counter(ops: list[Op], final: int, limit: int) -> Verdict:
    """A ``bounded_incr`` history (``incr`` ops, output ``[value, applied]``) against the
    counter's value read at the end, once the faults were over.

    * no acknowledged increment lost: final >= acknowledged;
    * none invented: final <= acknowledged + unknown;
    * the limit never crossed: every value seen and the final one <= limit;
    * the values returned are consistent: no two applied increments returned the same
      value (both saw the same count: one update was lost), a refusal saw the limit, and
      an increment that completed before another was invoked returned a smaller value.
    """
    incrs = [op for op in ops if op.f == "incr"]
    applied = [op for op in incrs if op.type == "ok" and op.output[1]]
    refused = [op for op in incrs if op.type == "ok" and not op.output[1]]
    unknown = [op for op in incrs if op.type == "info"]
    stats = {
        "acknowledged": len(applied),
        "refused": len(refused),
        "unknown": len(unknown),
        "final": final,
        "limit": limit,
    }

    def bad(kind: str, description: str, witness: list[Op]) -> Verdict:
        return Verdict(
            False,
            {"kind": kind, "description": description, "history": excerpt(witness)},
            stats,
        )

    by_value: dict[int, list[Op]] = defaultdict(list)
    for op in applied:
        by_value[op.output[0]].append(op)
    for value, same in sorted(by_value.items()):
        if len(same) > 1:
            return bad(
                "lost update",
                f"{len(same)} applied increments all returned {value}: they saw the same count",
                same[:4],
            )
    over = [op for op in incrs if op.type == "ok" and op.output[0] > limit]
    if over or final > limit:
        return bad("limit crossed", f"limit {limit}, final {final}", over[:4])
    wrong_refusals = [op for op in refused if op.output[0] != limit]
    if wrong_refusals:
        return bad(
            "refused below the limit",
            f"increments refused while the counter was below {limit}",
            wrong_refusals[:4],
        )
    if final < len(applied):
        top = sorted(applied, key=lambda op: op.output[0])[-4:]
        return bad(
            "lost acknowledged increments",
            f"{len(applied)} increments acknowledged, the counter ends at {final}: "
            f"{len(applied) - final} lost (the last acknowledged below)",
            top,
        )
    if final > len(applied) + len(unknown):
        return bad(
            "invented increments",
            f"final {final} > {len(applied)} acknowledged + {len(unknown)} unknown",
            [],
        )
    # Real time: sort by completion; the largest value completed before each invocation
    # must be below that increment's value.
    done = sorted(applied, key=lambda op: op.end or 0)
    best: list[tuple[int, Op]] = []
    top: tuple[int, Op] | None = None
    for op in done:
        if top is None or op.output[0] > top[0]:
            top = (op.output[0], op)
        best.append(top)
    ends = [op.end or 0 for op in done]
    for op in applied:
        before = bisect.bisect_left(ends, op.start) - 1
        if before >= 0 and best[before][0] >= op.output[0]:
            earlier = best[before][1]
            return bad(
                "stale value",
                f"an increment returned {op.output[0]} after another had completed with "
                f"{earlier.output[0]}",
                [earlier, op],
            )
    return Verdict(True, None, stats)


def check_lock(log: list[tuple[int, int, str]], sections: list[Op]) -> Verdict:
    """A fenced resource's log of accepted writes, in the order it accepted them:
    ``(token, holder, phase)``, phase ``begin`` then ``end`` for each critical section.

    The resource accepts a write whose token is at least the last one accepted, so a
    holder whose ``begin`` was accepted has its ``end`` accepted unless a higher token came
    in between (it was fenced off: safe). Valid when no two holders' accepted writes
    interleave (an ``end`` accepted right after another holder's write: both were inside
    at once and the resource let both through), and no token was accepted from two
    holders (the lock granted one token twice, so the resource cannot tell them apart).
    ``sections`` are the holders' records (``value`` the token), for the excerpt."""
    holders_of: dict[int, set[int]] = defaultdict(set)
    stats = {"accepted_writes": len(log), "sections": len(sections)}
    for position, (token, holder, phase) in enumerate(log):
        holders_of[token].add(holder)
        if phase == "end" and (position == 0 or log[position - 1] != (token, holder, "begin")):
            window = log[max(0, position - 5) : position + 1]
            mine = [s for s in sections if s.value == token]
            return Verdict(
                False,
                {
                    "kind": "interleaved critical sections",
                    "description": (
                        f"holder {_holder(holder)}'s section (token {token}) was interleaved with "
                        "another holder's accepted write; accepted writes in order "
                        "(token/holder/phase): "
                        + ", ".join(f"{t}/{_holder(h)}/{p}" for t, h, p in window)
                    ),
                    "history": excerpt(mine),
                },
                stats,
            )
    shared = {t: hs for t, hs in holders_of.items() if len(hs) > 1}
    if shared:
        token, holders = min(shared.items())
        mine = [s for s in sections if s.value == token]
        return Verdict(
            False,
            {
                "kind": "fencing token reused",
                "description": (
                    f"token {token} was accepted from holders "
                    f"{', '.join(_holder(h) for h in sorted(holders))}: the lock "
                    f"granted it twice ({len(shared)} tokens reused in all)"
                ),
                "history": excerpt(mine),
            },
            stats,
        )
    return Verdict(True, None, stats)


def _holder(holder: int) -> str:
    """A critical section's id (client process * 10^6 + its section number) as ``p3#12``."""
    return f"p{holder // 1_000_000}#{holder % 1_000_000}"
