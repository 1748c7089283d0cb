"""Every CUDA path of the plugin, exercised in one command on a GPU machine, ending in a
markdown table (with the card's name) for bench/RESULTS.md:

    python bench/gpu_check.py                         # rows start within --budget (300 s)
    python bench/gpu_check.py --quick                 # fewer examples, trials and rounds
    python bench/gpu_check.py --device cpu --quick    # smoke test without a GPU

Rows, most important first; a row that raises is reported as an error and the next one
runs, and rows past ``--budget`` seconds are reported as not reached, so one failure or a
slow cold compile never loses the table:

  examples       equivalence on the device for the examples' models (examples/models.py)
  reduce-overhead / max-autotune   equivalence, speed gate, CUDA graph replay after warm-up
  peak memory    eager vs compiled, with CUDA graph pool memory counted
  skip gate      planted CUDA graph skips (mutated input, CPU tensor, dynamic shapes) fail
                 max_cudagraph_skips=0 with a reason, also the skip graph partition makes
                 silently; out of play the gate is a note
  safe_compile   a CUDA model: validated, timed, returned on its own device, and under
                 reduce-overhead replaying when called as users call it
  A/A            the speed gate on a model against itself: false failures
  gate error     the gate's estimate against a long reference run
  pytest         the plugin end to end in pytest, device="cuda" markers, two modes
  -n 2           one GPU per xdist worker (--compile-devices=auto), where there are two

Each row states what it expects; "ok" means it saw that, "UNEXPECTED" says what differed.
The table is printed and, where $OUT is set, written to $OUT/gpu_check.md as it grows.

Found on an H200 (torch 2.11): examples' PointwiseChain does not fit a memory row at 2^22
floats on CUDA. Inductor contracts ``x * 1.01 + 0.1`` into one FMA, and in 1 element of 4M
the last-bit difference crosses the ``torch.where(x > 1.0, ...)`` threshold: a 0.05 jump
that the fp64 judgement rightly flags (as ``torch._dynamo.utils.same`` would). A true
difference, not the plugin's; the peak-memory row times SmoothChain, the chain without
the branch, so it measures memory.
"""

from __future__ import annotations

import argparse
import collections
import copy
import dataclasses
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from models import MLP, ConvNet, PointwiseChain, TinyLM, TwoHeads  # noqa: E402

from pytest_torchcompile import (  # noqa: E402
    CompileChecker,
    CompileCheckError,
    CompileSettings,
    TensorSpec,
    safe_compile,
)
from pytest_torchcompile import torch_compat as compat  # noqa: E402
from pytest_torchcompile.cudagraph_skips import UNSTATED_SKIP  # noqa: E402
from pytest_torchcompile.devices import synchronizer  # noqa: E402
from pytest_torchcompile.stats import estimate  # noqa: E402
from pytest_torchcompile.timing import Timing, calibrate, measure, time_block  # noqa: E402

MiB = 2**20


class Skip(Exception):
    """This row cannot run here; the message says why."""


@dataclasses.dataclass
class Row:
    name: str
    result: str = "ok"  # ok, UNEXPECTED, error, skipped, not reached
    numbers: str = ""
    detail: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class Context:
    device: str
    quick: bool
    cuda: bool  # the device is a CUDA device and torch sees it
    deadline: float
    misses: list[str] = dataclasses.field(default_factory=list)

    def expect(self, condition: bool, what: str) -> None:
        """Note an expectation the row did not meet (the row goes on)."""
        if not condition:
            self.misses.append(what)

    def need_cuda(self) -> None:
        if not self.cuda:
            raise Skip(f"needs CUDA; this run is on {self.device!r}")

    def n(self, quick: int, full: int) -> int:
        return quick if self.quick else full


# -- planted models ---------------------------------------------------------------------------


class MutatesInput(torch.nn.Module):
    """Writes into its input: CUDA graphs cannot replay that, and torch skips them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2.0)
        return x + 1.0


class SmoothChain(torch.nn.Module):
    """PointwiseChain without its ``where()``: no branch that one rounding (an FMA where
    eager rounds twice) can flip. Eager makes a temporary per op, fused code none."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(16):
            x = x * 0.99 + 0.01
        return x


