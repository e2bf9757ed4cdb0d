"""The ``pytest11`` entry point ``atomicops``: off unless the project asks for it.

pytest loads every installed ``pytest11`` entry point in every run, including projects
that never asked for atomicops' fixtures. So this module only adds a switch, and loads the
plugin (:mod:`atomicops.testing`) when it is on: ``pytest --atomicops``, or in the ini
file ``atomicops = true`` (``[tool.pytest.ini_options]``, ``pytest.ini``...). It imports
neither pytest nor Django.
"""

from __future__ import annotations

from typing import Any

PLUGIN = "atomicops.testing"


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--atomicops",
        action="store_true",
        default=False,
        help=f"load atomicops' fixtures ({PLUGIN}: atomicops_fakeredis, atomicops_valkey)",
    )
    parser.addini(
        "atomicops",
        type="bool",
        default=False,
        help=f"load atomicops' fixtures ({PLUGIN}), as --atomicops does",
    )


def pytest_configure(config: Any) -> None:
    if config.getoption("atomicops") or config.getini("atomicops"):
        # Registered under its module name, so `-p atomicops.testing` as well is harmless.
        config.pluginmanager.import_plugin(PLUGIN)
