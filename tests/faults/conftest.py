"""Fixtures of the fault tests: servers of their own, and the figures the report prints.

Each fault test owns its servers (started here on free ports, in temp dirs, removed
afterwards): they are restarted, killed, filled up or kept busy, which the session's
shared servers must never be. With CI=true a missing server binary fails the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import CI, REAL_KINDS
from tests.faults.servers import OwnServer
from tests.servers import available_binaries

FIGURES = "reliability"  # the user_properties entry python -m tests.faults.report reads


def binary_for(kind: str) -> str:
    binaries = available_binaries()
    if kind not in binaries:
        message = f"no {kind} server binary on this machine"
        if CI:
            pytest.fail(f"{message}; with CI=true every real server must run")
        pytest.skip(message)
    return binaries[kind]


@pytest.fixture(params=REAL_KINDS)
def kind(request) -> str:
    """Each real server kind in turn (redis-server, valkey-server)."""
    binary_for(request.param)
    return request.param


@pytest.fixture
def make_server() -> Iterator[Callable[..., OwnServer]]:
    """``make_server(kind, *extra_args)``: a started server this test owns alone."""
    made: list[OwnServer] = []

    def make(kind: str, *extra: str, start: bool = True) -> OwnServer:
        server = OwnServer(kind, binary_for(kind), extra=tuple(extra))
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        server.remove()


@pytest.fixture
def figures(request) -> Callable[..., None]:
    """``figures(scenario, server, **numbers)``: what the reliability table shows."""

    def record(scenario: str, server: str, **numbers: Any) -> None:
        request.node.user_properties.append(
            (FIGURES, {"scenario": scenario, "server": server, **numbers})
        )

    return record
