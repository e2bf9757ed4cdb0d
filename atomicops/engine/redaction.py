"""URLs made fit to show: the password out, everything else kept; the one redaction.

Every URL atomicops shows goes through :func:`redact_url` (or :func:`redact_text` for a
message that may hold one): the REST client's ``repr``, errors, ``manage.py`` output,
system checks, logs, the admin dashboard, the demo's pages. Userinfo passwords and query
parameters that look secret (``password``, ``token``, Upstash's ``_token``, ``key``,
``secret``...) are masked. :class:`Secret` holds a credential (the REST token) so that no
``repr`` or ``str`` of it, and no debug page's frame locals, ever shows it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import unquote_plus, urlsplit

MASK = "***"

# Query parameters that carry a secret: redis-py reads ``password`` from the query, and
# a URL may carry other credentials its author added (``ssl_password``, ``token``, ...).
_SECRET_PARAM = re.compile(
    r"pass|pwd|secret|token|auth|credential|key|sig|session|cookie|bearer", re.IGNORECASE
)
# A URL inside free text (an error's words): a scheme, "://", up to white space or a quote.
_URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>`]+""")


class Secret:
    """A credential that is never shown: ``repr`` and ``str`` are ``***``.

    :meth:`reveal` gives the value, to be used inline where it is sent (building a
    request's header), so that no variable of a traceback's frames holds it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled")


class MaskedBytes(bytes):
    """Bytes that carry a secret (an ``Authorization`` header's value) and show as
    ``b'***'``: a list of headers printed, or shown among a debug page's frame
    locals, keeps the secret out."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK.encode())

    __str__ = __repr__


class ShownURL(str):
    """A URL that is sent as it is and shown (``repr``) redacted: for the variables on
    a request's path, which a debug page prints."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_url(str.__str__(self)))


def key_digest(key: Any) -> str:
    """A key as logs name it: a short digest, never the text a user chose (an e-mail
    address, a client's IP, a token) in clear; the same key always gives the same one."""
    data = key if isinstance(key, bytes) else str(key).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:12]


def for_log(error: BaseException) -> str:
    """An error as logs show it: its class and its message, with its key (which every
    atomicops message quotes) replaced by the key's digest and URLs redacted. The reason
    stays readable ("not UTF-8", "Connection refused"); the key a user chose does not."""
    message = str(error)
    key = getattr(error, "key", None)
    if key:
        shown = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        message = message.replace(shown, f"#{key_digest(key)}")
    return f"{type(error).__name__}: {redact_text(message)}"


def redact_text(text: object) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), str(text))


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***``; for display only.

    Handles ``redis://``, ``rediss://`` and ``unix://`` URLs the way redis-py parses them:
    the user part ends at the *last* ``@`` of the authority (so a password may contain
    ``@``), the username is kept, and ``password=`` (or any parameter whose name says
    pass, secret, token, auth or credential) is masked in the query. A URL that does not
    parse, or has an ``@`` after its authority (a password with an unescaped ``/``, ``?``
    or ``#`` ends the authority early), keeps nothing between ``://`` and its last ``@``.
    Text without ``://`` only has its query masked.
    """
    url = str.__str__(url) if isinstance(url, str) else str(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _mask_query(url)
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return _loosely(scheme, rest)
    # urlsplit's netloc is the text after "//" up to the first "/", "?" or "#".
    tail = rest[len(netloc) :]
    if "@" in tail or not rest.startswith(netloc):
        return _loosely(scheme, rest)
    user, at, host = netloc.rpartition("@")
    if at:
        name, colon, password = user.partition(":")
        if colon and password:
            netloc = f"{name}:{MASK}@{host}"
    return f"{scheme}://{netloc}{_mask_query(tail)}"


def _loosely(scheme: str, rest: str) -> str:
    _, at, after = rest.rpartition("@")
    return f"{scheme}://{MASK}@{_mask_query(after)}" if at else f"{scheme}://{_mask_query(rest)}"


def _mask_query(text: str) -> str:
    """``/0?a=1&password=x#f`` -> ``/0?a=1&password=***#f``; the rest as written."""
    head, mark, query = text.partition("?")
    if not mark:
        return text
    query, hash_, fragment = query.partition("#")
    pieces = []
    for piece in query.split("&"):
        name, eq, value = piece.partition("=")
        if eq and value and _SECRET_PARAM.search(unquote_plus(name)):
            piece = f"{name}={MASK}"
        pieces.append(piece)
    return f"{head}?{'&'.join(pieces)}{hash_}{fragment}"
