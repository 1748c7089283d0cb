"""Dynamo's modes, backends and settings, and what it compiled: counters, per-frame
compilation metrics, recompile reasons."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from ._base import TorchFeatureMissing, _config_key, _first

MARK_DYNAMIC = "torch._dynamo.mark_dynamic"  # named in advice to users


# -- modes and backends ----------------------------------------------------------------------


def inductor_modes() -> tuple[str, ...]:
    """The ``torch.compile(mode=...)`` values: the keys of inductor's mode table."""
    list_mode_options = _first("inductor's compile modes", "torch._inductor:list_mode_options")
    return tuple(list_mode_options())


def inductor_mode_options(mode: str, dynamic: bool | None) -> dict[str, Any]:
    """The inductor options a mode stands for (``torch.compile`` expands it the same way)."""
    list_mode_options = _first("inductor's compile modes", "torch._inductor:list_mode_options")
    return dict(list_mode_options(mode, dynamic))


def backend_names() -> tuple[str, ...]:
    """Every registered backend, debug and testing ones included (public API first)."""
    list_backends = _first(
        "the registry of compile backends",
        "torch.compiler:list_backends",
        "torch._dynamo:list_backends",
    )
    return tuple(list_backends(exclude_tags=()))


def inductor_option_names() -> frozenset[str]:
    """Every key ``torch.compile(options=...)`` accepts for inductor (its config names)."""
    list_options = _first("inductor's option names", "torch._inductor:list_options")
    return frozenset(list_options())


# -- Dynamo and inductor settings ------------------------------------------------------------


def recompile_limit() -> int:
    """How many times Dynamo recompiles a frame before giving up on it."""
    config, key = _config_key(
        "Dynamo's recompile limit", "torch._dynamo.config", "recompile_limit", "cache_size_limit"
    )
    return int(getattr(config, key))


def fail_on_recompile_limit() -> contextlib.AbstractContextManager[Any]:
    """Make Dynamo raise at its recompile limit instead of silently running eager."""
    config, key = _config_key(
        "a way to make the recompile limit an error",
        "torch._dynamo.config",
        "fail_on_recompile_limit_hit",
        "fail_on_cache_limit_hit",
    )
    return config.patch(**{key: True})


def compile_errors_raise() -> contextlib.AbstractContextManager[Any]:
    """Make a failing compile raise, even under ``TORCHDYNAMO_SUPPRESS_ERRORS=1`` (which
    would run the frame eagerly and let a check compare eager with eager)."""
    config, key = _config_key(
        "Dynamo's error suppression", "torch._dynamo.config", "suppress_errors"
    )
    return config.patch(**{key: False})


def recompile_limit_error() -> type[BaseException]:
    """What Dynamo raises at the limit under ``fail_on_recompile_limit``."""
    return _first(
        "the recompile-limit exception",
        "torch._dynamo.exc:FailOnRecompileLimitHit",
        "torch._dynamo.exc:FailOnCacheLimitHit",
    )


def inductor_fallback_random() -> contextlib.AbstractContextManager[Any]:
    """Make inductor draw random numbers as eager does, so dropout compares like for like."""
    config, key = _config_key(
        "inductor's eager-compatible RNG", "torch._inductor.config", "fallback_random"
    )
    return config.patch(**{key: True})


def reset() -> None:
    """Forget every compiled frame, as in a fresh process (on-disk caches stay)."""
    torch.compiler.reset()


# -- what Dynamo compiled --------------------------------------------------------------------


# FX graph cache and AOTAutograd cache lookups, as torch counts them.
CACHE_COUNTERS = {
    "fxgraph_hit": ("inductor", "fxgraph_cache_hit"),
    "fxgraph_miss": ("inductor", "fxgraph_cache_miss"),
    "autograd_hit": ("aot_autograd", "autograd_cache_hit"),
    "autograd_miss": ("aot_autograd", "autograd_cache_miss"),
}


def cache_counts() -> dict[str, int]:
    """Compile-cache hits and misses so far in this process (0 where torch counts none)."""
    counters = _first("Dynamo's counters", "torch._dynamo.utils:counters")
    return {name: int(counters[group].get(key, 0)) for name, (group, key) in CACHE_COUNTERS.items()}


def graph_count() -> int:
    """Graphs Dynamo has compiled in this process (``counters["stats"]["unique_graphs"]``)."""
    counters = _first("Dynamo's counters", "torch._dynamo.utils:counters")
    return int(counters["stats"].get("unique_graphs", 0))


@dataclasses.dataclass(frozen=True)
class FrameMetrics:
    """One entry of Dynamo's compilation metrics, reduced to what the plugin reads: a
    compiled frame (its code, compile time, why it recompiled) or a backward graph."""

    function: str | None = None
    filename: str | None = None
    firstlineno: int | None = None
    seconds: float = 0.0  # the frame's whole compile (Dynamo and backend), or the backward's
    recompile_reason: str | None = None
    backward: bool = False
    graph_ops: int | None = None

    @property
    def where(self) -> str:
        return f"{self.function} ({self.filename}:{self.firstlineno})"


_FRAME_FIELDS = ("co_name", "co_filename", "co_firstlineno", "entire_frame_compile_time_s")


