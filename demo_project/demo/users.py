"""The demo superuser: a fixed, documented name and a generated password kept on disk.

The password is never written in settings or code: ``demo_user`` generates one the
first time and keeps it in ``DEMO_PASSWORD_FILE`` (``.demo-data/``, git-ignored,
readable by its owner only, never through a symbolic link: see
``demo_project/private_files.py``), so it stays the same across restarts of the demo.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from demo_project.private_files import read_secret, write_secret

USERNAME = "demo"


def password_file() -> Path | None:
    path = getattr(settings, "DEMO_PASSWORD_FILE", None)
    return Path(path) if path else None


def stored_password() -> str | None:
    """The stored password, or None. Raises :class:`UnsafeSecretFile` for a symlink."""
    path = password_file()
    return None if path is None else read_secret(path)


def _store(password: str) -> None:
    path = password_file()
    if path is not None:
        write_secret(path, password)


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
