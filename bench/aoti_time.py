"""What an ``aoti`` check costs, cold and warm: the example MLP and the token-id transformer.

    python bench/aoti_time.py --repeats 2

Each run is a fresh pytest process on a generated test file, ``--compile-modes=aoti``; the
check's own compile time (export + AOT compile, or export + load when the package was
cached) comes from its record, the wall time from the clock. Three states, in turn:
cold:          empty inductor cache, empty package cache, fresh TMPDIR (inductor's
               precompiled header lives there): a fresh CI runner;
inductor warm: the inductor cache and header kept, the package cache empty
               (what a changed model costs on a warm runner: g++ still runs);
package warm:  the package loaded from the cache (a rerun with nothing changed).
The export target is timed beside it (its own column), from the same runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent

TESTS = """
import sys
import torch
sys.path.insert(0, {examples!r})
from models import MLP, TinyLM
from pytest_torchcompile import TensorSpec, compile_equivalent


@compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={{"batch": (1, 64)}}, examples=6)
def test_mlp():
    torch.manual_seed(0)
    return MLP().eval()


@compile_equivalent(
    inputs={{"input_ids": TensorSpec("batch", "seq", dtype=torch.long, high=100)}},
    dims={{"batch": (1, 4), "seq": (1, 32)}},
    examples=6,
)
def test_transformer():
    torch.manual_seed(0)
    return TinyLM(100).eval()
"""


def run(folder: Path, test: str, mode: str, env: dict[str, str]) -> tuple[float, dict]:
    report = folder / f"report-{test}-{mode}.json"
    cmd = [sys.executable, "-m", "pytest", "test_bench.py", "-q", "-k", test, "-W", "ignore"]
    cmd += [f"--compile-modes={mode}", f"--compile-report={report}", "--compile-diagnose=off"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}")
    (record,) = json.loads(report.read_text())["records"]
    return elapsed, record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    sizes: dict[str, int] = {}
    for _ in range(args.repeats):
        for test in ("mlp", "transformer"):
            work = Path(tempfile.mkdtemp(prefix="aoti-bench-"))
            (work / "test_bench.py").write_text(TESTS.format(examples=str(ROOT / "examples")))
            tmp = work / "tmp"
            tmp.mkdir()
            env = dict(os.environ, TMPDIR=str(tmp), TORCHINDUCTOR_CACHE_DIR=str(work / "inductor"))
            for state in ("cold", "inductor warm", "package warm"):
                if state == "inductor warm":  # drop the packages, keep inductor's cache
                    subprocess.run(["rm", "-rf", str(work / ".pytest_cache")], check=True)
                seconds, record = run(work, test, "aoti", env)
                assert record["outcome"] == "passed", record
                assert record["package_cached"] == (state == "package warm"), (state, record)
                rows.setdefault((test, state), []).append((seconds, record["compile_seconds"]))
                sizes[test] = record["package_bytes"]
            seconds, record = run(work, test, "export", env)
            rows.setdefault((test, "export"), []).append((seconds, record["compile_seconds"]))
    print(f"median of {args.repeats} run(s); torch {_torch_version()}")
    print("| model | state | pytest wall (s) | check's compile (s) | package |")
    print("|---|---|---|---|---|")
    for (test, state), values in rows.items():
        wall = statistics.median(v[0] for v in values)
        compile_s = statistics.median(v[1] for v in values)
        size = f"{sizes[test] / 1e6:.2f} MB" if state != "export" else "-"
        label = state if state != "export" else "export target (warm)"
        print(f"| {test} | {label} | {wall:.1f} | {compile_s:.1f} | {size} |")


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