def frame_metrics(entry: Any, logged: Iterator[str] | None = None) -> FrameMetrics | None:
    """Read one ``CompilationMetrics`` entry; None for runtime events (not compiles).
    ``logged``: recompile reasons captured by ``capture_recompile_reasons``, in order, for
    a torch whose metrics record none (2.6)."""
    if getattr(entry, "is_runtime", False):
        return None
    if getattr(entry, "is_forward", True) is False or type(entry).__name__.startswith("Bwd"):
        micros = getattr(entry, "backward_cumulative_compile_time_us", None)
        seconds = (
            micros / 1e6 if micros is not None else getattr(entry, "inductor_compile_time_s", 0)
        )
        return FrameMetrics(seconds=float(seconds or 0.0), backward=True)
    has_reason = hasattr(entry, "recompile_reason")
    wanted = _FRAME_FIELDS + (("recompile_reason",) if has_reason else ("cache_size",))
    missing = [name for name in wanted if not hasattr(entry, name)]
    if missing:
        raise TorchFeatureMissing(
            "fields of Dynamo's compilation metrics", "CompilationMetrics." + ", ".join(missing)
        )
    if has_reason:
        reason = entry.recompile_reason or None
    elif (entry.cache_size or 0) > 0:  # a recompile: the frame had compiled entries already
        reason = next(logged, None) if logged is not None else None
        reason = reason or "guard failure not recorded by this torch"
    else:
        reason = None
    return FrameMetrics(
        function=entry.co_name,
        filename=entry.co_filename,
        firstlineno=entry.co_firstlineno,
        seconds=float(entry.entire_frame_compile_time_s or 0.0),
        recompile_reason=reason,
        graph_ops=getattr(entry, "graph_op_count", None),
    )


_LOGGED_REASONS: list[str] = []  # recompile reasons, where the metrics record none


def compilation_metrics() -> list[FrameMetrics]:
    """Every compile Dynamo recorded since ``clear_compilation_metrics``, oldest first."""
    get = _first("Dynamo's compilation metrics", "torch._dynamo.utils:get_compilation_metrics")
    logged = iter(list(_LOGGED_REASONS))
    return [frame for entry in get() if (frame := frame_metrics(entry, logged)) is not None]


@contextlib.contextmanager
def capture_recompile_reasons() -> Iterator[None]:
    """torch 2.6's compilation metrics hold no recompile reason: there, wrap the function
    Dynamo asks for them (its own guard-failure lookup) and keep what it returns. A torch
    that records the reason in its metrics is left untouched."""
    metrics = _first("Dynamo's compilation metrics", "torch._dynamo.utils:CompilationMetrics")
    if not dataclasses.is_dataclass(metrics) or "recompile_reason" in {
        f.name for f in dataclasses.fields(metrics)
    }:
        yield
        return
    module = importlib.import_module("torch._dynamo.convert_frame")
    names = ("get_and_maybe_log_recompilation_reason", "get_and_maybe_log_recompilation_reasons")
    name = next((n for n in names if hasattr(module, n)), None)
    if name is None:
        raise TorchFeatureMissing("Dynamo's recompile reasons", " or ".join(names))
    original = getattr(module, name)

    def keep(*args: Any, **kwargs: Any) -> Any:
        reasons = original(*args, **kwargs)
        if reasons:
            _LOGGED_REASONS.append(str(reasons[0]))
        return reasons

    setattr(module, name, keep)
    try:
        yield
    finally:
        setattr(module, name, original)


def clear_compilation_metrics() -> None:
    _LOGGED_REASONS.clear()
    _first("Dynamo's compilation metrics", "torch._dynamo.utils:clear_compilation_metrics")()


@contextlib.contextmanager
def keep_all_compilation_metrics() -> Iterator[None]:
    """Dynamo keeps its last 64 metrics entries only (a bounded deque): a large model's
    first frames, and their compile time and recompiles, would be lost. Keep every entry
    while a check runs, and restore torch's bound after."""
    set_limit = _first(
        "a way to size Dynamo's compilation metrics",
        "torch._dynamo.utils:set_compilation_metrics_limit",
    )
    utils = importlib.import_module("torch._dynamo.utils")
    store = getattr(utils, "_compilation_metrics", None)
    previous = getattr(store, "maxlen", 0) if store is not None else 0
    if previous is None:  # already unbounded
        previous = sys.maxsize
    previous = previous or getattr(utils, "DEFAULT_COMPILATION_METRICS_LIMIT", 64)
    set_limit(sys.maxsize)
    try:
        yield
    finally:
        set_limit(previous)


def check_graph_counter(graphs: int, frames: Iterable[FrameMetrics]) -> None:
    """A renamed counter reads 0 for ever, which would fail every check with "captured no
    graph": if the metrics show a frame that captured operations, say what broke."""
    ops = sum(frame.graph_ops or 0 for frame in frames)
    if graphs == 0 and ops:
        raise TorchFeatureMissing(
            "Dynamo's count of compiled graphs",
            f'counters["stats"]["unique_graphs"] stayed 0 while Dynamo captured {ops} operations',
        )
