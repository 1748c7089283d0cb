"""How right is the speed gate? Run with the other core busy:

    python bench/speed_gate.py --aa-trials 100 --trials 20 [--threads N]

(1) A/A: eager against an identical copy of itself with min_speedup=0.9: how often does the
    gate fail a model that is exactly as fast (false failures)?
(2) A fused pointwise chain (inductor fuses it, ~3x): spread of the estimated speedup over
    repeated gated measurements, against a long reference measurement. Precision matters
    when the speedup is near the threshold, and there the gate uses its whole budget: so
    the threshold is set just under the reference ("near"). A clear pass (min_speedup=1.2)
    shows how soon the gate decides, and how rough an early estimate is.
(3) The same numbers for the naive way: time eager, then compiled, one after the other as
    two pytest-benchmark runs would, and compare the ratio of means to the threshold.
A busy-loop process loads the other core throughout. --threads sets torch's thread count
(default: torch's own, one per core), as a user would; the plugin never changes it.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
from models import MLP, PointwiseChain  # noqa: E402

from pytest_torchcompile.devices import synchronizer  # noqa: E402
from pytest_torchcompile.equivalence import Example, runner  # noqa: E402
from pytest_torchcompile.stats import estimate  # noqa: E402
from pytest_torchcompile.timing import calibrate, measure, time_block  # noqa: E402


def busy() -> None:
    while True:
        pass


def naive(eager, compiled, budget: float) -> float:
    """Two sequential runs, as two pytest-benchmark tests: ratio of mean times."""
    sync = synchronizer("cpu")
    calls = calibrate([eager, compiled], sync)
    means = []
    for fn in (eager, compiled):
        times, end = [], time.perf_counter() + budget / 2
        while time.perf_counter() < end:
            times.append(time_block(fn, calls, sync))
        means.append(statistics.fmean(times))
    return means[0] / means[1]


def reference(eager, compiled, rounds: int) -> float:
    sync = synchronizer("cpu")
    calls = calibrate([eager, compiled], sync)
    e, c = [], []
    for i in range(rounds):
        pair = [(e, eager), (c, compiled)]
        for times, fn in pair if i % 2 == 0 else reversed(pair):
            times.append(time_block(fn, calls, sync))
    return estimate(e, c).speedup


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def aa(args: argparse.Namespace) -> None:
    model = MLP().eval()
    x = Example((torch.randn(64, 128),), {}, {})
    a, b = runner(model, x, grad=False), runner(copy.deepcopy(model), x, grad=False)
    gate_fail, naive_fail, seconds = 0, 0, []
    for _ in range(args.aa_trials):
        start = time.perf_counter()
        timing = measure(a, b, min_speedup=0.9, max_time=args.max_time, device="cpu")
        seconds.append(time.perf_counter() - start)
        gate_fail += not timing.decision.passed
        naive_fail += naive(a, b, budget=seconds[-1]) < 0.9
    n = args.aa_trials
    print(
        f"A/A, {n} trials, min_speedup=0.9: gate false failures {gate_fail}/{n} "
        f"({100 * gate_fail / n:.1f}%), naive (same time budget) {naive_fail}/{n} "
        f"({100 * naive_fail / n:.1f}%); gate median time {statistics.median(seconds):.2f} s"
    )


def spread(label: str, eager_fn, compiled_fn, ref: float, min_speedup: float, args) -> None:
    gated, plain, spent = [], [], []
    for _ in range(args.trials):
        start = time.perf_counter()
        timing = measure(
            eager_fn, compiled_fn, min_speedup=min_speedup, max_time=args.max_time, device="cpu"
        )
        spent.append(time.perf_counter() - start)
        gated.append(timing.decision.estimate.speedup)
        plain.append(naive(eager_fn, compiled_fn, budget=spent[-1]))
    gate_err = [abs(s - ref) / ref for s in gated]
    naive_err = [abs(s - ref) / ref for s in plain]
    print(
        f"  {label} (min_speedup={min_speedup:.2f}, {args.trials} trials): gate median "
        f"{statistics.median(gated):.3f}x, p95 relative error {100 * p95(gate_err):.1f}%, "
        f"median time {statistics.median(spent):.2f} s; naive (same time) median "
        f"{statistics.median(plain):.3f}x, p95 relative error {100 * p95(naive_err):.1f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--aa-trials", type=int, default=100)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-time", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = multiprocessing.Process(target=busy, daemon=True)
    load.start()
    try:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, other core busy")
        if args.aa_trials:
            aa(args)
        chain = PointwiseChain()
        big = Example((torch.randn(1 << 20),), {}, {})
        compiled_chain = torch.compile(chain)
        eager_fn, compiled_fn = (
            runner(chain, big, grad=False),
            runner(compiled_chain, big, grad=False),
        )
        compiled_fn()
        ref = reference(eager_fn, compiled_fn, rounds=400)
        print(f"pointwise chain, reference speedup {ref:.3f}x (400 interleaved rounds)")
        spread("near the threshold", eager_fn, compiled_fn, ref, 0.97 * ref, args)
        spread("clear pass", eager_fn, compiled_fn, ref, 1.2, args)
    finally:
        load.terminate()


if __name__ == "__main__":
    main()