class UsesCpuTensor(torch.nn.Module):
    """Computes on a CPU tensor it is given: a CPU node in the graph skips CUDA graphs."""

    def forward(self, x: torch.Tensor, extras: tuple[torch.Tensor, ...]) -> torch.Tensor:
        scale = extras[0] * 2.0  # on the CPU: the tuple is not moved to the device
        return x * scale.to(x.device)


# -- helpers ----------------------------------------------------------------------------------


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MiB:.1f} MiB"


def first_line(text: str | None) -> str:
    return next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")


def reason_of(error: BaseException) -> str:
    """The line that says why: a check error's first line only names the check."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if len(lines) > 1 and re.match(r"\w+ failed \[", lines[0]):
        return lines[1]
    return lines[0] if lines else ""


def checker(ctx: Context, name: str, **settings: Any) -> tuple[CompileChecker, list[Timing]]:
    """An engine as the plugin builds one, recording its timings; an undecided timing is
    a record with outcome "skipped", not an exception."""
    timings: list[Timing] = []
    engine = CompileChecker(
        CompileSettings(device=ctx.device, **settings),
        test_id=name,
        database=False,
        on_timing=lambda record, timing: timings.append(timing),
        skip=lambda reason: None,
    )
    return engine, timings


def speed_numbers(record: Any, timing: Timing | None) -> str:
    if record.speedup is None:
        reason = first_line(record.message).split(":", 1)[0]  # "inconclusive for ..."
        return f"{record.outcome} ({reason})"
    text = (
        f"{record.speedup:.2f}x [{record.speedup_low:.2f}, {record.speedup_high:.2f}] "
        f"{record.outcome}"
    )
    if timing is not None:
        text += f", {timing.warmup_calls} warm-up calls"
        if timing.cudagraph_state:
            text += f", then {timing.cudagraph_state}"
    return text


# -- rows -------------------------------------------------------------------------------------


def row_examples(ctx: Context) -> str:
    """The examples' models (examples/test_examples.py's markers) on the device."""
    examples = ctx.n(2, 5)
    cases: list[tuple[str, Callable[[], Any], Any, dict, dict]] = [
        ("mlp", lambda: MLP().eval(), [TensorSpec("batch", 128)], {"batch": (1, 64)}, {}),
        (
            "convnet training step",
            lambda: ConvNet().train(),
            [TensorSpec("batch", 3, 16, 16)],
            {"batch": (2, 8)},
            {"grad": True},
        ),
        (
            "tiny transformer",
            lambda: TinyLM(100).eval(),
            {"input_ids": TensorSpec("batch", "seq", dtype=torch.long, high=100)},
            {"batch": (1, 4), "seq": (1, 32)},
            {"dynamic": True},
        ),
        (
            "dict outputs",
            lambda: TwoHeads().eval(),
            [TensorSpec("batch", 24)],
            {"batch": (2, 16)},
            {"max_graph_breaks": 0},
        ),
    ]
    engine, _ = checker(ctx, "examples")
    passed, parts = 0, []
    for name, build, inputs, dims, extra in cases:
        try:
            record = engine.assert_equivalent(
                build(), inputs, dims=dims, examples=examples, **extra
            )
            passed += 1
            parts.append(f"{name}: {record.graphs} graphs, max err {record.max_error or 0:.1e}")
        except CompileCheckError as error:
            parts.append(f"{name}: FAILED {reason_of(error)}")
    ctx.expect(passed == len(cases), f"{len(cases) - passed} example(s) failed")
    return f"{passed}/{len(cases)} passed, {examples} examples each; " + "; ".join(parts)


def _mode_row(ctx: Context, mode: str, dims: dict[str, Any]) -> str:
    """Equivalence with the skip gate, then the speed gate, under a CUDA graph mode."""
    engine, timings = checker(ctx, mode, mode=mode)
    record = engine.assert_equivalent(
        MLP().eval(),
        [TensorSpec("batch", 128)],
        dims=dims,
        examples=ctx.n(2, 5),
        max_cudagraph_skips=0,
    )
    skips = record.cudagraph_skips
    equivalence = f"MLP equivalent ({record.graphs} graphs, skips {list(skips or [])})"
    if ctx.cuda:
        ctx.expect(skips == (), f"CUDA graph skips on a clean model: {skips}")
    else:
        ctx.expect(skips is None and bool(record.warnings), "the gate out of play left no note")
    size = 1 << 12 if ctx.cuda else 1 << 16
    faster = engine.check_faster(
        PointwiseChain(),
        [TensorSpec(size)],
        min_speedup=1.5,
        max_time=ctx.n(2, 3),
        max_cudagraph_skips=0,
    ).record
    timing = timings[-1] if timings else None
    if ctx.cuda:
        ctx.expect(faster.outcome == "passed", f"speed gate {faster.outcome}, expected passed")
        state = timing.cudagraph_state if timing else None
        ctx.expect(state == "execution", f"after warm-up the CUDA graph tree was {state!r}")
    return f"{equivalence}; PointwiseChain 2^{size.bit_length() - 1}: " + speed_numbers(
        faster, timing
    )


def row_reduce_overhead(ctx: Context) -> str:
    text = _mode_row(ctx, "reduce-overhead", {"batch": (2, 16)})
    engine, timings = checker(ctx, "default")  # the same model, without CUDA graphs
    size = 1 << 12 if ctx.cuda else 1 << 16
    record = engine.check_faster(
        PointwiseChain(), [TensorSpec(size)], min_speedup=1.5, max_time=ctx.n(2, 3)
    ).record
    return f"{text}; default mode: " + speed_numbers(record, timings[-1] if timings else None)


def row_max_autotune(ctx: Context) -> str:
    ctx.need_cuda()
    if ctx.quick:
        raise Skip("--quick: max-autotune's cold compile is the slowest")
    return _mode_row(ctx, "max-autotune", {"batch": 16})  # one shape: autotuning is slow


def row_peak_memory(ctx: Context) -> str:
    """Eager against compiled on 16 MiB of floats; under reduce-overhead the graph's memory
    lives in its pool, which a replayed call alone does not show. SmoothChain, not
    PointwiseChain: see the note at the top."""
    ctx.need_cuda()
    size = 1 << 22  # 16 MiB of float32: eager makes a temporary per op, fused code none
    parts, peaks, compiled = [], {}, None
    for mode in ("default", "reduce-overhead"):
        engine, timings = checker(ctx, mode, mode=mode)
        checked = engine.check_faster(
            SmoothChain(), [TensorSpec(size)], min_speedup=0.01, max_time=0.5
        )
        # Peaks are in the record whatever the timing decided (an inconclusive timing
        # reaches no on_timing); the pool only in a decided timing.
        record, compiled = checked.record, checked.compiled
        pool = timings[-1].compiled_pool_memory if timings else None
        peaks[mode] = (record.eager_peak_memory or 0, record.compiled_peak_memory or 0)
        parts.append(
            f"{mode} ({record.outcome}): eager {mib(record.eager_peak_memory)}, compiled "
            f"{mib(record.compiled_peak_memory)}" + (f", pool {mib(pool)}" if pool else "")
        )
    where = torch.device(ctx.device)
    x = torch.randn(size, device=where)
    assert compiled is not None  # reduce-overhead's, the last one
    with torch.no_grad():
        for _ in range(3):
            compiled(x)
        torch.cuda.synchronize(where)
        torch.cuda.reset_peak_memory_stats(where)
        before = torch.cuda.memory_allocated(where)
        compiled(x)
        torch.cuda.synchronize(where)
    replay = torch.cuda.max_memory_allocated(where) - before
    parts.append(f"one replayed call alone: {mib(replay)}")
    out_bytes = size * 4
    peak = peaks["reduce-overhead"][1]
    ctx.expect(peak >= out_bytes, f"reduce-overhead peak {mib(peak)} < the 16 MiB output")
    ctx.expect(replay < peak, "a replay read as much as the warm-up window")
    eager = peaks["default"][0]
    ctx.expect(eager > out_bytes, f"eager peak {mib(eager)} not above its output")
    return "; ".join(parts)


def _partition_default() -> bool | None:
    """Inductor's graph partition switch (None where this torch has none): with it on, CPU
    kernels are split out of CUDA graphs instead of skipping them."""
    if "graph_partition" not in compat.inductor_option_names():
        return None
    config = __import__("torch._inductor.config", fromlist=["graph_partition"])
    return bool(config.graph_partition)


def row_skip_gate(ctx: Context) -> str:
    """Planted skips under reduce-overhead fail max_cudagraph_skips=0 with a reason.

    Graph partition (on by default in torch 2.11 and 2.13) splits CPU kernels out of CUDA
    graphs, and dynamic-shape ones under ``cudagraph_skip_dynamic_graphs``. With it off, torch
    states each skip; with it on, a graph left with nothing to capture (every kernel of the
    MLP uses the dynamic batch size) runs without CUDA graphs and torch neither logs nor
    counts it (``cudagraph_partition_post_compile`` in torch/_inductor/output_code.py,
    2.11 and 2.13 alike): the session hears that itself. The dynamic case runs both ways,
    and with partition once more in the speed check, whose gate is the same. A speed check
    whose timing was inconclusive is a skip, and a skip applies no gate: the row says so
    and checks that the record named the skip."""
    ctx.need_cuda()
    partition = _partition_default()
    off = {"graph_partition": False} if partition is not None else {}
    on = {"graph_partition": True}
    dynamic = {"triton.cudagraph_skip_dynamic_graphs": True}
    mlp_dims = {"batch": (2, 16)}
    nothing = "left nothing to capture"
    cases: list[tuple[str, Any, Any, dict, dict, str, bool]] = [
        ("mutated input", MutatesInput(), [TensorSpec(8, 16)], {}, {}, "mutated inputs", False),
        (
            "CPU tensor, partition off",
            UsesCpuTensor(),
            [TensorSpec(8, 16), (torch.randn(16),)],
            {},
            {"options": off},
            "cpu device",
            False,
        ),
        (
            "dynamic shapes, partition off",
            MLP().eval(),
            [TensorSpec("batch", 128)],
            mlp_dims,
            {"dynamic": True, "options": {**dynamic, **off}},
            "symbolic shapes",
            False,
        ),
    ]
    if partition is not None:  # a torch without graph partition has no silent case
        timed = {"min_speedup": 0.01, "max_time": 0.5}
        for suffix, extra, is_timed in (("", {}, False), (", timed", timed, True)):
            cases.append(
                (
                    f"dynamic shapes, partition on{suffix}",
                    MLP().eval(),
                    [TensorSpec("batch", 128)],
                    mlp_dims,
                    {"dynamic": True, "options": {**dynamic, **on}, **extra},
                    nothing,
                    is_timed,
                )
            )
    parts = [f"graph_partition default {partition}"]
    for name, model, inputs, dims, extra, wanted, is_timed in cases:
        before = compat.cudagraph_skip_count()
        run = engine_faster if is_timed else engine_equivalent
        try:
            record = run(ctx, model, inputs, dims, extra)
        except CompileCheckError as error:
            record = error.result
            skips = list(getattr(record, "cudagraph_skips", None) or [])
            counted = compat.cudagraph_skip_count() - before
            found = any(wanted in s for s in skips)
            ctx.expect(found, f"{name}: no skip naming {wanted!r} in {skips or reason_of(error)}")
            unstated = [s for s in skips if s == UNSTATED_SKIP.describe()]
            ctx.expect(not unstated, f"{name}: {len(unstated)} of {counted} skips had no reason")
            parts.append(f"{name}: failed, {len(skips)} skip(s): {skips[0] if skips else '?'}")
            continue
        skips = list(record.cudagraph_skips or [])
        if record.outcome == "skipped":  # timing inconclusive: a skip, no gate applied
            found = any(wanted in s for s in skips)
            ctx.expect(found, f"{name}: skipped, and its record names no {wanted!r}: {skips}")
            parts.append(
                f"{name}: skipped ({first_line(record.message).split(':', 1)[0]}), no gate "
                f"applied; skips recorded: {skips}"
            )
            continue
        ctx.expect(False, f"{name}: {record.outcome}, skips {skips}; the gate missed the skip")
        parts.append(f"{name}: {record.outcome.upper()}, skips {skips}")
    # Graph partition's own behaviour, for the record: no expectation.
    if partition:
        try:
            record = engine_equivalent(
                ctx, UsesCpuTensor(), [TensorSpec(8, 16), (torch.randn(16),)], {}, {}
            )
            parts.append(f"CPU tensor, partition on: {record.outcome} (CPU kernels split out)")
        except CompileCheckError as error:
            parts.append(f"CPU tensor, partition on: failed: {reason_of(error)}")
    return "; ".join(parts)


def engine_equivalent(ctx: Context, model: Any, inputs: Any, dims: dict, extra: dict) -> Any:
    engine, _ = checker(ctx, "skip-gate", mode="reduce-overhead")
    return engine.assert_equivalent(
        model, inputs, dims=dims, examples=3, max_cudagraph_skips=0, **extra
    )


def engine_faster(ctx: Context, model: Any, inputs: Any, dims: dict, extra: dict) -> Any:
    engine, _ = checker(ctx, "skip-gate", mode="reduce-overhead")
    return engine.check_faster(model, inputs, dims=dims, max_cudagraph_skips=0, **extra).record


def row_gate_out_of_play(ctx: Context) -> str:
    """Where CUDA graphs are not in play the gate is a note in the record, never a pass."""
    mode = "default" if ctx.cuda else "reduce-overhead"
    engine, _ = checker(ctx, "out-of-play", mode=mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = engine.assert_equivalent(
            MutatesInput(), [TensorSpec(8, 16)], examples=2, max_cudagraph_skips=0
        )
    notes = [w for w in record.warnings if "max_cudagraph_skips" in w]
    ctx.expect(len(notes) == 1, f"record notes: {list(record.warnings)}")
    ctx.expect(any("max_cudagraph_skips" in str(w.message) for w in caught), "no warning")
    return f"mode {mode} on {ctx.device}: {record.outcome}; note: {notes[0] if notes else '-'}"


def row_safe_compile(ctx: Context) -> str:
    """safe_compile on the model's device; under reduce-overhead the model handed back is
    called as users call it (no step marked, the last output held while the next call
    runs) and replays by its third call. Validation marks a step at each of its calls;
    left in that mode, torch would record a new graph at each such call instead."""
    where = torch.device(ctx.device)
    model = MLP().to(where).eval()
    x = torch.randn(32, 128, device=where)
    with torch.no_grad():
        expected = model(x)
    result = safe_compile(model, (x,), benchmark=True, fallback=False)
    with torch.no_grad():
        out = result.model(x)
    ctx.expect(result.compiled, f"not compiled: {result.reason}")
    ctx.expect(out.device == x.device, f"output on {out.device}")
    ctx.expect(
        all(p.device == x.device for p in model.parameters()), "the model's parameters moved"
    )
    ctx.expect(torch.allclose(out, expected, atol=1e-4, rtol=1e-4), "output differs")
    speed = "-" if result.speedup is None else f"{result.speedup:.2f}x"
    text = f"default: compiled, output on {out.device}, speedup {speed}"
    if not ctx.cuda:
        return text
    settings = CompileSettings(max_cudagraph_skips=0)
    graphed = safe_compile(model, (x,), settings=settings, mode="reduce-overhead", fallback=False)
    with torch.no_grad():
        for _ in range(3):
            out = graphed.model(x)  # `out` still holds the last output during the call
    state = compat.cudagraph_tree_state(where)
    ctx.expect(graphed.compiled, f"reduce-overhead: not compiled: {graphed.reason}")
    ctx.expect(state == "execution", f"reduce-overhead: state {state!r} after 3 calls")
    ctx.expect(torch.allclose(out, expected, atol=1e-4, rtol=1e-4), "graphed output differs")
    return text + f"; reduce-overhead: compiled, skip gate 0, state after 3 calls: {state}"


def row_aa(ctx: Context) -> str:
    """The gate on one model against an identical copy, min_speedup=0.9: a failure is false."""
    where = torch.device(ctx.device)
    a = MLP().to(where).eval()
    b = copy.deepcopy(a)
    x = torch.randn(64, 128, device=where)

    def side(m: torch.nn.Module) -> Callable[[], object]:
        def call() -> object:
            with torch.no_grad():
                return m(x)

        return call

    trials = ctx.n(4, 20)
    outcomes: collections.Counter[str] = collections.Counter()
    speedups, seconds = [], []
    for _ in range(trials):
        start = time.perf_counter()
        timing = measure(side(a), side(b), min_speedup=0.9, max_time=1.0, device=ctx.device)
        seconds.append(time.perf_counter() - start)
        outcomes[timing.decision.outcome] += 1
        speedups.append(timing.decision.estimate.speedup)
    ctx.expect(outcomes["failed"] <= max(1, trials // 20), f"{outcomes['failed']} false failures")
    speedups.sort()
    return (
        f"{trials} trials: {outcomes['failed']} failed, {outcomes['inconclusive']} "
        f"inconclusive, {outcomes['passed']} passed; estimates {speedups[0]:.3f}-"
        f"{speedups[-1]:.3f}x; median {sorted(seconds)[len(seconds) // 2]:.2f} s per trial"
    )


def row_gate_error(ctx: Context) -> str:
    """The gate's estimate against a long interleaved reference on the same pair."""
    where = torch.device(ctx.device)
    size = 1 << 20 if ctx.cuda else 1 << 16
    model = PointwiseChain()
    compiled = torch.compile(model)
    x = torch.randn(size, device=where)

    def eager_call() -> object:
        with torch.no_grad():
            return model(x)

    def compiled_call() -> object:
        with torch.no_grad():
            return compiled(x)

    for _ in range(3):
        eager_call()
        compiled_call()
    sync = synchronizer(ctx.device)
    calls = calibrate([eager_call, compiled_call], sync)
    rounds = ctx.n(30, 200)
    sides: dict[str, list[float]] = {"eager": [], "compiled": []}
    pair = [("eager", eager_call), ("compiled", compiled_call)]
    for i in range(rounds):
        for name, fn in pair if i % 2 == 0 else reversed(pair):
            sides[name].append(time_block(fn, calls, sync).seconds)
    reference = estimate(sides["eager"], sides["compiled"]).speedup
    trials = ctx.n(2, 10)
    errors: list[float] = []  # of decided runs: an inconclusive one claims no estimate
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(trials):
        timing = measure(
            eager_call, compiled_call, min_speedup=1.0, max_time=2.0, device=ctx.device
        )
        outcomes[timing.decision.outcome] += 1
        if not timing.decision.inconclusive:
            errors.append(timing.decision.estimate.speedup / reference - 1.0)
    head = (
        f"reference {reference:.3f}x over {rounds} rounds x {calls} calls (2^"
        f"{size.bit_length() - 1} floats); {trials} gate runs {dict(outcomes)}"
    )
    if ctx.cuda:
        ctx.expect(len(errors) == trials, "gate runs left undecided on a quiet GPU machine")
    if not errors:
        return head
    middle = sorted(abs(e) for e in errors)[len(errors) // 2]
    if ctx.cuda:
        ctx.expect(middle < 0.10, f"median error {middle:.1%}")
    worst = max(errors, key=abs)
    return f"{head}: median |error| {middle:.1%}, worst {worst:+.1%}"


PYTEST_SUITE = """
import pytest
import torch
from models import MLP, PointwiseChain
from pytest_torchcompile import TensorSpec, compile_equivalent, compile_faster

DEVICE = {device!r}


class MutatesInput(torch.nn.Module):
    def forward(self, x):
        x.mul_(2.0)
        return x + 1.0


@compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={{"batch": (2, 16)}},
                    device=DEVICE, examples=3, max_cudagraph_skips=0)
def test_mlp():
    return MLP().eval()


@compile_faster(min_speedup=1.5, inputs=[TensorSpec({size})], device=DEVICE, max_time=2.0,
                max_cudagraph_skips=0)
def test_pointwise_faster():
    return PointwiseChain()


@pytest.mark.skipif(DEVICE == "cpu", reason="CUDA graphs exist on CUDA devices only")
@pytest.mark.xfail(reason="planted: writes into its input", strict=True)
@compile_equivalent(inputs=[TensorSpec(8, 16)], device=DEVICE, examples=3,
                    max_cudagraph_skips=0, modes=("reduce-overhead",))
def test_mutation_is_caught():
    return MutatesInput()
"""


def _plugin_env() -> dict[str, str]:
    """This checkout importable, and its plugin loaded by name where it is not installed
    (no entry point): through the environment, so xdist workers load it too."""
    from importlib.metadata import entry_points

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "examples")]))
    if not any(ep.name == "torchcompile" for ep in entry_points(group="pytest11")):
        env["PYTEST_PLUGINS"] = "pytest_torchcompile.plugin"
    return env


