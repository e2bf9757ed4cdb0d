"""Demo pages tested the way an adopter would test their own site: with atomicops' pytest
plugin (``atomicops.testing``, loaded for this suite by ``-p atomicops.testing`` in
pyproject.toml) instead of this suite's ``backend`` fixture.

``atomicops_fakeredis`` for the fast path, ``atomicops_valkey`` where the real server
matters: ``EVALSHA_RO`` for the stats endpoint, server-side expiry for the rate limit.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from atomicops import registry
from demo_project.demo.models import Post
from tests.factories import PostFactory

pytestmark = pytest.mark.django_db


def test_likes_stop_at_the_limit_on_fakeredis(atomicops_fakeredis, client):
    post = PostFactory()
    url = reverse("demo:like", args=[post.pk])
    seen = [client.post(url, HTTP_ACCEPT="application/json").json()["likes"] for _ in range(12)]
    assert seen == [*range(1, 11), 10, 10]
    assert post.likes.value == Post.LIKE_LIMIT
    # The counter lives in the fixture's fakeredis, under atomicops' key for the post.
    assert any(b"demo.post" in key for key in atomicops_fakeredis.keys("*"))


def test_each_test_gets_an_empty_fakeredis(atomicops_fakeredis, client):
    # The same post key as the test above would use starts from nothing here.
    assert atomicops_fakeredis.dbsize() == 0
    post = PostFactory()
    client.post(reverse("demo:like", args=[post.pk]))
    assert post.likes.value == 1


def test_scripts_are_loaded_before_the_first_call(atomicops_valkey):
    shas = [script.sha for script in registry]
    assert all(atomicops_valkey.script_exists(*shas))


def test_stats_endpoint_runs_evalsha_ro_on_a_real_server(atomicops_valkey, client):
    post = PostFactory()
    for _ in range(3):
        client.post(reverse("demo:like", args=[post.pk]))
    before = atomicops_valkey.info("commandstats").get("cmdstat_evalsha_ro", {}).get("calls", 0)
    data = client.get(reverse("demo:stats")).json()
    after = atomicops_valkey.info("commandstats")["cmdstat_evalsha_ro"]["calls"]
    assert data["readonly"] is True
    assert [entry["likes"] for entry in data["posts"]] == [3]
    assert after - before == 1  # one read-only call per post, on the server's EVALSHA_RO


def test_ping_limit_on_a_real_server(atomicops_valkey, client):
    url = reverse("demo:ping")
    statuses = [client.get(url).status_code for _ in range(12)]
    assert statuses == [200] * 10 + [429, 429]
    # The window is a key with a server-side expiry: the limit ends on its own.
    (key,) = [k for k in atomicops_valkey.keys("*") if b"demo-api" in k]
    assert 0 < atomicops_valkey.pttl(key) <= 20_000
