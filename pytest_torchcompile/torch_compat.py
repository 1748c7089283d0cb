"""Every private torch API the plugin relies on, in one place, with feature detection.

A torch release that renames or removes one of these breaks this module loudly (a
``TorchFeatureMissing`` naming the feature and the torch version), not ten call sites
quietly. Nothing outside this module imports from ``torch._*``. Where torch renamed a
feature, the new name is tried first, then the old one. Where the plugin reads torch's log
wording, it knows the formats of torch 2.4 to 2.13, and keeps text it does not recognise
verbatim rather than turning it into a silent "unknown".
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

TORCH_DIR = os.path.dirname(torch.__file__)
MARK_DYNAMIC = "torch._dynamo.mark_dynamic"  # named in advice to users


class TorchFeatureMissing(RuntimeError):
    """This torch lacks a private API the plugin needs; the message names it."""

    def __init__(self, feature: str, wanted: str) -> None:
        super().__init__(
            f"torch {torch.__version__} lacks {feature} ({wanted}); pytest-torchcompile "
            f"needs it: upgrade torch, or report the torch version that removed it"
        )


def _first(feature: str, *candidates: str) -> Any:
    """The first of ``candidates`` (``"module:attr"``) this torch has, newest name first."""
    for candidate in candidates:
        module_name, _, attr = candidate.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            continue
    raise TorchFeatureMissing(feature, " or ".join(c.replace(":", ".") for c in candidates))


def _config_key(feature: str, module: str, *names: str) -> tuple[Any, str]:
    """A config module and the first of ``names`` it defines (torch renames config keys)."""
    config = importlib.import_module(module)
    for name in names:
        if hasattr(config, name):
            return config, name
    raise TorchFeatureMissing(feature, " or ".join(f"{module}.{n}" for n in names))


def in_torch(filename: str | None) -> bool:
    """Is ``filename`` inside torch's own package (a wrapper, not the user's code)?"""
    return bool(filename) and os.path.abspath(str(filename)).startswith(TORCH_DIR + os.sep)


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


# -- logs ------------------------------------------------------------------------------------


def graph_break_loggers() -> list[logging.Logger]:
    """The loggers of Dynamo's ``graph_breaks`` log artifact (one per Dynamo module)."""
    importlib.import_module("torch._dynamo")  # its modules register the artifact loggers
    registry = _first("torch's registry of log artifacts", "torch._logging._internal:log_registry")
    names = sorted(
        n for n in getattr(registry, "artifact_log_qnames", ()) if n.endswith(".__graph_breaks")
    )
    if not names:
        raise TorchFeatureMissing(
            "the graph_breaks log",
            "loggers named *.__graph_breaks in torch._logging._internal.log_registry",
        )
    return [logging.getLogger(name) for name in names]


@contextlib.contextmanager
def quiet_structured_trace() -> Iterator[None]:
    """Keep torch's structured-trace records (empty DEBUG lines on the ``torch.__trace``
    logger) out of pytest's captured logs, where they bury the failure message; untouched
    when ``TORCH_TRACE`` asks for them."""
    if os.environ.get("TORCH_TRACE"):
        yield
        return
    trace_log = logging.getLogger("torch.__trace")

    def drop(record: logging.LogRecord) -> bool:
        return False

    trace_log.addFilter(drop)
    try:
        yield
    finally:
        trace_log.removeFilter(drop)


# Dynamo's graph-break log, as worded by torch 2.4 to 2.13 (tests/test_compat.py has samples):
#   2.4-2.5   "Graph break in user code at F:L\nReason: Unsupported: Tensor.item\nUser code ..."
#   2.7       "...\nGraph Break Reason: <type>\n  Explanation: ...\n  Hint: ...\n\n  Developer
#             debug context: ...\n\nUser code traceback: ..."
#   later     the same with " For more details about this graph break, please visit: <link>"
#   2.13      "Graph Break Reason: Encountered graph break when attempting to trace <op>:\n\n"
#             (or "Failed to handle graph break gracefully...") before that block
#   2.7+      "Graph break (user stack suppressed due to duplicate graph break) in user code
#             at F:L\nGraph Break Reason: ..."
#   2.13      "Graph break: torch.compile cannot properly resume from this graph break, which
#             results in a skip. ..." (the reason is in the record's exc_info)
_LOCATION = re.compile(r"in user code at (.+:\d+)\s*$", re.MULTILINE)
_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')
_REASON = re.compile(r"^\s*(?:Graph Break )?Reason: ?", re.MULTILINE)
_END_OF_REASON = re.compile(
    r"^\s*(?:Hint:|Developer debug context:|For more details|User code traceback:|"
    r"Stack variable source attribution:|Traceback \(most recent call last\)|from user code:|"
    r"\*\*\* While handling)",
    re.MULTILINE,
)
_FRAMING = ("Encountered graph break when attempting to trace", "Failed to handle graph break")
_LINK = re.compile(r"For more details about this graph break, please visit: (\S+)")


