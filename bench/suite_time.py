"""Wall time of the examples suite: cold, warm (persistent cache), and warm with -n 2.

    python bench/suite_time.py --repeats 3

cold:  --compile-cold, a fresh empty inductor cache for every check.
warm:  a second run with the same --compile-cache-dir as a first, filling run.
-n 2:  warm, over two xdist workers (speed checks skip themselves there).
Each configuration runs in a fresh pytest process; medians over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run(*args: str) -> float:
    cmd = [sys.executable, "-m", "pytest", "examples", "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="suite-time-cache-")
    warm_cache = f"--compile-cache-dir={cache}"
    run(warm_cache)  # fill the persistent cache once
    times: dict[str, list[float]] = {"cold": [], "warm": [], "warm, -n 2": []}
    for _ in range(args.repeats):
        times["cold"].append(run("--compile-cold"))
        times["warm"].append(run(warm_cache))
        times["warm, -n 2"].append(run(warm_cache, "-n", "2"))
    cold = statistics.median(times["cold"])
    print(f"examples suite, median of {args.repeats} runs each")
    print("| run | wall time (s) | vs cold |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {cold / median:.2f}x faster |")


if __name__ == "__main__":
    main()
