"""Read the header comment of a ``.lua`` file into script metadata.

The header is the run of ``--`` comment lines at the top of the file::

    -- description: Add ARGV[2] to KEYS[1] only while the result stays <= ARGV[1].
    -- readonly: no
    -- KEYS[1] counter: the counter
    -- ARGV[1] limit: the largest value the counter may reach
    -- ARGV[2] amount: how much to add
    -- returns: {value, applied}
    -- result: raw
    -- probe: 10 1

``returns`` is required (it documents the reply); ``KEYS``/``ARGV`` lines must be
numbered 1, 2, 3... in order and name their slot. ``probe`` gives ARGV values for a
harmless call on scratch keys, used by ``manage.py atomicops_flush_check``. Other
``-- text`` lines are prose, except that a line shaped like a field (``-- read_only: yes``)
must be one of the fields: a misspelled field is an error naming the closest field, never
silently ignored (a misspelled ``readonly`` would register a read-only script as writing).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from atomicops.exceptions import ScriptHeaderError

RESULT_CONVERSIONS = ("raw", "int", "bool", "str", "float", "decimal", "fields")

FIELDS = ("description", "readonly", "returns", "result", "probe")

# "(?!//)": a prose line holding a URL ("-- https://...") is not a field.
_FIELD = re.compile(r"^--\s*(?P<name>[a-z_]+)\s*:(?!//)\s*(?P<value>.*)$")
# A KEYS/ARGV line that _SLOT does not read ("-- ARGV[1]: who", no name): an error, not prose.
_SLOT_LIKE = re.compile(r"^--\s*(?P<kind>KEYS|ARGV)\s*\[")
_SLOT = re.compile(
    r"^--\s*(?P<kind>KEYS|ARGV)\[(?P<index>\d+)\]\s+(?P<name>[A-Za-z_][\w]*)\s*:?\s*(?P<doc>.*)$"
)
# KEYS/ARGV are numbered 1, 2, 3...: no real header comes near this many digits.
_MAX_INDEX_DIGITS = 6
_TRUE = {"yes", "true", "1"}
_FALSE = {"no", "false", "0"}


@dataclass(frozen=True)
class Header:
    description: str = ""
    readonly: bool = False
    keys: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    returns: str = ""
    result: str = "raw"
    probe: tuple[str, ...] | None = None
    docs: dict[str, str] = field(default_factory=dict, compare=False)


def parse_header(source: str, *, origin: str) -> Header:
    """Parse the header of ``source``; ``origin`` (a path) is named in errors."""
    values: dict[str, str] = {}
    slots: dict[str, list[tuple[int, str, str]]] = {"KEYS": [], "ARGV": []}
    for number, raw in enumerate(source.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break
        slot = _SLOT.match(line)
        if slot:
            index = slot["index"]
            if len(index) > _MAX_INDEX_DIGITS:  # int() refuses past 4300 digits anyway
                raise ScriptHeaderError(
                    f"{origin}:{number}: {slot['kind']} index of {len(index)} digits"
                )
            slots[slot["kind"]].append((int(index), slot["name"], slot["doc"].strip()))
            continue
        loose = _SLOT_LIKE.match(line)
        if loose:
            kind = loose["kind"]
            raise ScriptHeaderError(
                f"{origin}:{number}: a {kind} line names its slot, "
                f"'-- {kind}[<i>] <name>: <what it is>'; got {line!r}"
            )
        found = _FIELD.match(line)
        if found:
            if found["name"] not in FIELDS:
                close = difflib.get_close_matches(found["name"], FIELDS, n=1)
                raise ScriptHeaderError(
                    f"{origin}:{number}: unknown header field {found['name']!r}"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f"; the fields are {', '.join(FIELDS)}"
                )
            if found["name"] in values:
                raise ScriptHeaderError(f"{origin}:{number}: '{found['name']}' given twice")
            values[found["name"]] = found["value"].strip()

    if "returns" not in values:
        raise ScriptHeaderError(
            f"{origin}: header has no '-- returns:' line (every script documents its reply)"
        )
    names = {}
    docs = {}
    for kind, entries in slots.items():
        indexes = [index for index, _, _ in entries]
        if indexes != list(range(1, len(entries) + 1)):
            raise ScriptHeaderError(
                f"{origin}: {kind} lines must be numbered 1, 2, 3... in order, got {indexes}"
            )
        names[kind] = tuple(name for _, name, _ in entries)
        docs.update({f"{kind}[{i}]": doc for i, _, doc in entries})

    readonly_text = values.get("readonly", "no").lower()
    if readonly_text not in _TRUE | _FALSE:
        raise ScriptHeaderError(f"{origin}: readonly must be yes or no, got {readonly_text!r}")
    result = values.get("result", "raw")
    if result not in RESULT_CONVERSIONS:
        raise ScriptHeaderError(
            f"{origin}: result must be one of {', '.join(RESULT_CONVERSIONS)}, got {result!r}"
        )
    probe = tuple(values["probe"].split()) if "probe" in values else None
    if probe is not None and len(probe) > len(names["ARGV"]):
        raise ScriptHeaderError(
            f"{origin}: probe gives {len(probe)} args but the header declares {len(names['ARGV'])}"
        )
    return Header(
        description=values.get("description", ""),
        readonly=readonly_text in _TRUE,
        keys=names["KEYS"],
        args=names["ARGV"],
        returns=values["returns"],
        result=result,
        probe=probe,
        docs=docs,
    )