def parse_graph_break_log(
    message: str, error: BaseException | None = None
) -> tuple[str, str | None]:
    """``(reason, "file:line")`` from one record of Dynamo's graph-break log.

    The reason is the graph break's type and its explanation's first line (with the link to
    its documentation, where torch gives one), or the old single-line reason. ``error`` is
    the record's exception, which carries the reason where the message does not. A message
    in no known format keeps its first line: never an empty or made-up reason.
    """
    location = _LOCATION.search(message)
    where = location.group(1) if location else _last_file_line(message)
    reason = _reason(message)
    if reason is None and error is not None:
        reason = _reason(f"Reason: {error}")
    if reason is None:
        lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
        reason = next((ln for ln in lines if not _LOCATION.search(ln)), lines[0] if lines else "")
    link = _LINK.search(message) or (_LINK.search(str(error)) if error is not None else None)
    if link and link.group(1) not in reason:
        reason = f"{reason} (see {link.group(1)})"
    return reason or "graph break with an empty message", where


def _reason(text: str) -> str | None:
    match = _REASON.search(text)
    if match is None:
        return None
    block = _END_OF_REASON.split(text[match.end() :], maxsplit=1)[0]
    lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
    explained = next((i for i, ln in enumerate(lines) if ln.startswith("Explanation:")), None)
    if explained is None:  # 2.4-2.5: the reason is one line
        return lines[0] if lines else None
    head = [ln for ln in lines[:explained] if not ln.startswith(_FRAMING)] or lines[:explained]
    explanation = lines[explained].removeprefix("Explanation:").strip()
    headline = head[-1].rstrip(":") if head else ""
    return ": ".join(part for part in (headline, explanation) if part) or None


def _last_file_line(text: str) -> str | None:
    frames = _FILE_LINE.findall(text)
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else None


# Guard failures that come from Dynamo's assumptions about the first example's sizes:
# - it specialises dims of size 0 and 1: a static compile for a size-1 example ("expected 1,
#   actual 5"), or a dynamic compile that assumed >= 2 ("2 <= x.size()[0] ... 0/1
#   specialization"), recompiles on the next size;
# - duck sizing: dims of equal size in the first example share one symbol, so an example
#   where they differ recompiles ("x.size()[1] == x.size()[0]  # duck sizing added ...").
_SIZE_MISMATCH = re.compile(r"size mismatch at index \d+\. expected (\d+), actual (\d+)")
_AT_LEAST_TWO = re.compile(r"(?:^|\s|: )2 <= \S+\.size\(\)\[\d+\]")
_EQUAL_SIZES = re.compile(r"\S+\.size\(\)\[\d+\] == \S+\.size\(\)\[\d+\]")


def recompile_cause(reason: str) -> str | None:
    """``"size 0/1"`` or ``"duck sizing"`` where a guard failure comes from one of Dynamo's
    assumptions about the first example's sizes; None for other causes."""
    mismatch = _SIZE_MISMATCH.search(reason)
    if mismatch and {mismatch.group(1), mismatch.group(2)} & {"0", "1"}:
        return "size 0/1"
    if "0/1 specialization" in reason or _AT_LEAST_TWO.search(reason):
        return "size 0/1"
    if "duck sizing" in reason or _EQUAL_SIZES.search(reason):
        return "duck sizing"
    return None


# -- pytree: how registered containers flatten ---------------------------------------------


def pytree_children(node: Any) -> list[tuple[str, Any]] | None:
    """The children of ``node`` as its pytree registration flattens them, one level deep,
    each with a path suffix (``["key"]``, ``[0]``, ``.name``); None if ``node``'s type is
    not a registered pytree node (or this torch has no pytree registry)."""
    try:
        from torch.utils import _pytree as pytree
    except ImportError:  # pragma: no cover - every supported torch has it
        return None
    node_def = getattr(pytree, "SUPPORTED_NODES", {}).get(type(node))
    if node_def is None:
        return None
    with_keys: Callable[[Any], Any] | None = getattr(node_def, "flatten_with_keys_fn", None)
    if with_keys is not None:
        try:
            pairs, _ = with_keys(node)
            return [(_key_suffix(key), child) for key, child in pairs]
        except Exception:  # a registration whose keyed flatten is broken: use the plain one
            pass
    children, _ = node_def.flatten_fn(node)
    return [(f"[{i}]", child) for i, child in enumerate(children)]


def _key_suffix(key: Any) -> str:
    """``MappingKey("a")`` -> ``["a"]``, ``SequenceKey(0)`` -> ``[0]``, ``GetAttrKey`` ->
    ``.name``; anything else by its ``str``."""
    for attr, fmt in (("key", "[{!r}]"), ("idx", "[{}]"), ("name", ".{}")):
        if hasattr(key, attr):
            return fmt.format(getattr(key, attr)).replace("'", '"')
    return str(key)
