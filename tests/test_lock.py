"""The lock CI installs from (requirements/, refreshed by bin/lock) says what it must.

A clean clone gets the same versions every day only if every line is an exact pin, the
tools whose releases have broken the build before are among them, the floor leg pins
exactly the lower bounds pyproject.toml declares, and the virtualenv a run uses holds
what its lock says (bin/test names the lock in ATOMICOPS_TEST_LOCK).
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCKED = ROOT / "requirements" / "locked.txt"
LOWEST = ROOT / "requirements" / "lowest.txt"


def pins(path: Path) -> dict[str, str]:
    """``{name: version}`` of the lines that apply to this interpreter."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, equals, version = requirement.strip().partition("==")
        assert equals, f"{path.name}: not an exact pin: {line!r}"
        found[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return found


def runtime_floors() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        (low,) = [s.version for s in requirement.specifier if s.operator == ">="]
        floors[requirement.name.lower()] = low
    return floors


def test_every_line_is_an_exact_pin_and_the_toolchain_is_pinned():
    locked = pins(LOCKED)
    for name in ("redis", "django", "mypy", "django-stubs", "ruff", "pytest", "pytest-django"):
        assert name in locked, f"{name} is not in requirements/locked.txt"
    pins(LOWEST)  # exact pins too


def test_the_lowest_leg_pins_the_floors_pyproject_declares():
    lowest = pins(LOWEST)
    floors = runtime_floors()
    assert set(floors) == {"django", "redis"}
    for name, low in floors.items():
        assert Version(lowest[name]) == Version(low), (
            f"lowest.txt pins {name}=={lowest[name]}, pyproject allows {low}"
        )


def test_the_locked_versions_are_within_what_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = pins(LOCKED)
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        assert requirement.specifier.contains(locked[requirement.name.lower()])


def test_this_run_uses_the_versions_its_lock_pins():
    lock = os.environ.get("ATOMICOPS_TEST_LOCK")
    if not lock:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs through bin/test, which names the lock in ATOMICOPS_TEST_LOCK")
        pytest.skip("not run through bin/test: no lock to compare with")
    wrong = {
        name: (version, metadata.version(name))
        for name, version in pins(ROOT / lock).items()
        if metadata.version(name) != version
    }
    assert not wrong, f"installed versions differ from {lock}: {wrong}"
