"""Paired, interleaved eager/compiled timing with device synchronisation.

Compilation and warm-up happen before the clock starts. Each round runs a calibrated
block of eager calls and one of compiled calls (alternating which goes first), so both
see the same machine state; on CUDA every block is bracketed by ``synchronize()`` so
queued kernels are counted.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections.abc import Callable

import torch

from .devices import synchronizer
from .stats import MIN_ROUNDS, SpeedDecision, decide, estimate, look_schedule

BLOCK_SECONDS = 0.01  # long against perf_counter's resolution and scheduler jitter
WARMUP_CALLS = 3
FIRST_LOOK = 0.2  # share of the budget measured before the first decision: a stable estimate


@dataclasses.dataclass(frozen=True)
class Timing:
    decision: SpeedDecision
    eager_times: tuple[float, ...]  # seconds per call, one per round
    compiled_times: tuple[float, ...]
    calls_per_block: int
    threads: int
    device: str
    eager_peak_memory: int | None = None
    compiled_peak_memory: int | None = None


def time_block(fn: Callable[[], object], calls: int, sync: Callable[[], None]) -> float:
    """Seconds per call over a block of ``calls`` calls."""
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - start) / calls


def calibrate(fns: list[Callable[[], object]], sync: Callable[[], None]) -> int:
    """Calls per block so the slower-running side's block lasts about BLOCK_SECONDS."""
    calls = 1
    while True:
        per_call = max(time_block(fn, calls, sync) for fn in fns)
        if per_call * calls >= BLOCK_SECONDS or calls >= 1 << 16:
            return calls
        calls = max(calls * 2, math.ceil(BLOCK_SECONDS / max(per_call, 1e-9) * 1.1))


def peak_memory(fn: Callable[[], object], device: str) -> int | None:
    """Peak bytes allocated by one call above what was live before (CUDA only)."""
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def measure(
    eager: Callable[[], object],
    compiled: Callable[[], object],
    *,
    min_speedup: float,
    max_time: float,
    device: str,
) -> Timing:
    sync = synchronizer(device)
    for _ in range(WARMUP_CALLS):
        eager()
        compiled()
    eager_peak = peak_memory(eager, device)
    compiled_peak = peak_memory(compiled, device)
    calls = calibrate([eager, compiled], sync)
    round_seconds = 2 * calls * max(time_block(eager, 1, sync), time_block(compiled, 1, sync))
    budget_rounds = max(int(max_time / max(round_seconds, 1e-9)), 1)
    looks = look_schedule(budget_rounds, max(MIN_ROUNDS, int(FIRST_LOOK * budget_rounds)))
    confidence = 1.0 - 0.05 / len(looks)
    eager_times: list[float] = []
    compiled_times: list[float] = []
    deadline = time.perf_counter() + max_time
    decision: SpeedDecision | None = None
    gc.collect()
    while decision is None:
        pair = (eager, compiled) if len(eager_times) % 2 == 0 else (compiled, eager)
        first = time_block(pair[0], calls, sync)
        second = time_block(pair[1], calls, sync)
        eager_times.append(first if pair[0] is eager else second)
        compiled_times.append(second if pair[0] is eager else first)
        n = len(eager_times)
        out_of_time = time.perf_counter() >= deadline and n >= looks[0]
        if n in looks or out_of_time:
            est = estimate(eager_times, compiled_times, confidence, len(looks))
            decision = decide(est, min_speedup, final=out_of_time or n >= looks[-1])
    return Timing(
        decision=decision,
        eager_times=tuple(eager_times),
        compiled_times=tuple(compiled_times),
        calls_per_block=calls,
        threads=torch.get_num_threads(),
        device=device,
        eager_peak_memory=eager_peak,
        compiled_peak_memory=compiled_peak,
    )
