"""Keys for model instances: layout, hash tags, escaping of user-supplied parts, errors."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from atomicops import InvalidInput, bounded_incr, compare_and_set, get_counter, key_for
from atomicops.primitives import keys
from tests.factories import ArticleFactory, TagFactory
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db


def slot(key: str) -> int:
    return key_slot(key.encode())


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first '{' and the next '}'."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


def test_layout_prefix_app_model_pk_name():
    article = ArticleFactory()
    assert key_for(article, "views") == f"atomicops:{{testapp.article:{article.pk}}}:views"


def test_prefix_comes_from_settings(settings):
    article = ArticleFactory()
    settings.ATOMICOPS = {**settings.ATOMICOPS, "KEY_PREFIX": "site1"}
    assert key_for(article, "views") == f"site1:{{testapp.article:{article.pk}}}:views"


def test_keys_of_one_instance_share_a_slot_and_instances_differ():
    first, second = ArticleFactory(), ArticleFactory()
    assert slot(key_for(first, "views")) == slot(key_for(first, "likes"))
    assert hash_tag(key_for(first, "views")) == f"testapp.article:{first.pk}"
    assert key_for(first, "views") != key_for(second, "views")


def test_pair_stands_in_for_a_key(backend):
    _, client = backend
    article = ArticleFactory()
    assert bounded_incr((article, "views"), 1000).value == 1
    assert int(client.get(key_for(article, "views"))) == 1
    assert get_counter((article, "views")) == 1
    assert compare_and_set((article, "state"), None, "draft")
    assert client.get(key_for(article, "state")) == b"draft"


@pytest.mark.parametrize(
    "slug",
    ["a}b", "{evil}", "x{y", "}{", "tab\there", "nl\nhere", "del\x7f", "nul\x00", "50%", "%7D"],
)
def test_user_supplied_pk_cannot_move_the_slot_or_leave_its_place(slug):
    tag = TagFactory(slug=slug)
    key = key_for(tag, "uses")
    tag_text = hash_tag(key)
    # The whole instance is the hash tag, and the key is exactly three parts.
    assert tag_text == f"testapp.tag:{keys.escape(slug)}"
    assert key == f"atomicops:{{{tag_text}}}:uses"
    assert key.count("{") == 1 and key.count("}") == 1
    assert not any(ord(c) < 0x20 or c == "\x7f" for c in key)
    assert slot(key) == key_slot(tag_text.encode())


def test_escaping_is_one_to_one():
    """Different user texts never give the same key (the escape character escapes too)."""
    slugs = ["a}b", "a%7Db", "a%257Db", "a%b", "a%25b"]
    made = {key_for(TagFactory(slug=s), "n") for s in slugs}
    assert len(made) == len(slugs)


@pytest.mark.parametrize("name", ["a}b", "{x}", "line\nbreak", "ctl\x01"])
def test_user_supplied_name_is_escaped_too(name):
    article = ArticleFactory()
    key = key_for(article, name)
    assert hash_tag(key) == f"testapp.article:{article.pk}"
    assert key.endswith(":" + keys.escape(name))
    assert key.count("{") == 1 and key.count("}") == 1


def test_tagged_keys_escape_their_name():
    assert keys.tagged("lock", "a{b}") == "atomicops:lock:{a%7Bb%7D}"
    with pytest.raises(InvalidInput):
        keys.tagged("lock", "")


def test_unsaved_instance_raises_a_clear_error(backend):
    _, client = backend
    article = Article(title="draft")
    with pytest.raises(InvalidInput, match="unsaved testapp.Article.*pk is None.*save it first"):
        key_for(article, "views")
    with pytest.raises(InvalidInput, match="unsaved"):
        bounded_incr((article, "views"), 10)
    assert client.keys("*") == []


@pytest.mark.parametrize(
    "bad", [Article, object(), "not-a-model", 42], ids=["class", "object", "str", "int"]
)
def test_key_for_needs_a_model_instance(bad):
    with pytest.raises(InvalidInput, match="needs a model instance"):
        key_for(bad, "views")


@pytest.mark.parametrize("name", ["", None, 5])
def test_key_for_needs_a_name(name):
    with pytest.raises(InvalidInput, match="non-empty string"):
        key_for(ArticleFactory(), name)


@pytest.mark.parametrize(
    "bad", ["", b"", (1, 2, 3), ["a", "b"], None, 5], ids=lambda v: repr(v)[:12]
)
def test_resolve_key_rejects_what_is_not_a_key(bad):
    with pytest.raises(InvalidInput):
        keys.resolve_key(bad)


def test_string_keys_are_used_exactly_as_given():
    assert keys.resolve_key("plain:{tag}:x") == "plain:{tag}:x"
    assert keys.resolve_key(b"raw") == b"raw"


def test_tag_model_instances_of_different_models_differ():
    article = ArticleFactory()
    tag = TagFactory(slug=str(article.pk))
    assert key_for(article, "n") != key_for(tag, "n")
