"""Optimistic editing: a save goes through only if nobody saved since you loaded.

The live document is one JSON value in Redis (``{"rev", "title", "body", "saved_by"}``),
under ``(document, "content")``. The edit form carries the exact value it was loaded
from; saving is ``compare_and_set(key, expected=that value, new=next revision)``, one
atomic step. If another tab saved in between, the value differs, nothing is written,
and the editor is shown both versions. The revision number inside the value means a
document edited back to an earlier text is still a different value (no ABA).

The database row mirrors the newest saved revision (its update only moves forward), so
the document survives a Redis restart: a missing key is seeded from the row with
``compare_and_set(key, None, ...)``, which writes only if the key is still missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from atomicops import InvalidInput, compare_and_set
from atomicops.engine import connection
from atomicops.primitives.keys import resolve_key
from demo_project.demo.models import Document

MAX_BODY = 20_000


@dataclass(frozen=True)
class Revision:
    """One saved state of a document, and the exact stored text it was read from."""

    raw: str
    rev: int
    title: str
    body: str
    saved_by: str


@dataclass(frozen=True)
class SaveResult:
    """``saved``: your revision is now current. Otherwise ``current`` is what won."""

    saved: bool
    current: Revision


def content_key(document: Document) -> str:
    key = resolve_key((document, "content"))
    return key.decode() if isinstance(key, bytes) else key


def encode(rev: int, title: str, body: str, saved_by: str) -> str:
    # sort_keys and fixed separators: the same revision always encodes to the same text,
    # so a value seeded from the database equals the one that was saved.
    return json.dumps(
        {"rev": rev, "title": title, "body": body, "saved_by": saved_by},
        sort_keys=True,
        separators=(",", ":"),
    )


def decode(raw: str | bytes) -> Revision:
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        data: Any = json.loads(text)
        return Revision(
            text, int(data["rev"]), str(data["title"]), str(data["body"]), str(data["saved_by"])
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"not a document revision: {text[:80]!r}") from exc


def load(document: Document) -> Revision:
    """The current revision; seeds Redis from the database row when the key is missing.

    Two round trips (``GET``, and ``compare_and_set`` + ``GET`` only when seeding).
    """
    client = connection.get_client()
    key = content_key(document)
    raw = client.get(key)
    if raw is None:
        seed = encode(document.revision, document.title, document.body, document.saved_by)
        compare_and_set(key, None, seed)  # another request may have seeded it first: fine
        raw = client.get(key)
        if raw is None:  # deleted again in between; the row is the truth then
            raw = seed
    return decode(raw)


def save(document: Document, expected: str, title: str, body: str, saved_by: str) -> SaveResult:
    """Save ``title``/``body`` as the next revision after ``expected`` (the loaded value).

    Atomic: one ``compare_and_set``; refused (nothing written) when the stored value is
    not ``expected`` any more. Raises :class:`InvalidInput` for a malformed ``expected``.
    """
    seen = decode(expected)
    new = encode(seen.rev + 1, title, body, saved_by)
    key = content_key(document)
    saved = compare_and_set(key, seen.raw, new)
    if not saved:
        current = load(document)
        if current.raw != seen.raw:
            return SaveResult(False, current)
        # The key had gone (Redis restarted) and was just seeded with exactly what this
        # editor loaded: nobody else saved, so the save may go through.
        saved = compare_and_set(key, seen.raw, new)
        if not saved:
            return SaveResult(False, load(document))
    revision = decode(new)
    # The mirror only moves forward: a late mirror write of an older revision is a no-op.
    Document.objects.filter(pk=document.pk, revision__lt=revision.rev).update(
        title=title, body=body, saved_by=saved_by, revision=revision.rev, updated_at=timezone.now()
    )
    return SaveResult(True, revision)
