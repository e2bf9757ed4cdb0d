"""Redis URLs made fit to show: the password out, everything else kept.

Used wherever a URL reaches a person: errors, ``manage.py`` output, system checks, the
admin dashboard, the demo's pages.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit

MASK = "***"

# Query parameters that carry a secret: redis-py reads ``password`` from the query, and
# a URL may carry other credentials its author added (``ssl_password``, ``token``, ...).
_SECRET_PARAM = re.compile(r"pass|secret|token|auth|credential", re.IGNORECASE)


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
    url = str(url)
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
