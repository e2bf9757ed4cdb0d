"""Demo content, created once (``rundemo`` calls :func:`ensure_demo_data`)."""

from __future__ import annotations

from django.db import transaction

from demo_project.demo.models import Document, Event, Post

POSTS = [
    "Pipelines are not transactions",
    "MULTI/EXEC cannot branch on a value",
    "Why Lua scripts are atomic",
]
DOCUMENTS = [
    (
        "Release notes draft",
        "atomicops 0.1\n\n- bounded counters\n- compare-and-set\n- fenced locks\n- rate limits\n",
    ),
    (
        "Meeting agenda",
        "1. Script cache after failover\n2. EVAL_RO on replicas\n3. Any other business\n",
    ),
]
EVENTS = [("Redis meetup: the last 3 seats", 3), ("Django conference", 20)]


@transaction.atomic
def ensure_demo_data() -> bool:
    """Create the demo's posts, documents and events if there are none; True if created."""
    if Post.objects.exists() or Document.objects.exists() or Event.objects.exists():
        return False
    Post.objects.bulk_create(Post(title=t) for t in POSTS)
    Document.objects.bulk_create(Document(title=t, body=b) for t, b in DOCUMENTS)
    Event.objects.bulk_create(Event(name=n, seats=s) for n, s in EVENTS)
    return True
