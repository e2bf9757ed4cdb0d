"""The results table of docs/reliability.md from saved runs:
``python -m tests.jepsen.table OUT...``, each OUT a file holding a run's output (its last
line is the runner's JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def row(report: dict[str, Any]) -> str:
    what = ", control (read, then write)" if report.get("control") else ""
    wait = "WAIT_REPLICAS=1" if report.get("wait") else "-"
    if report.get("valid") is None:
        verdict, anomaly = "no verdict", report.get("error") or report["anomaly"]["description"]
    else:
        verdict = "valid" if report["valid"] else "**invalid**"
        anomaly = "" if report["anomaly"] is None else report["anomaly"]["kind"]
    checker = report.get("checker", {})
    detail = ", ".join(f"{k} {v}" for k, v in checker.items() if k not in ("limit",))
    return (
        f"| {report['workload']} | {report['nemesis']}{what} | {wait} | "
        f"{report.get('seconds', '?'):g} s, {report.get('faults', 0)} | {report['ops']} | "
        f"{report['indeterminate']} | {verdict} | {anomaly} | {detail} |"
    )


def main(paths: list[str]) -> None:
    print("| workload | nemesis | WAIT | run, faults | ops | indeterminate | verdict | anomaly "
          "| checker |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        lines = Path(path).read_text().strip().splitlines()
        print(row(json.loads(lines[-1])))


if __name__ == "__main__":
    main(sys.argv[1:])
