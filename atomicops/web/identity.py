"""Who a request comes from, as a short identity that is safe in a Redis key and in logs.

Used by ``@rate_limit``; meant for anything else that keeps state per client. An
identity is ``<kind>:<value>``:

* ``ip:<address>``: the client's address (:func:`request_address`: ``REMOTE_ADDR``,
  or the address the trusted proxies name, see ``TRUSTED_PROXY_COUNT`` and
  ``CLIENT_IP_HEADER``). IPv4 as it is. IPv4-mapped addresses
  (``::ffff:a.b.c.d``, how a server listening on ``[::]`` sees IPv4 clients) and NAT64
  ones (``64:ff9b::/96``, RFC 6052) as the IPv4 address they carry: otherwise every IPv4
  client would fall into one IPv6 /64. Other IPv6 by its /64 (``ip:2001:db8:1:1::/64``),
  since one client usually holds a whole /64. ``ip:unknown`` when there is none.
* ``addr:<digest>``: a ``REMOTE_ADDR`` that is no IP address (a socket path, a
  forwarded-for list copied verbatim by a proxy set-up): any length, any content.
* ``header:<digest>``: a request header's value, typically an API key.
* ``user:<pk>``: the signed-in user.
* ``key:<digest>``: what a caller's key function returned.

Values a client chooses are hashed, never stored: a secret in a header never reaches a
Redis key name or a log line, and a key is as short for a 3 KB value as for a 3-byte one.
"""

from __future__ import annotations

import hashlib
import inspect
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest

from atomicops.conf import get_settings
from atomicops.exceptions import ConfigurationError, InvalidInput

__all__ = [
    "DIGEST_CHARS",
    "IPV6_PREFIX",
    "KeyFunc",
    "aidentify",
    "check_key",
    "client_address",
    "client_ip",
    "digest",
    "identify",
    "proxy_settings",
    "request_address",
    "user_identity",
]

KeyFunc = Callable[[HttpRequest], "str | None | Awaitable[str | None]"]

# A client usually controls a whole IPv6 /64: limiting single addresses in it would let
# one client rotate through 2^64 of them.
IPV6_PREFIX = 64
# RFC 6052's well-known prefix: a translator puts the IPv4 client in the last 32 bits.
# Networks that use their own NAT64 prefix are treated as plain IPv6 (by /64).
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# 128 bits of SHA-256: two clients sharing a limit by collision is out of reach, and a key
# stays short. hashlib, unlike hash(), is the same in every process and after a restart,
# so limits outlive deploys.
DIGEST_CHARS = 32
HEADER = "header:"
FORWARDED_FOR = "X-Forwarded-For"


