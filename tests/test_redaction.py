"""Passwords never shown: redact_url for every URL form, and everywhere a URL is displayed."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core import checks
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from atomicops.engine import connection
from atomicops.engine.redaction import redact_url
from tests.servers import free_port

SECRET = "s3cret"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://host/0?password=s3cret", "redis://host/0?password=***"),
        ("redis://:p@s3cret@host", "redis://:***@host"),
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://alice:s3cret@host:6379/3", "redis://alice:***@host:6379/3"),
        ("redis://alice@host/0", "redis://alice@host/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("rediss://alice:s3cret@host:6380/0?ssl_cert_reqs=required",
         "rediss://alice:***@host:6380/0?ssl_cert_reqs=required"),
        ("rediss://host/0?ssl_password=s3cret&ssl_certfile=/c.pem",
         "rediss://host/0?ssl_password=***&ssl_certfile=/c.pem"),
        ("unix:///tmp/redis.sock?db=3&password=s3cret", "unix:///tmp/redis.sock?db=3&password=***"),
        ("unix://:s3cret@/tmp/redis.sock?db=0", "unix://:***@/tmp/redis.sock?db=0"),
        ("unix://alice:s3cret@/tmp/redis.sock", "unix://alice:***@/tmp/redis.sock"),
        ("redis://:s3cret@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("redis://:a%40s3cret@host/0", "redis://:***@host/0"),  # percent-encoded @
        ("redis://host/0?PassWord=s3cret#frag", "redis://host/0?PassWord=***#frag"),
        ("redis://user:@host/0", "redis://user:@host/0"),  # empty password: nothing to hide
        # Unescaped "/", "?" or "#" in a password end the authority early: hide up to the @.
        ("redis://:s3/cret@host/0", "redis://***@host/0"),
        ("redis://:s3?cret@host", "redis://***@host"),
        ("redis://:s3#cret@host", "redis://***@host"),
        ("redis://:s3cret@[::1/0", "redis://***@[::1/0"),  # does not parse
        ("127.0.0.1:6379?password=s3cret", "127.0.0.1:6379?password=***"),
    ],
)  # fmt: skip
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url) and "cret" not in redact_url(url)


def test_what_redis_py_takes_as_the_password_is_what_is_hidden():
    import redis

    for url in ("redis://:p@s3cret@host/0", "redis://u:s3cret@host?db=1", "rediss://:s3cret@h"):
        password = redis.ConnectionPool.from_url(url).connection_kwargs["password"]
        assert password and password not in redact_url(url)


# -- everywhere a URL is shown -----------------------------------------------------------

DEAD_URLS = [
    "redis://127.0.0.1:{port}/0?password=s3cret",
    "redis://:p@s3cret@127.0.0.1:{port}/0",
    "redis://alice:s3cret@127.0.0.1:{port}/0",
    "unix:///nonexistent/redis.sock?password=s3cret",
]


@pytest.fixture(params=DEAD_URLS)
def secret_url(request, settings):
    url = request.param.format(port=free_port())
    settings.ATOMICOPS = {
        "URL": url,
        "LOAD_ON_STARTUP": False,
        "SOCKET_CONNECT_TIMEOUT": 0.5,
    }
    return url


def test_describe_source(secret_url):
    assert SECRET not in connection.describe_source()
    assert connection.describe_source() == f"URL {redact_url(secret_url)}"


def test_dashboard_shows_the_source_without_the_password(secret_url, db, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@x.test", None)
    client = Client()
    client.force_login(admin)
    response = client.get(reverse("admin:atomicops_dashboard_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert SECRET not in html
    assert redact_url(secret_url).split("://")[1][:12] in html.replace("&amp;", "&")


@pytest.mark.parametrize("command", ["atomicops_load", "atomicops_flush_check"])
def test_commands_name_the_server_without_the_password(secret_url, command):
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(command, stdout=out, stderr=err)
    text = f"{caught.value}{out.getvalue()}{err.getvalue()}"
    assert "URL " in text and SECRET not in text


def test_check_deploy_names_the_server_without_the_password(secret_url):
    found = checks.run_checks(include_deployment_checks=True, tags=["atomicops"])
    unreachable = [message for message in found if message.id == "atomicops.W003"]
    assert unreachable
    assert all(SECRET not in str(message) for message in found)


def test_a_bad_url_in_the_settings_is_reported_without_its_password(settings):
    settings.ATOMICOPS = {"URL": "http://:s3cret@example.invalid/0"}
    found = checks.run_checks(tags=["atomicops"])
    assert [message.id for message in found] == ["atomicops.E001"]
    assert SECRET not in str(found[0])


@pytest.mark.parametrize(
    "text, shown",
    [
        ("HTTP 413 from https://db.upstash.io/?_token=s3cret", "HTTP 413 from https://db.upstash.io/?_token=***"),
        ("cannot reach redis://:s3cret@h:1/0 (refused)", "cannot reach redis://:***@h:1/0 (refused)"),
        ("two: 'rediss://u:s3cret@a' and unix://:s3cret@/s", "two: 'rediss://u:***@a' and unix://:***@/s"),
        ("https://h/?apikey=s3cret&sig=s3cret&page=2", "https://h/?apikey=***&sig=***&page=2"),
        ("no url here, password=s3cret", "no url here, password=s3cret"),
    ],
)  # fmt: skip
def test_redact_text_redacts_every_url_in_a_message(text, shown):
    from atomicops.engine.redaction import redact_text

    assert redact_text(text) == shown


def test_a_secret_never_shows():
    import pickle

    from atomicops.engine.redaction import MaskedBytes, Secret

    secret = Secret(SECRET)
    assert SECRET not in f"{secret!r} {secret} {[secret]}"
    assert secret.reveal() == SECRET
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    header = MaskedBytes(b"Bearer " + SECRET.encode())
    assert SECRET not in repr([(b"Authorization", header)]) and bytes(header).endswith(b"s3cret")
