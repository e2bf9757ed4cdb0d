"""Files that hold a demo secret (the secret key, the demo user's password).

Owner-only (0600) whether the file is new or was left wider by an older demo, never
opened through a symbolic link, never a file another user owns: in a shared or
careless data directory, a planted link would have the demo overwrite the file it
points at, and a planted file would hand the demo a password someone else knows.
Imported by the settings, so nothing here imports Django.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: opening a FIFO planted under the file's name must not hang the demo.
_FLAGS = _NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


class UnsafeSecretFile(RuntimeError):
    """A secret file is a symbolic link, not a regular file, or someone else's."""


def _open(path: Path, flags: int) -> int:
    if not _NOFOLLOW and path.is_symlink():  # a platform without O_NOFOLLOW
        raise UnsafeSecretFile(f"{path} is a symbolic link; remove it, the demo will not follow it")
    try:
        fd = os.open(path, flags | _FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise UnsafeSecretFile(
                f"{path} is a symbolic link; remove it, the demo will not follow it"
            ) from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeSecretFile(f"{path} is not a regular file")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise UnsafeSecretFile(f"{path} belongs to another user (uid {info.st_uid})")
        if stat.S_IMODE(info.st_mode) != 0o600 and hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # an older demo wrote it with the umask's mode
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_secret(path: Path) -> str | None:
    """The file's text, stripped; None when it is missing or empty. Tightens it to 0600."""
    try:
        fd = _open(Path(path), os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        return handle.read().strip() or None


def write_secret(path: Path, text: str) -> None:
    """Replace the file's text, creating it 0600 (its directory 0700) if needed."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = _open(path, os.O_WRONLY | os.O_CREAT)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        # Truncated only now: O_TRUNC would empty a file before the checks refuse it.
        handle.truncate(0)
        handle.write(text + "\n")


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The stored secret, or ``make()`` stored on first use; safe for concurrent starts."""
    path = Path(path)
    found = read_secret(path)
    if found:
        return found
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        # Another process created it a moment ago: wait for its text.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            found = read_secret(path)
            if found:
                return found
            time.sleep(0.02)
        value = make()  # left empty (a crash mid-write): fill it
        write_secret(path, value)
        return value
    value = make()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value
