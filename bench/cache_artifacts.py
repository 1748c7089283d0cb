"""A fresh CI runner with and without --compile-cache-artifacts: the examples suite's wall
time on an empty inductor cache directory, side by side.

    python bench/cache_artifacts.py --repeats 2
    python bench/cache_artifacts.py --suite gpu_suite --pytest-args="-p pytest_torchcompile.plugin"

A first run fills an artifacts file (and is not timed). Then, each repeat, in turn:
fresh:      an empty --compile-cache-dir, no artifacts (what a CI runner pays today);
artifacts:  another empty --compile-cache-dir, with the artifacts file loaded at start;
warm dir:   the first run's cache directory itself (what keeping the whole directory
            in CI's cache gives: the ceiling for artifacts).
Each run is a fresh pytest process; medians over the repeats.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent


SUITE = ["examples"]


def run(*args: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "pytest", *SUITE, "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}")
    return elapsed, done.stdout


def cache_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith(("compile cache:", "cache art"))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--suite", default="examples", help="the tests to run (a path)")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments, one string")
    args = parser.parse_args()
    SUITE[:] = [args.suite, *args.pytest_args.split()]
    work = Path(tempfile.mkdtemp(prefix="cache-artifacts-bench-"))
    artifacts = work / "artifacts.bin"
    filled = work / "filled-cache"
    seconds, output = run(f"--compile-cache-dir={filled}", f"--compile-cache-artifacts={artifacts}")
    print(f"filling run: {seconds:.1f} s; {'; '.join(cache_lines(output))}")
    size = artifacts.stat().st_size
    times: dict[str, list[float]] = {"fresh": [], "artifacts": [], "warm dir": []}
    shown = ""
    for repeat in range(args.repeats):
        fresh = work / f"fresh-{repeat}"
        seconds, _ = run(f"--compile-cache-dir={fresh}")
        times["fresh"].append(seconds)
        loaded = work / f"loaded-{repeat}"
        copy = work / f"artifacts-{repeat}.bin"  # each run reads the same, unchanged file
        shutil.copy(artifacts, copy)
        seconds, output = run(f"--compile-cache-dir={loaded}", f"--compile-cache-artifacts={copy}")
        times["artifacts"].append(seconds)
        shown = "; ".join(cache_lines(output))
        seconds, _ = run(f"--compile-cache-dir={filled}")
        times["warm dir"].append(seconds)
    fresh_median = statistics.median(times["fresh"])
    print(f"{args.suite}, median of {args.repeats} run(s) each; artifacts file {size / 1e6:.1f} MB")
    print(f"with artifacts: {shown}")
    print("| run | wall time (s) | vs fresh |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {median:.1f} ({runs}) | {fresh_median / median:.2f}x faster |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
