"""The runner's contract without servers: the last line is one JSON object, exit 0 / 1 / 2."""

from __future__ import annotations

import json

import pytest

from tests.jepsen import runner


@pytest.mark.parametrize("valid, status", [(True, 0), (False, 1), (None, 2)])
def test_exit_status_follows_the_verdict(monkeypatch, capsys, valid, status):
    monkeypatch.setattr(runner, "setup_django", lambda: None)
    monkeypatch.setattr(
        runner,
        "run",
        lambda args: {
            "workload": args.workload,
            "nemesis": args.nemesis,
            "ops": 3,
            "indeterminate": 0,
            "valid": valid,
            "anomaly": None,
        },  # fmt: skip
    )
    assert runner.main(["--workload", "counter", "--nemesis", "kill", "--seconds", "1"]) == status
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["valid"] is valid and last["workload"] == "counter"


def test_a_harness_failure_is_exit_2_with_the_json_line(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("redis-server did not start")

    monkeypatch.setattr(runner, "setup_django", lambda: None)
    monkeypatch.setattr(runner, "run", broken)
    args = ["--workload", "lock", "--nemesis", "failover", "--seconds", "1", "--wait"]
    assert runner.main(args) == 2
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["valid"] is None and last["wait"] is True
    assert "redis-server did not start" in last["error"]
    for field in ("workload", "nemesis", "ops", "indeterminate", "valid", "anomaly"):
        assert field in last


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit) as exc:
        runner.parse(["--workload", "queue", "--nemesis", "none", "--seconds", "1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        runner.parse(["--workload", "lock", "--nemesis", "none", "--seconds", "0"])
