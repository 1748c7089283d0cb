"""Does the speed gate ever pass a claim the machine cannot support? One command compares
the gate (``pytest_torchcompile.timing.measure``) with the previous one (median of paired
ratios over every round, copied below as ``previous_measure``) on the same model, in
alternating trials under the same load:

    python bench/speed_gate.py --trials 50 --aa-trials 100 --power-trials 20 --max-time 3

(0) Reference: the issue's model, a chain of 8 sin/cos steps on 2^18 floats, timed for
    --reference-rounds interleaved rounds with the machine quiet (no busy loop) and torch
    pinned to --threads threads. Its quiet speedup is read both ways (lower-quartile
    ratio, median of paired ratios); the claim is twice the larger.
(1) False claim: with a busy loop on the other core, gate min_speedup = 2x the quiet
    speedup. Target: the gate never passes (0 of --trials).
(2) A/A: with the busy loop on, the chain's eager forward against an identical copy,
    min_speedup=0.9. Target: at most 1% false failures (of --aa-trials). An inconclusive
    result is not a failure (the plugin skips it) and is counted apart.
(3) Power, machine quiet again: a true claim, min_speedup = 0.8x the quiet speedup, should
    pass (of --power-trials): a gate that never passes is no gate either. The reference is
    measured again at the end; a warning says if the machine's level moved by over 10%.

Run it on a machine nobody else uses: other work is load the script does not control.
A short smoke run: --trials 3 --aa-trials 3 --power-trials 2 --max-time 1.
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pytest_torchcompile.devices import synchronizer
from pytest_torchcompile.stats import clean_rounds, contention, look_schedule, quantile
from pytest_torchcompile.timing import Meter, as_blocks, calibrate, measure, time_block


class SinCosChain(torch.nn.Module):
    """The issue's model: eager runs 24 multi-threaded kernels, inductor fuses one loop."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(8):
            x = torch.sin(x) + torch.cos(x) * 0.5
        return x


# -- the previous gate, as it was before the contention measure ---------------------------


def _binomial_cdf(k: int, n: int) -> float:
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def _median_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    ordered = sorted(values)
    n = len(ordered)
    k = 0
    while k + 1 <= n // 2 and _binomial_cdf(k, n) <= (1.0 - confidence) / 2:
        k += 1
    return (-math.inf, math.inf) if k == 0 else (ordered[k - 1], ordered[n - k])