def _run_pytest(folder: Path, args: list[str], timeout: float) -> tuple[int, str, list[dict]]:
    report = folder / "report.json"
    env = _plugin_env()
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rs",
        f"--compile-report={report}",
        *args,
    ]
    done = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
    )
    records: list[dict] = []
    if report.exists():
        records = _records(json.loads(report.read_text()))
    return done.returncode, done.stdout + done.stderr, records


def _records(data: Any) -> list[dict]:
    """Every record in a report, whatever nests them."""
    if isinstance(data, dict):
        if "test_id" in data and "outcome" in data:
            return [data]
        return [r for v in data.values() for r in _records(v)]
    if isinstance(data, list):
        return [r for v in data for r in _records(v)]
    return []


def row_pytest(ctx: Context) -> str:
    """The plugin in pytest: markers with device=, two modes, the skip gate, the report."""
    size = 1 << 12 if ctx.cuda else 1 << 16
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        folder = Path(tmp)
        (folder / "test_cuda_suite.py").write_text(
            PYTEST_SUITE.format(device=ctx.device, size=size)
        )
        left = max(ctx.deadline - time.monotonic(), 60)
        code, output, records = _run_pytest(
            folder, ["--compile-modes=default,reduce-overhead"], timeout=left
        )
    outcomes = collections.Counter(r["outcome"] for r in records)
    summary = first_line(output.strip().splitlines()[-1] if output.strip() else "")
    skips = {r["test_id"].split("::")[-1]: r.get("cudagraph_skips") for r in records}
    ctx.expect(code == 0, f"pytest exited {code}: {output[-1500:]}")
    if ctx.cuda:
        ctx.expect(outcomes.get("xfailed", 0) + outcomes.get("failed", 0) >= 1, "no planted skip")
    return f"exit {code}, {summary}; records {dict(outcomes)}; skips per test {skips}"


