"""Short runs of bin/jepsen's runner against real servers, each in its own process.

Every workload under every nemesis that must stay valid (none, kill -9 with
appendfsync always, SIGSTOP past the socket timeout; with and without WAIT_REPLICAS=1)
runs for 1.5 seconds and must come out valid with calls that succeeded and, under a
nemesis, at least one fault. ``--control`` (a non-atomic read-then-write) must come out
invalid for each workload: the checker can fail. A Sentinel failover may lose
acknowledged writes, with or without WAIT_REPLICAS=1 (docs/reliability.md shows it
happen), so its runs must end with a verdict (exit 0 or 1, never 2) and, when
invalid, a loss the checker names. The long runs are ``bin/jepsen`` (README).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CI
from tests.servers import redis_server_binary

pytestmark = [pytest.mark.slow, pytest.mark.real, pytest.mark.faults]

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ["register", "counter", "lock"]


@pytest.fixture(autouse=True)
def _binary():
    if redis_server_binary() is None:
        if CI:
            pytest.fail("no redis-server on PATH; with CI=true every real server must run")
        pytest.skip("no redis-server on PATH")


def jepsen(*args: str) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.jepsen.runner", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert done.returncode in (0, 1), f"harness failure: {report}\n{done.stderr[-3000:]}"
    for field in ("workload", "nemesis", "ops", "indeterminate", "valid", "anomaly"):
        assert field in report, field
    assert report["ops"] > 0
    assert (done.returncode == 0) is (report["valid"] is True)
    return done.returncode, report


@pytest.mark.parametrize("wait", [False, True], ids=["", "wait"])
@pytest.mark.parametrize("nemesis", ["none", "kill", "pause"])
@pytest.mark.parametrize("workload", WORKLOADS)
def test_stays_valid(workload, nemesis, wait):
    args = ["--workload", workload, "--nemesis", nemesis, "--seconds", "1.5", "--clients", "4"]
    code, report = jepsen(*args, *(["--wait"] if wait else []))
    assert code == 0, report["anomaly"]
    assert report["valid"] is True and report["anomaly"] is None
    if nemesis != "none":
        assert report["faults"] >= 1, report


@pytest.mark.parametrize("workload", WORKLOADS)
def test_control_is_caught(workload):
    code, report = jepsen("--workload", workload, "--nemesis", "none", "--seconds", "2",
                          "--control")  # fmt: skip
    assert code == 1
    assert report["valid"] is False
    assert report["anomaly"]["history"], report["anomaly"]


LOSSES = {
    "register": {"not linearizable"},
    "counter": {"lost acknowledged increments", "lost update", "stale value"},
    "lock": {"fencing token reused", "interleaved critical sections"},
}


@pytest.mark.parametrize(
    "workload, wait", [("register", False), ("counter", True), ("lock", False)]
)
def test_failover_ends_with_a_verdict(workload, wait):
    # One failover per run (they take ~10 s each on a loaded machine): the three runs
    # cover each workload once and the WAIT setting both ways.
    args = ["--workload", workload, "--nemesis", "failover", "--seconds", "1.5", "--clients", "4"]
    code, report = jepsen(*args, *(["--wait"] if wait else []))
    assert report["faults"] >= 1, report
    if code == 1:
        assert report["anomaly"]["kind"] in LOSSES[workload], report["anomaly"]