def previous_estimate(
    eager: Sequence[float], compiled: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """Median of per-round log-ratios with its sign-test interval: (speedup, low, high)."""
    logs = [math.log(e / c) for e, c in zip(eager, compiled, strict=True)]
    low, high = _median_interval(logs, confidence)
    return math.exp(statistics.median(logs)), math.exp(low), math.exp(high)


def previous_measure(
    eager: Callable[[], object], compiled: Callable[[], object], min_speedup: float, budget: float
) -> tuple[bool, float]:
    """The previous ``timing.measure`` loop and decision: (passed, speedup)."""
    sync = synchronizer("cpu")
    for _ in range(3):
        eager()
        compiled()
    calls = calibrate([eager, compiled], sync)
    slower = max(time_block(eager, 1, sync).seconds, time_block(compiled, 1, sync).seconds)
    budget_rounds = max(int(budget / max(2 * calls * slower, 1e-9)), 1)
    looks = look_schedule(budget_rounds, max(8, int(0.2 * budget_rounds)))
    confidence = 1.0 - 0.05 / len(looks)
    e: list[float] = []
    c: list[float] = []
    deadline = time.perf_counter() + budget
    while True:
        pair = [(e, eager), (c, compiled)]
        for times, fn in pair if len(e) % 2 == 0 else reversed(pair):
            times.append(time_block(fn, calls, sync).seconds)
        n = len(e)
        out_of_time = time.perf_counter() >= deadline and n >= looks[0]
        if n in looks or out_of_time:
            speedup, low, high = previous_estimate(e, c, confidence)
            if low >= min_speedup:
                return True, speedup
            if high < min_speedup:
                return False, speedup
            if out_of_time or n >= looks[-1]:
                return speedup >= min_speedup, speedup


# -- load, reference, trials ---------------------------------------------------------------


def busy(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    while True:
        pass


def reference(
    eager: Callable[[], object], compiled: Callable[[], object], rounds: int
) -> dict[str, Any]:
    """Long interleaved timing, machine quiet: both estimators' view over the rounds the
    meter calls uncontended (all of them on a truly quiet machine), and the wait seen."""
    sync = synchronizer("cpu")
    meter = Meter(torch.get_num_threads(), "cpu")
    calls = calibrate([eager, compiled], sync)
    sides: dict[str, list] = {"eager": [], "compiled": []}
    for i in range(rounds):
        order = [("eager", eager), ("compiled", compiled)]
        for side, fn in order if i % 2 == 0 else reversed(order):
            sides[side].append(time_block(fn, calls, sync, meter))
    eager_blocks, compiled_blocks = (as_blocks(sides["eager"]), as_blocks(sides["compiled"]))
    kept = clean_rounds(eager_blocks, compiled_blocks)
    if len(kept) < rounds // 2:
        print(
            f"WARNING: only {len(kept)} of {rounds} reference rounds ran uncontended: the "
            "machine is not quiet, and the reference is not the quiet speedup",
            flush=True,
        )
        kept = list(range(rounds))
    e = [eager_blocks.times[i] for i in kept]
    c = [compiled_blocks.times[i] for i in kept]
    waits = (eager_blocks.waits or ()) + (compiled_blocks.waits or ())
    return {
        "quartiles": quantile(e, 0.25) / quantile(c, 0.25),
        "median": previous_estimate(e, c)[0],
        "clean": len(kept),
        "wait": tuple(quantile(waits, q) for q in (0.5, 0.9, 0.99)) if waits else None,
        "source": meter.source,
    }


def trials(
    label: str,
    eager: Callable[[], object],
    compiled: Callable[[], object],
    min_speedup: float,
    n: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """n alternating trials of each gate: outcomes, speedups, seconds, wait seen."""
    new: dict[str, Any] = {
        "passed": 0,
        "failed": 0,
        "inconclusive": 0,
        "seconds": [],
        "speedups": [],
        "waits": [],
    }
    old: dict[str, Any] = {"passed": 0, "failed": 0, "seconds": [], "speedups": []}
    for i in range(n):
        start = time.perf_counter()
        timing = measure(
            eager,
            compiled,
            min_speedup=min_speedup,
            max_time=args.max_time,
            device="cpu",
            threads=args.threads,
        )
        new["seconds"].append(time.perf_counter() - start)
        decision = timing.decision
        new[decision.outcome] += 1
        new["speedups"].append(decision.estimate.speedup)
        seen = contention(timing.eager, timing.compiled, threads=timing.threads)
        if seen.wait is not None:
            new["waits"].append(seen.wait)
        start = time.perf_counter()
        passed, speedup = previous_measure(eager, compiled, min_speedup, args.max_time)
        old["seconds"].append(time.perf_counter() - start)
        old["passed" if passed else "failed"] += 1
        old["speedups"].append(speedup)
        print(
            f"  {label} {i + 1}/{n}: gate {decision.outcome} {decision.estimate.speedup:.3g}x"
            f"{f' (clean {seen.clean}/{seen.rounds})' if seen.wait is not None else ''}; "
            f"previous {'passed' if passed else 'failed'} {speedup:.3g}x",
            flush=True,
        )
    return {"new": new, "old": old, "n": n}


def _med(values: list[float], fmt: str = ".2f") -> str:
    return format(statistics.median(values), fmt) if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="false-claim trials (busy)")
    parser.add_argument("--aa-trials", type=int, default=100, help="A/A trials (busy)")
    parser.add_argument("--power-trials", type=int, default=20, help="true-claim trials (quiet)")
    parser.add_argument("--max-time", type=float, default=3.0, help="each gate's budget, s")
    parser.add_argument("--reference-rounds", type=int, default=400)
    parser.add_argument("--size", type=int, default=1 << 18, help="elements of the input")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads, pinned"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    load_cpu = cpus[-1] if len(cpus) > 1 else None
    model = SinCosChain().eval()
    x = torch.randn(args.size)
    compiled_model = torch.compile(model)
    twin = copy.deepcopy(model)
    with torch.no_grad():

        def eager_fn() -> object:
            return model(x)

        def compiled_fn() -> object:
            return compiled_model(x)

        def twin_fn() -> object:
            return twin(x)

        compiled_fn()
        ref = reference(eager_fn, compiled_fn, args.reference_rounds)
        quiet = max(ref["quartiles"], ref["median"])
        claim = 2 * quiet
        print(
            f"quiet reference: {ref['quartiles']:.3f}x (lower quartiles), {ref['median']:.3f}x "
            f"(median of paired ratios) over {ref['clean']} uncontended rounds",
            flush=True,
        )
        load = multiprocessing.Process(target=busy, args=(load_cpu,), daemon=True)
        load.start()
        time.sleep(0.5)
        try:
            false_claim = trials("false claim", eager_fn, compiled_fn, claim, args.trials, args)
            aa = trials("A/A", eager_fn, twin_fn, 0.9, args.aa_trials, args)
        finally:
            load.terminate()
            load.join()
        power = trials("power", eager_fn, compiled_fn, 0.8 * quiet, args.power_trials, args)
        # The run-queue wait cannot see everything (a host's other guests, a neighbour's
        # memory traffic): a second quiet reference shows whether the level held.
        again = reference(eager_fn, compiled_fn, args.reference_rounds)["quartiles"]
        drift = again / ref["quartiles"]
        if not 0.9 <= drift <= 1.1:
            print(
                f"WARNING: the quiet reference moved from {ref['quartiles']:.3f}x to "
                f"{again:.3f}x during the run: the machine's level drifted, and these "
                "numbers are not final",
                flush=True,
            )
    rows = [
        ("false claim", f"`min_speedup={claim:.2f}` (2x quiet), busy", false_claim, "passed"),
        ("A/A", "`min_speedup=0.9`, busy", aa, "failed"),
        ("true claim", f"`min_speedup={0.8 * quiet:.2f}` (0.8x quiet), quiet", power, "passed"),
    ]
    print()
    print(
        f"torch {torch.__version__}, {args.threads} torch thread(s) pinned, "
        f"{os.cpu_count()} CPUs, busy loop on CPU {load_cpu}, max_time {args.max_time:g} s; "
        f"sin/cos chain on {args.size} floats, quiet reference {ref['quartiles']:.3f}x "
        f"(lower quartiles) / {ref['median']:.3f}x (median of paired ratios) over "
        f"{ref['clean']} of {args.reference_rounds} rounds ({again:.3f}x, lower quartiles, "
        "at the end); quiet blocks' wait "
        + (
            "p50/p90/p99 " + " / ".join(f"{w:.3f}" for w in ref["wait"]) + f" ({ref['source']})"
            if ref["wait"]
            else "not measured"
        )
    )
    print()
    print(
        "| case | counted | gate | previous gate | gate median x | previous median x "
        "| gate median s | previous median s | gate median wait |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, how, result, counted in rows:
        if not result["n"]:
            continue
        new, old, n = result["new"], result["old"], result["n"]
        print(
            f"| {name}: {how} | {counted} | **{new[counted]}/{n}** "
            f"({new['inconclusive']} inconclusive) | {old[counted]}/{n} "
            f"| {_med(new['speedups'], '.3f')} | {_med(old['speedups'], '.3f')} "
            f"| {_med(new['seconds'])} | {_med(old['seconds'])} | {_med(new['waits'], '.3f')} |"
        )


if __name__ == "__main__":
    main()