def row_two_gpus(ctx: Context) -> str:
    ctx.need_cuda()
    plugin = (ROOT / "pytest_torchcompile" / "plugin.py").read_text()
    if "compile-devices" not in plugin:
        raise Skip("--compile-devices is not implemented in this checkout")
    count = torch.cuda.device_count()
    if count < 2:
        raise Skip(f"{count} GPU on this machine; one GPU per worker needs two")
    try:
        import xdist  # noqa: F401
    except ImportError as error:
        raise Skip("pytest-xdist is not installed") from error
    with tempfile.TemporaryDirectory(prefix="gpu-check-n2-") as tmp:
        folder = Path(tmp)
        (folder / "test_cuda_suite.py").write_text(PYTEST_SUITE.format(device="cuda", size=1 << 12))
        left = max(ctx.deadline - time.monotonic(), 60)
        code, output, records = _run_pytest(
            folder, ["-n", "2", "--compile-devices=auto", "--compile-modes=default"], timeout=left
        )
    devices = collections.Counter(r.get("device") for r in records)
    outcomes = collections.Counter(r["outcome"] for r in records)
    ctx.expect(code == 0, f"pytest -n 2 exited {code}: {output[-1500:]}")
    speed = [r for r in records if r.get("check") == "faster"]
    ctx.expect(all(r["outcome"] != "skipped" for r in speed), "speed skipped under -n 2")
    return f"exit {code}; devices {dict(devices)}; records {dict(outcomes)}"


