"""The seed article's examples, computed live against the configured server.

Each section is a function that writes lines through ``out`` and returns the values it
printed, so ``manage.py demo_tour`` and the tests share one implementation. Keys live
under ``<KEY_PREFIX>:tour:`` and are deleted before use, so every run starts fresh and
nothing else is touched. The scripts the tour makes up on the spot go into a private
:class:`~atomicops.ScriptRegistry`, not the site's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from atomicops import ReadOnlyViolation, ScriptRegistry, bounded_incr, compare_and_set, fixed_window
from atomicops.engine import connection
from atomicops.primitives.keys import prefixed

Out = Callable[[str], None]

COUNTER_LUA = """local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count < 10 then
  return redis.call('INCR', KEYS[1])
end
return count"""
CACHED_LUA = "return 'cached script'"
UNKNOWN_SHA = "f" * 40
RO_WRITE_LUA = "return redis.call('SET', KEYS[1], 'x')"
RETURNS = [
    "return 3.99",
    "return true",
    "return false",
    "return { 1, 2, 3.3333, somekey = 'somevalue', 'foo', nil , 'bar' }",
    "return '3.99'",
]


def tour_key(name: str) -> str:
    return prefixed("tour", name)


def cli(reply: Any, indent: str = "") -> str:
    """A reply the way ``redis-cli`` prints it."""
    if isinstance(reply, ResponseError):
        return f"(error) {_error_text(reply)}"
    if reply is None:
        return "(nil)"
    if isinstance(reply, bool):
        return "(integer) 1" if reply else "(nil)"
    if isinstance(reply, int):
        return f"(integer) {reply}"
    if isinstance(reply, bytes):
        return '"' + reply.decode("utf-8", "replace") + '"'
    if isinstance(reply, str):
        return f'"{reply}"'
    if isinstance(reply, (list, tuple)):
        if not reply:
            return "(empty array)"
        return "\n".join(f"{indent}{i}) {cli(item)}" for i, item in enumerate(reply, start=1))
    return repr(reply)


def _error_text(error: ResponseError) -> str:
    # redis-py strips the error code from the messages it maps to classes (NOSCRIPT, and
    # ERR for plain ResponseError); put it back so the line reads as redis-cli prints it.
    text = str(error)
    if isinstance(error, NoScriptError):
        return f"NOSCRIPT {text}"
    first = text.split(" ", 1)[0]
    if type(error) is ResponseError and not (first.isupper() and first.isalpha()):
        return f"ERR {text}"
    return text


def server_name(client: Any) -> str:
    """``valkey 9.0.0`` / ``redis 7.0.15``, or what is known of a server that does not say."""
    try:
        info = client.info("server")
    except Exception:  # fakeredis and proxies may not answer INFO server fully
        return "unknown server"
    if info.get("valkey_version"):
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"


def _raw(client: Any, *command: Any) -> Any:
    """One command, an error reply returned instead of raised (as redis-cli shows it)."""
    try:
        return client.execute_command(*command)
    except ResponseError as exc:
        return exc


def heading(out: Out, title: str) -> None:
    out("")
    out(f"== {title} ==")


def counter(out: Out, client: Any) -> list[int]:
    heading(out, "A counter that stops at 10: read, check and write in one step")
    key = tour_key("count")
    client.delete(key)
    out("The seed's script:")
    for line in COUNTER_LUA.splitlines():
        out(f"    {line}")
    out(f"atomicops: bounded_incr({key!r}, 10), twelve times on a fresh key:")
    values = [bounded_incr(key, 10, client=client).value for _ in range(12)]
    out(" ".join(str(v) for v in values))
    return values


def keys_and_argv(out: Out, client: Any) -> list[Any]:
    heading(out, "EVAL fills KEYS and ARGV")
    private = ScriptRegistry()
    script = private.register("tour_keys_argv", "return { KEYS[1], KEYS[2], ARGV[1], ARGV[2] }")
    out('EVAL "return { KEYS[1], KEYS[2], ARGV[1], ARGV[2] }" 2 key1 key2 arg1 arg2')
    # Two keys that only come back as text: the script never reads or writes them.
    reply = script(keys=["key1", "key2"], args=["arg1", "arg2"], client=client)
    out(cli(reply))
    return reply


def returns(out: Out, client: Any) -> dict[str, Any]:
    heading(out, "What a Lua value becomes")
    private = ScriptRegistry()
    seen = {}
    for i, source in enumerate(RETURNS):
        reply = private.register(f"tour_return_{i}", source)(client=client)
        seen[source] = reply
        out(f'EVAL "{source}" 0')
        out(cli(reply))
    out("Numbers truncate, true is 1, false is nil, a table stops at its first nil and drops")
    out("string keys: return floats as strings (atomicops' own scripts do).")
    return seen


def script_cache(out: Out, client: Any, *, flush: bool) -> dict[str, Any]:
    heading(out, "SCRIPT LOAD, EVALSHA, NOSCRIPT, and atomicops recovering")
    seen: dict[str, Any] = {}
    out(f'SCRIPT LOAD "{CACHED_LUA}"')
    sha = _raw(client, "SCRIPT", "LOAD", CACHED_LUA)
    seen["sha"] = sha.decode() if isinstance(sha, bytes) else sha
    out(cli(sha))
    out(f"EVALSHA {seen['sha']} 0")
    seen["evalsha"] = _raw(client, "EVALSHA", seen["sha"], 0)
    out(cli(seen["evalsha"]))
    out(f"EVALSHA {UNKNOWN_SHA} 0")
    seen["noscript"] = _raw(client, "EVALSHA", UNKNOWN_SHA, 0)
    out(cli(seen["noscript"]))

    private = ScriptRegistry()
    script = private.register("tour_cached", CACHED_LUA)
    out("")
    out(f"atomicops: registry.register('tour_cached', \"{CACHED_LUA}\"), sha {script.sha}")
    calls = []

    def call(note: str) -> None:
        before = script.stats["fallbacks"]
        reply = script(client=client)
        calls.append((reply, script.stats["fallbacks"]))
        how = "NOSCRIPT, recovered in the same call" if script.stats["fallbacks"] > before else note
        out(
            f"call {len(calls)} -> {cli(reply)}  ({how}; fallbacks so far: {script.stats['fallbacks']})"
        )

    call("EVALSHA")
    if flush:
        out("SCRIPT FLUSH  (the server forgets every cached script, as after a restart)")
        client.script_flush()
        call("EVALSHA")
        call("EVALSHA again: the fallback reloaded it")
    else:
        out("SCRIPT FLUSH skipped: this is not the demo's own server (pass --flush to empty")
        out("its script cache; well-behaved clients reload, but it is a shared server).")
    seen["calls"] = calls
    return seen


def cas(out: Out, client: Any) -> list[Any]:
    heading(out, "Compare-and-set")
    key = tour_key("mykey")
    client.delete(key)
    call = f'compare_and_set({key!r}, "oldvalue", "newvalue")'
    set_reply = client.set(key, "oldvalue")
    first = compare_and_set(key, "oldvalue", "newvalue", client=client)
    value = client.get(key)
    second = compare_and_set(key, "oldvalue", "newvalue", client=client)
    rows = [
        (f'SET {key} "oldvalue"', set_reply, "OK" if set_reply else cli(set_reply)),
        (call, first, repr(first)),
        (f"GET {key}", value, cli(value)),
        (call, second, repr(second)),
    ]
    width = max(len(text) for text, _, _ in rows)
    for text, _, shown in rows:
        out(f"{text.ljust(width)}   => {shown}")
    out("True where the seed shows (integer) 1: the value matched and was replaced.")
    return [reply for _, reply, _ in rows]


def rate_limiter(out: Out, client: Any) -> dict[str, Any]:
    heading(out, "A fixed-window rate limiter: 10 per 60000 ms")
    key = tour_key("rl:user")
    client.delete(key)
    out(f"fixed_window({key!r}, limit=10, window_ms=60000), twelve times:")
    results = []
    for i in range(1, 13):
        result = fixed_window(key, 10, 60_000, client=client)
        results.append(result)
        out(f"request {i}: counter={result.count} {'allow' if result.allowed else 'reject'}")
    pttl = client.pttl(key)
    out(f"PTTL {key} => {pttl}")
    return {"results": results, "pttl": pttl}


def eval_ro(out: Out, client: Any) -> dict[str, Any]:
    heading(out, "EVAL_RO refuses writes")
    key = tour_key("somekey")
    client.delete(key)
    seen: dict[str, Any] = {}
    out(f'EVAL_RO "{RO_WRITE_LUA}" 1 {key}')
    seen["eval_ro"] = _raw(client, "EVAL_RO", RO_WRITE_LUA, 1, key)
    out(cli(seen["eval_ro"]))
    private = ScriptRegistry()
    script = private.register("tour_ro_write", RO_WRITE_LUA, readonly=True)
    out("atomicops: the same script registered with readonly=True:")
    try:
        seen["atomicops"] = script(keys=[key], client=client)
    except ReadOnlyViolation as exc:
        seen["atomicops"] = exc
        out(f"ReadOnlyViolation: {exc.message}")
    else:
        # fakeredis (and Redis < 7) have no EVAL_RO: atomicops runs the script with EVALSHA
        # there and says so in its log, and the write goes through.
        out(f"-> {cli(seen['atomicops'])}: this server has no EVALSHA_RO, so atomicops ran it with")
        out("EVALSHA and the write was NOT refused (see the warning in the log).")
    client.delete(key)
    return seen


def run(out: Out, *, flush: bool, client: Any = None) -> dict[str, Any]:
    """The whole tour, in the seed's order; returns what each section printed."""
    client = connection.get_client(client)
    found = {
        "counter": counter(out, client),
        "keys_and_argv": keys_and_argv(out, client),
        "returns": returns(out, client),
        "script_cache": script_cache(out, client, flush=flush),
        "cas": cas(out, client),
        "rate_limiter": rate_limiter(out, client),
        "eval_ro": eval_ro(out, client),
    }
    client.delete(tour_key("count"), tour_key("mykey"), tour_key("rl:user"))
    return found
