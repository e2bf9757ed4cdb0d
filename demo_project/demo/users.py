"""The demo superuser: a fixed, documented name and a generated password kept on disk.

The password is never written in settings or code: ``demo_user`` generates one the
first time and keeps it in ``DEMO_PASSWORD_FILE`` (``.demo-data/``, git-ignored,
readable by its owner only), so it stays the same across restarts of the demo.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

USERNAME = "demo"


def password_file() -> Path | None:
    path = getattr(settings, "DEMO_PASSWORD_FILE", None)
    return Path(path) if path else None


def stored_password() -> str | None:
    path = password_file()
    if path is None or not path.is_file():
        return None
    return path.read_text().strip() or None


def _store(password: str) -> None:
    path = password_file()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created owner-only from the start, not chmod-ed after the text is in it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")


def ensure_demo_user(username: str = USERNAME, password: str | None = None) -> tuple[str, bool]:
    """Create or update the superuser; return ``(password, created)``.

    The password is ``password`` if given (and stored), else the stored one, else a new
    random one (stored).
    """
    if password is None:
        password = stored_password()
    if password is None:
        password = secrets.token_urlsafe(12)
    _store(password)
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    user.is_staff = True
    user.is_superuser = True
    user.is_active = True
    user.set_password(password)
    user.save()
    return password, created