ROWS: list[tuple[str, Callable[[Context], str]]] = [  # most important first: see --budget
    ("equivalence: examples", row_examples),
    ("reduce-overhead: equivalence, speed, replay", row_reduce_overhead),
    ("max_cudagraph_skips: planted skips", row_skip_gate),
    ("max_cudagraph_skips: out of play", row_gate_out_of_play),
    ("peak memory (CUDA graph pool counted)", row_peak_memory),
    ("safe_compile on the device", row_safe_compile),
    ("speed gate A/A (false failures)", row_aa),
    ("speed gate error vs long reference", row_gate_error),
    ("pytest: markers, two modes, report", row_pytest),
    ("max-autotune: equivalence, speed, replay", row_max_autotune),
    ("-n 2: one GPU per worker", row_two_gpus),
]


# -- running and rendering ----------------------------------------------------------------------


def run_row(ctx: Context, name: str, fn: Callable[[Context], str]) -> Row:
    if time.monotonic() > ctx.deadline:
        return Row(name, "not reached", detail="the --budget ran out before this row")
    ctx.misses = []
    start = time.perf_counter()
    row = Row(name)
    try:
        row.numbers = fn(ctx)
        if ctx.misses:
            row.result = "UNEXPECTED"
            row.detail = "; ".join(ctx.misses)
    except Skip as skip:
        row.result, row.numbers = "skipped", str(skip)
    except Exception as error:  # one broken row must not lose the others
        row.result = "error"
        row.numbers = f"{type(error).__name__}: {reason_of(error)}"[:200]
        row.detail = traceback.format_exc()[-3000:]
    row.seconds = time.perf_counter() - start
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def environment(ctx: Context) -> str:
    if ctx.cuda:
        index = torch.device(ctx.device).index or 0
        card = torch.cuda.get_device_name(index)
        total = torch.cuda.get_device_properties(index).total_memory
        gpus = f"{torch.cuda.device_count()} GPU(s), {total / 2**30:.0f} GiB"
        gpus += f", CUDA {torch.version.cuda}"
    else:
        card, gpus = platform.processor() or platform.machine(), f"no GPU ({ctx.device})"
    return f"{card}; {gpus}; torch {torch.__version__}; Python {platform.python_version()}"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(ctx: Context, env: str, rows: list[Row], command: str, elapsed: float) -> str:
    lines = [
        f"## CUDA paths: {env}",
        "",
        f"`{command}` on {datetime.date.today().isoformat()}, {elapsed:.0f} s in all"
        f"{' (quick)' if ctx.quick else ''}.",
        "",
        "| check | result | numbers | s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {cell(r.name)} | {r.result} | {cell(r.numbers)} | {r.seconds:.0f} |" for r in rows
    ]
    notes = [r for r in rows if r.detail]
    if notes:
        lines += ["", "Details:", ""]
        for r in notes:
            body = textwrap.indent(r.detail.strip(), "    ") if "\n" in r.detail else r.detail
            lines.append(f"- **{r.name}** ({r.result}): " + ("\n" + body if "\n" in body else body))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu")
    parser.add_argument("--quick", action="store_true", help="fewer examples, trials, rounds")
    parser.add_argument(
        "--budget", type=float, default=300.0, help="seconds; later rows are not reached"
    )
    parser.add_argument("--only", help="comma-separated words: run the rows whose names hold one")
    parser.add_argument("--out", help="also write the table here (default: $OUT/gpu_check.md)")
    args = parser.parse_args(argv)
    is_cuda = torch.device(args.device).type == "cuda"
    ctx = Context(
        device=args.device,
        quick=args.quick,
        cuda=is_cuda and torch.cuda.is_available(),
        deadline=time.monotonic() + args.budget,
    )
    out = args.out or (
        os.path.join(os.environ["OUT"], "gpu_check.md") if os.environ.get("OUT") else None
    )
    command = "python bench/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    env = environment(ctx)
    print(env, flush=True)
    if is_cuda and not ctx.cuda:
        print(f"WARNING: {args.device} asked for, but torch sees no CUDA device", flush=True)
    start = time.perf_counter()
    rows: list[Row] = []
    wanted = [w.strip() for w in (args.only or "").split(",") if w.strip()]
    for name, fn in ROWS:
        if wanted and not any(w in name for w in wanted):
            continue
        print(f"-- {name} ...", flush=True)
        row = run_row(ctx, name, fn)
        rows.append(row)
        print(f"   {row.result} ({row.seconds:.0f} s): {row.numbers}", flush=True)
        if row.detail:
            print(textwrap.indent(row.detail.strip(), "   | "), flush=True)
        text = render(ctx, env, rows, command.strip(), time.perf_counter() - start)
        if out:
            Path(out).write_text(text)
    print()
    print(text)
    bad = [r for r in rows if r.result in ("UNEXPECTED", "error")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