def digest(value: str | bytes) -> str:
    """The first 128 bits of ``value``'s SHA-256, in hex (32 characters).

    Not reversible for a value with enough entropy (an API key). A short or guessable
    value (a PIN, an e-mail address) can be found from its digest by trying candidates:
    hashing keeps it out of key names and logs, not secret from whoever reads Redis.
    """
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def client_address(raw: str) -> str | None:
    """``raw`` as the address that names one client, or ``None`` if it is no IP address.

    IPv4 is returned as is, IPv4-mapped and NAT64 (``64:ff9b::/96``) IPv6 as the IPv4
    address inside, other IPv6 as its /64 network (``2001:db8:1:1::/64``).
    """
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address in NAT64:
        return str(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    # From the integer, so a zone id ("fe80::1%eth0") does not end up in the key.
    network = int(address) >> (128 - IPV6_PREFIX) << (128 - IPV6_PREFIX)
    return str(ipaddress.IPv6Network((network, IPV6_PREFIX)))


def proxy_settings() -> tuple[int, str | None]:
    """``(TRUSTED_PROXY_COUNT, CLIENT_IP_HEADER)``, checked.

    Raises :class:`ConfigurationError` when the count is not an integer >= 0, the header
    is not a non-empty string, or both are set (they would disagree about who the
    client is). ``manage.py check`` reports the same as ``atomicops.E008``.
    """
    conf = get_settings()
    hops, header = conf["TRUSTED_PROXY_COUNT"], conf["CLIENT_IP_HEADER"]
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise ConfigurationError(
            f"ATOMICOPS['TRUSTED_PROXY_COUNT'] must be an integer >= 0, got {hops!r}"
        )
    if header is not None and (not isinstance(header, str) or not header.strip()):
        raise ConfigurationError(
            f"ATOMICOPS['CLIENT_IP_HEADER'] must be a header name or None, got {header!r}"
        )
    if hops and header is not None:
        raise ConfigurationError(
            "ATOMICOPS sets both TRUSTED_PROXY_COUNT and CLIENT_IP_HEADER; set the one "
            "that matches how your proxies report the client"
        )
    return hops, header


def _host(entry: str) -> str:
    """One forwarded address without brackets or port (``[2001:db8::1]:443``, ``1.2.3.4:80``)."""
    entry = entry.strip()
    if entry.startswith("["):
        end = entry.find("]")
        return entry[1:end] if end > 0 else entry
    if entry.count(":") == 1:  # IPv4 with a port; bare IPv6 has several colons
        return entry.partition(":")[0]
    return entry


def request_address(request: HttpRequest) -> str:
    """The client's address as text (``""`` when unknown), honouring the proxy settings.

    * Neither setting (the default): ``REMOTE_ADDR``.
    * ``TRUSTED_PROXY_COUNT = n``: each of the ``n`` proxies in front of Django appends
      the address it was connected from to ``X-Forwarded-For``, so the ``n``-th entry
      from the right is the one the outermost trusted proxy saw: the client. Entries
      left of it are whatever the client sent, never read, so a client cannot choose its
      identity by adding entries. With fewer than ``n`` entries (a request that came in
      behind the outer proxies, such as a health check) the leftmost; without the
      header, ``REMOTE_ADDR``.
    * ``CLIENT_IP_HEADER = "X-Real-IP"``: that header, which your proxy must set
      (overwriting what the client sent); if it holds a list, its last entry. Without
      the header, ``REMOTE_ADDR``.

    Raises :class:`ConfigurationError` for settings :func:`proxy_settings` refuses.
    """
    remote = request.META.get("REMOTE_ADDR") or ""
    hops, header = proxy_settings()
    if header is not None:
        value = request.headers.get(header.strip())
        return (_host(value.rsplit(",", 1)[-1]) or remote) if value else remote
    if hops:
        forwarded = request.headers.get(FORWARDED_FOR)
        if not forwarded:
            return remote
        entries = forwarded.split(",")
        chosen = entries[-hops] if len(entries) >= hops else entries[0]
        return _host(chosen) or remote
    return remote


def client_ip(request: HttpRequest) -> str:
    """The identity of the client's address: ``ip:<address>``, ``addr:<digest>`` or
    ``ip:unknown``.

    The address is :func:`request_address`'s: ``REMOTE_ADDR``, or behind proxies the one
    ``ATOMICOPS["TRUSTED_PROXY_COUNT"]`` or ``["CLIENT_IP_HEADER"]`` says.
    """
    raw = request_address(request)
    if not raw:
        return "ip:unknown"
    address = client_address(raw)
    return f"ip:{address}" if address is not None else f"addr:{digest(raw)}"


def user_identity(request: HttpRequest, user: Any) -> str:
    """``user:<pk>`` for a signed-in ``user``, else the client's address."""
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}"
    return client_ip(request)


def check_key(key: Any) -> None:
    """Raise :class:`InvalidInput` unless ``key`` is ``"user"``, ``"ip"``,
    ``"header:<Name>"`` or a callable."""
    if callable(key):
        return
    if key in ("user", "ip") or (
        isinstance(key, str) and key.startswith(HEADER) and len(key) > len(HEADER)
    ):
        return
    raise InvalidInput(
        f"a client key must be 'user', 'ip', 'header:<Name>' or a callable, got {key!r}"
    )


def _from_value(value: Any) -> str | None:
    return None if value is None else f"key:{digest(str(value))}"


def _from_request(request: HttpRequest, key: str) -> str:
    if key.startswith(HEADER):
        value = request.headers.get(key[len(HEADER) :])
        # Without the header fall back to the address, so clients that omit it do not
        # all share one limit (and one abuser cannot use it up for everyone).
        return f"header:{digest(value)}" if value else client_ip(request)
    return client_ip(request)


def identify(request: HttpRequest, key: str | KeyFunc) -> str | None:
    """The identity of ``request`` for ``key`` (see :func:`check_key`); ``None`` when a
    callable key returns ``None`` (not limited). Sync code only: reads ``request.user``."""
    if callable(key):
        return _from_value(key(request))
    if key == "user":
        return user_identity(request, getattr(request, "user", None))
    return _from_request(request, key)


async def aidentify(request: HttpRequest, key: str | KeyFunc) -> str | None:
    """:func:`identify` for async code: awaits an async key function, reads the user with
    ``request.auser()`` (or in a thread on Django 4.2)."""
    if callable(key):
        value = key(request)
        if inspect.isawaitable(value):
            value = await value
        return _from_value(value)
    if key == "user":
        # request.user would hit the database synchronously, which async code may not.
        auser = getattr(request, "auser", None)
        if auser is not None:
            return user_identity(request, await auser())
        # Django 4.2 has no request.auser(): resolve the lazy user in a thread.
        return await sync_to_async(identify)(request, key)
    return _from_request(request, key)
