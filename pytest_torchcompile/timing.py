"""Paired, interleaved eager/compiled timing with device synchronisation and a contention
meter.

Compilation and warm-up happen before the clock starts. Each round runs a calibrated
block of eager calls and one of compiled calls (alternating which goes first), so both
see the same machine state; on CUDA every block is bracketed by ``synchronize()`` so
queued kernels are counted, and the wall clock between the two synchronisations is the
block's time: it includes the host's launch overhead, which is what ``reduce-overhead``
removes (CUDA events would time the same span, from the stream's side). Around every
block the meter reads the process's CPU time and, on Linux, how long its threads sat
runnable but off a CPU: the statistics in ``stats`` leave out the rounds that contention
got into, and call a run with too few clean rounds inconclusive.

Under CUDA graphs (cudagraph trees) a compiled function runs eagerly once, is recorded on
its second call and replays from the third: the compiled side warms up until its last
call replayed (at most ``MAX_WARMUP_CALLS``), so no recording is timed.

Peak memory (CUDA only) is the most a side allocated above what was live before, over
its warm-up calls. A CUDA graph replay allocates nothing: its intermediates and outputs
live in the graph's private pool, allocated once, while recording. Those allocations go
through the caching allocator like any other and count in ``max_memory_allocated``, so
a window that spans the recording counts the graph's memory at the same granularity as
eager's, where one replayed call would read about zero. What the pool keeps reserved
between calls (segments rounded up by the allocator, never lent to other code) is
reported beside it as ``compiled_pool_memory``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import time
from collections.abc import Callable, Iterator

import torch

from . import torch_compat as compat
from .devices import synchronizer
from .stats import MIN_ROUNDS, Blocks, SpeedDecision, bounded_after, decide, look_schedule

BLOCK_SECONDS = 0.01  # long against perf_counter's resolution and scheduler jitter
WARMUP_CALLS = 3
MAX_WARMUP_CALLS = 10  # CUDA graph trees replay from the third call; a skipped graph never does
FIRST_LOOK = 0.2  # share of the budget measured before the first decision: a stable estimate
_TASKS = "/proc/self/task"


@dataclasses.dataclass(frozen=True)
class Timing:
    decision: SpeedDecision
    eager: Blocks  # one block per round: per-call seconds and the block's contention
    compiled: Blocks
    calls_per_block: int
    threads: int  # torch threads while timing
    device: str
    eager_peak_memory: int | None = None
    compiled_peak_memory: int | None = None
    compiled_pool_memory: int | None = None  # held in the CUDA graph pool (None: no pool)
    warmup_calls: int = WARMUP_CALLS  # the compiled side's
    cudagraph_state: str | None = None  # after warm-up: "execution" (replaying), or None

    @property
    def eager_times(self) -> tuple[float, ...]:
        """Seconds per call, one per round."""
        return self.eager.times

    @property
    def compiled_times(self) -> tuple[float, ...]:
        return self.compiled.times


@dataclasses.dataclass(frozen=True)
class Block:
    seconds: float  # per call
    wait: float | None  # thread-seconds off a CPU while runnable, per second of the block
    served: float | None  # process CPU time over (threads x wall time)


class RunQueue:
    """Nanoseconds each thread of this process has spent runnable but waiting for a CPU,
    from Linux's ``/proc/self/task/*/schedstat``, kept open: a read costs microseconds,
    not the tens that opening every thread's file would."""

    def __init__(self) -> None:
        self.files: dict[str, int] = {}

    def read(self) -> dict[str, int] | None:
        """Delay per thread id; None where the kernel does not say."""
        try:
            tids = os.listdir(_TASKS)
        except OSError:
            return None
        delays = {}
        for tid in tids:
            try:
                if tid not in self.files:
                    self.files[tid] = os.open(f"{_TASKS}/{tid}/schedstat", os.O_RDONLY)
                delays[tid] = int(os.pread(self.files[tid], 128, 0).split()[1])
            except (OSError, IndexError, ValueError):
                self._drop(tid)  # the thread exited meanwhile
        for gone in self.files.keys() - set(tids):
            self._drop(gone)
        return delays or None

    def _drop(self, tid: str) -> None:
        fd = self.files.pop(tid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for tid in list(self.files):
            self._drop(tid)


class Meter:
    """How much of a block the process's threads were kept from their CPUs.

    On Linux, the run-queue delay summed over threads: time a thread could have run and
    did not, which bounds what contention added to the block (a parallel region waits
    for its slowest thread, so the bound is the sum, not the mean). Elsewhere, on the
    CPU, CPU time stands in: threads x wall - CPU time. It also counts threads idle for
    lack of work, so it overstates contention for multi-threaded models (never
    understates it); with ``threads=1`` it is exact. On other devices without schedstat
    nothing is measured and every block counts. Close it (or use ``with``) to release
    the files it keeps open.
    """

    def __init__(self, threads: int, device: str) -> None:
        self.threads = threads
        self.on_cpu = torch.device(device).type == "cpu"
        self.run_queue: RunQueue | None = RunQueue()
        if self.run_queue.read() is None:
            self.run_queue = None
        self.source = "run-queue delay" if self.run_queue else "CPU time" if self.on_cpu else ""

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.run_queue is not None:
            self.run_queue.close()

    def snapshot(self) -> tuple[float, dict[str, int] | None]:
        return time.process_time(), self.run_queue.read() if self.run_queue else None

    def block(
        self,
        before: tuple[float, dict[str, int] | None],
        after: tuple[float, dict[str, int] | None],
        wall: float,
    ) -> tuple[float | None, float | None]:
        """(wait, served) of a block that took ``wall`` seconds."""
        wall = max(wall, 1e-9)
        cpu = after[0] - before[0]
        served = cpu / (self.threads * wall) if self.on_cpu else None
        if before[1] is not None and after[1] is not None:
            start = before[1]
            waited = sum(ns - start.get(tid, 0) for tid, ns in after[1].items()) * 1e-9
            return max(waited, 0.0) / wall, served
        if self.on_cpu:
            return max(self.threads - cpu / wall, 0.0), served
        return None, served


def time_block(
    fn: Callable[[], object],
    calls: int,
    sync: Callable[[], None],
    meter: Meter | None = None,
) -> Block:
    """Seconds per call over a block of ``calls`` calls, and the block's contention.

    The meter is read outside the clock, so reading it costs the block nothing."""
    before = meter.snapshot() if meter else None
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    wall = time.perf_counter() - start
    if meter is None or before is None:
        return Block(wall / calls, None, None)
    wait, served = meter.block(before, meter.snapshot(), wall)
    return Block(wall / calls, wait, served)


def calibrate(fns: list[Callable[[], object]], sync: Callable[[], None]) -> int:
    """Calls per block so the slower-running side's block lasts about BLOCK_SECONDS."""
    calls = 1
    while True:
        per_call = max(time_block(fn, calls, sync).seconds for fn in fns)
        if per_call * calls >= BLOCK_SECONDS or calls >= 1 << 16:
            return calls
        calls = max(calls * 2, math.ceil(BLOCK_SECONDS / max(per_call, 1e-9) * 1.1))


@dataclasses.dataclass(frozen=True)
class WarmUp:
    calls: int
    peak_memory: int | None  # bytes above what was live before (CUDA only)
    cudagraph_state: str | None  # the CUDA graph tree's state after the last call


def warm_up(fn: Callable[[], object], device: str, *, cudagraphs: bool = False) -> WarmUp:
    """``WARMUP_CALLS`` calls, measuring peak memory on CUDA; with ``cudagraphs``, more
    until the last call replayed a recorded graph (at most ``MAX_WARMUP_CALLS``).

    Call it after the compile: compiling (autotuning above all) allocates on the device
    too, and its memory is not the model's."""
    where = torch.device(device)  # "cuda:1" too: these default to the current device
    on_cuda = where.type == "cuda"
    if on_cuda:
        torch.cuda.synchronize(where)
        torch.cuda.reset_peak_memory_stats(where)
        before = torch.cuda.memory_allocated(where)
    calls, state = 0, None
    while calls < MAX_WARMUP_CALLS:
        fn()
        calls += 1
        state = compat.cudagraph_tree_state(where) if cudagraphs and on_cuda else None
        if calls >= WARMUP_CALLS and state in (None, "execution"):
            break
    if not on_cuda:
        return WarmUp(calls, None, state)
    torch.cuda.synchronize(where)
    return WarmUp(calls, torch.cuda.max_memory_allocated(where) - before, state)


def pool_memory(device: str) -> int | None:
    """Bytes reserved in the CUDA graph tree's private pool on ``device``; None if none."""
    where = torch.device(device)
    pool = compat.cudagraph_pool(where)
    if pool is None:
        return None
    index = where.index if where.index is not None else torch.cuda.current_device()
    return sum(
        segment["total_size"]
        for segment in torch.cuda.memory_snapshot()
        if segment.get("device") == index and tuple(segment.get("segment_pool_id", ())) == pool
    )


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` torch threads (None: leave the setting), restoring the
    caller's count afterwards, also on error. Yields the count in force.

    Dynamo guards compiled code on the thread count: a model compiled under one count
    recompiles on its first call under another. Enter this around compilation too, so
    the model compiles once, under the count it is timed with."""
    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def measure(
    eager: Callable[[], object],
    compiled: Callable[[], object],
    *,
    min_speedup: float,
    max_time: float,
    device: str,
    threads: int | None = None,
    cudagraphs: bool = False,
) -> Timing:
    """Time both sides in interleaved rounds until the decision is made or ``max_time``
    runs out; ``threads`` torch threads for both (None: the caller's setting).
    ``cudagraphs``: the compiled side records CUDA graphs, so it warms up until it replays."""
    with torch_threads(threads) as used:
        return _measure(eager, compiled, min_speedup, max_time, device, used, cudagraphs)


def _measure(
    eager: Callable[[], object],
    compiled: Callable[[], object],
    min_speedup: float,
    max_time: float,
    device: str,
    threads: int,
    cudagraphs: bool = False,
) -> Timing:
    sync = synchronizer(device)
    eager_warm = warm_up(eager, device)
    compiled_warm = warm_up(compiled, device, cudagraphs=cudagraphs)
    pool = pool_memory(device) if cudagraphs and torch.device(device).type == "cuda" else None
    calls = calibrate([eager, compiled], sync)
    with Meter(threads, device) as meter:
        decision, sides = _rounds(eager, compiled, calls, sync, meter, min_speedup, max_time)
    return Timing(
        decision=decision,
        eager=as_blocks(sides["eager"]),
        compiled=as_blocks(sides["compiled"]),
        calls_per_block=calls,
        threads=threads,
        device=device,
        eager_peak_memory=eager_warm.peak_memory,
        compiled_peak_memory=compiled_warm.peak_memory,
        compiled_pool_memory=pool,
        warmup_calls=compiled_warm.calls,
        cudagraph_state=compiled_warm.cudagraph_state,
    )


def _rounds(
    eager: Callable[[], object],
    compiled: Callable[[], object],
    calls: int,
    sync: Callable[[], None],
    meter: Meter,
    min_speedup: float,
    max_time: float,
) -> tuple[SpeedDecision, dict[str, list[Block]]]:
    """Interleaved rounds, looking at the scheduled counts and at the deadline."""
    start = time.perf_counter()
    for fn in (eager, compiled):  # one round, as measured below, sizes the schedule
        time_block(fn, calls, sync, meter)
    budget_rounds = max(int(max_time / max(time.perf_counter() - start, 1e-9)), 1)
    first = max(MIN_ROUNDS, int(FIRST_LOOK * budget_rounds))
    looks = look_schedule(budget_rounds, first)
    looks = look_schedule(budget_rounds, max(first, bounded_after(len(looks))))
    confidence = 1.0 - 0.05 / len(looks)
    sides: dict[str, list[Block]] = {"eager": [], "compiled": []}
    deadline = time.perf_counter() + max_time
    gc.collect()
    while True:
        order = ("eager", "compiled") if len(sides["eager"]) % 2 == 0 else ("compiled", "eager")
        for side in order:
            sides[side].append(
                time_block(eager if side == "eager" else compiled, calls, sync, meter)
            )
        n = len(sides["eager"])
        # The last look is always the deadline's, so a slow start never cuts the budget
        # short; looks never exceed len(looks), the count Bonferroni divided by. Past the
        # deadline a few rounds more at most: blocks that contention slowed tenfold must
        # not stretch the budget tenfold to reach a scheduled look.
        final = time.perf_counter() >= deadline and n >= MIN_ROUNDS
        if final or n in looks[:-1]:
            decision = decide(
                as_blocks(sides["eager"]),
                as_blocks(sides["compiled"]),
                min_speedup,
                confidence=confidence,
                looks=len(looks),
                final=final,
                threads=meter.threads,
                source=meter.source,
            )
            if decision is not None:
                return decision, sides


def as_blocks(blocks: list[Block]) -> Blocks:
    """One side's measured blocks, as the statistics take them."""
    waits = [b.wait for b in blocks]
    served = [b.served for b in blocks]
    return Blocks(
        times=tuple(b.seconds for b in blocks),
        waits=None if None in waits else tuple(w for w in waits if w is not None),
        served=None if None in served else tuple(s for s in served if s is not None),
    )
