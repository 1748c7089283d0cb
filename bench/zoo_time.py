"""Wall time of the model zoo (tests/test_zoo.py), per check, cold and then warm.

    python bench/zoo_time.py

Writes the zoo's suite into a temporary directory and runs it twice in fresh processes on
one fresh inductor cache: first cold (empty cache), then warm. Prints a markdown table for
bench/RESULTS.md: each check's outcome, its test-call wall time in both runs, and from the
cold run's report its graphs, recompiles and compile seconds (first compile and total).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_zoo  # noqa: E402  (its suite, conftest and models, as the test writes them)

DURATION = re.compile(r"^\s*([\d.]+)s call\s+test_zoo_suite\.py::(\S+)")


def run_suite(folder: Path, cache: Path, report: Path) -> tuple[float, dict[str, float]]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:randomly",
        "-q",
        "--durations=0",
        "--durations-min=0",
        "--compile-modes=default",
        f"--compile-cache-dir={cache}",
        f"--compile-report={report}",
        "test_zoo_suite.py",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - start
    calls = {
        m.group(2): float(m.group(1)) for m in map(DURATION.match, done.stdout.splitlines()) if m
    }
    return wall, calls


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(test_zoo.CONFTEST)
        (folder / "zoo_models.py").write_text(test_zoo.MODELS)
        (folder / "test_zoo_suite.py").write_text(test_zoo.SUITE)
        cache = folder / "inductor-cache"
        cold_wall, cold = run_suite(folder, cache, folder / "cold.json")
        warm_wall, warm = run_suite(folder, cache, folder / "warm.json")
        records = {
            r["test_id"].split("::")[1]: r
            for r in json.loads((folder / "cold.json").read_text())["records"]
        }
    print(f"whole module: cold {cold_wall:.1f} s, warm {warm_wall:.1f} s (wall, one process)\n")
    print(
        "| check | outcome | cold call (s) | warm call (s) | graphs | recompiles "
        "| first compile (s) | all compiles (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for test_id, record in records.items():
        print(
            f"| {test_id} | {record['outcome']} | {cold.get(test_id, float('nan')):.1f} "
            f"| {warm.get(test_id, float('nan')):.1f} | {record['graphs']} "
            f"| {len(record['recompiles'])} | {record['compile_seconds'] or 0:.1f} "
            f"| {record['compile_seconds_total'] or 0:.1f} |"
        )


if __name__ == "__main__":
    main()
