"""What a strict project's type checker sees of the public API (``mypy --strict``).

Inside ``with Lock(...) as lock:`` the lock is held, so ``lock.fencing_token`` is an
``int`` (the README passes it on as one); outside it may be ``None``. The main suite's
virtualenv has mypy (the ``typecheck`` extra); the Django matrix legs do not.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy")

SNIPPET = """
from atomicops import Lock, Semaphore


def write(token: int) -> None: ...


def sync_use() -> int:
    with Lock("report", ttl=30) as lock:
        write(lock.fencing_token)
        lock.extend(10)
        return lock.fencing_token


async def async_use() -> int:
    async with Semaphore("jobs", limit=4, ttl=30) as slot:
        return slot.fencing_token


def outside(lock: Lock) -> int:
    return lock.fencing_token  # line 20: may be None before an acquire
"""


def test_a_held_lock_has_an_int_fencing_token_for_strict_checkers(tmp_path):
    path = tmp_path / "strict_user.py"
    path.write_text(textwrap.dedent(SNIPPET).lstrip())
    (tmp_path / "none.ini").write_text("[mypy]\n")
    # No project config: a user's own strict run, following atomicops' py.typed hints.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file",
         str(tmp_path / "none.ini"), "--follow-imports=silent", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, done.stdout + done.stderr
    assert errors[0].startswith(f"{path}:20:") and '"int | None"' in errors[0], done.stdout
