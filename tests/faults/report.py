"""Run the fault-injection suite and print the reliability table (docs/reliability.md).

    .venv/bin/python -m tests.faults.report            # run tests/faults, print the table
    .venv/bin/python -m tests.faults.report --write    # ... and put it in docs/reliability.md
    .venv/bin/python -m tests.faults.report -- -m "not slow"   # extra pytest arguments

Each test records its figures (``figures`` fixture in tests/faults/conftest.py); tests of
one scenario on one server make one row. The exit status is pytest's.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"
FIGURES = "reliability"  # tests.faults.conftest.FIGURES (not imported: no Django needed here)


class Collector:
    """A pytest plugin: each test's outcome, duration and figures."""

    def __init__(self) -> None:
        self.tests: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        test = self.tests.setdefault(
            report.nodeid, {"outcome": "passed", "duration": 0.0, "figures": [], "why": ""}
        )
        test["duration"] += report.duration
        if report.failed:
            test["outcome"] = "failed" if report.when == "call" else "error"
            test["why"] = _first_line(report)
        elif report.skipped and test["outcome"] == "passed":
            test["outcome"] = "skipped"
        for name, value in report.user_properties:
            if name == FIGURES and value not in test["figures"]:
                test["figures"].append(value)


def _first_line(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # An assertion listing failures: its count line and the first failure say most.
    return " / ".join(lines[:2])[:300]


SUMMED = {"calls", "examples"}  # figures of several tests of a row that add up


def _aggregate(key: str, values: list[Any]) -> str:
    if len(values) == 1:
        return str(values[0])
    if key in SUMMED and all(isinstance(v, int) for v in values):
        return str(sum(values))
    counts = Counter(map(str, values))
    if len(counts) == 1:
        return f"{values[0]} (x{len(values)})"
    shown = ", ".join(f"{value} x{n}" for value, n in counts.most_common(4))
    return shown + (", ..." if len(counts) > 4 else "")


def rows(tests: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    outcomes: dict[tuple[str, str], Counter] = defaultdict(Counter)
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    for nodeid, test in tests.items():
        figures = test["figures"] or [{"scenario": _module_scenario(nodeid), "server": "-"}]
        for entry in figures:
            groups[entry["scenario"], entry["server"]].append(entry)
        # A test that makes several rows counts in each of them: by its own outcome, or,
        # when each row counts its failures, by those.
        split = len(figures) > 1 and all("failures" in e for e in figures)
        for entry in figures:
            outcome = test["outcome"]
            if split and outcome == "failed":
                outcome = "failed" if entry["failures"] else "passed"
            outcomes[entry["scenario"], entry["server"]][outcome] += 1
        seconds[figures[0]["scenario"], figures[0]["server"]] += test["duration"]
    table = []
    for group in sorted(groups):
        entries = groups[group]
        keys = [k for k in entries[0] if k not in ("scenario", "server")]
        numbers = "; ".join(
            f"{k.replace('_', ' ')}: {_aggregate(k, [e.get(k) for e in entries if k in e])}"
            for k in keys
        )
        counted = outcomes.get(group) or Counter()
        total = sum(counted.values())
        if total:
            result = f"{counted['passed']}/{total} passed"
            bad = counted["failed"] + counted["error"]
            if bad:
                result = f"**{bad} failed**, {result}"
        else:
            result = "-"
        table.append(
            {
                "scenario": group[0],
                "server": group[1],
                "result": result,
                "figures": numbers or "-",
                "time": f"{seconds[group]:.1f} s" if seconds.get(group) else "(above)",
            }
        )
    return table


def _module_scenario(nodeid: str) -> str:
    return nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")


def markdown(table: list[dict[str, str]]) -> str:
    lines = [
        "| scenario | server | result | figures of the last run | time |",
        "|---|---|---|---|---|",
    ]
    for row in table:
        cells = [
            row[k].replace("|", "\\|") for k in ("scenario", "server", "result", "figures", "time")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failures(tests: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"- `{nodeid}`: {test['why']}"
        for nodeid, test in sorted(tests.items())
        if test["outcome"] in ("failed", "error")
    ]


def environment() -> str:
    from tests.servers import available_binaries

    versions = []
    for name, binary in sorted(available_binaries().items()):
        try:
            out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
            version = re.search(r"v=(\S+)", out.stdout)
            versions.append(f"{name}-server {version.group(1) if version else '?'}")
        except OSError:
            versions.append(f"{name}-server ?")
    import redis

    return (
        f"{', '.join(versions)}; redis-py {redis.__version__}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs"
    )


def write(block: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed on to pytest")
    options = parser.parse_args(argv)

    import pytest

    os.chdir(ROOT)
    collector = Collector()
    started = time.monotonic()
    status = pytest.main(
        ["-q", "-p", "no:cacheprovider", "tests/faults", *options.pytest_args], plugins=[collector]
    )
    elapsed = time.monotonic() - started
    table = markdown(rows(collector.tests))
    failed = failures(collector.tests)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = "\n".join(
        [
            f"Last run: {stamp}, {len(collector.tests)} tests in {elapsed:.0f} s "
            f"({environment()}).",
            "",
            table,
            "",
            *(["Failing tests of that run:", "", *failed] if failed else ["Every test passed."]),
        ]
    )
    print()
    print(block)
    if options.write:
        write(block)
        print(f"\n(written to {DOC.relative_to(ROOT)})")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
