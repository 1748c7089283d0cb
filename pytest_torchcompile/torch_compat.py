"""Every private torch API the plugin relies on, in one place, with feature detection.

A torch release that renames or removes one of these breaks this module loudly (a
``TorchFeatureMissing`` naming the feature and the torch version), not ten call sites
quietly. Nothing outside this module imports from ``torch._*``. Where torch renamed a
feature, the new name is tried first, then the old one. Where the plugin reads torch's log
wording, it knows the formats of torch 2.4 to 2.13, and keeps text it does not recognise
verbatim rather than turning it into a silent "unknown".
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import io
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


# -- inductor's compiler bisector (diagnose="deep") ----------------------------------------


def compiler_bisector() -> Any:
    """``CompilerBisector`` (torch>=2.6), or None where this torch has none."""
    try:
        from torch._inductor.compiler_bisector import CompilerBisector
    except ImportError:
        return None
    return CompilerBisector if hasattr(CompilerBisector, "do_bisect") else None


def run_bisector(bisector: Any, good: Callable[[], bool]) -> str:
    """Bisect inductor with ``good`` (True while the result is right); the culprit in a
    line: ``lowerings #2: relu``. The rungs below inductor are taken as good (the stage
    ladder has judged them). The bisector's process-wide state is always put back: left
    on, it would swap the backend of every later ``torch.compile``."""

    def inductor_good() -> bool:
        return bisector.get_backend() != "inductor" or good()

    enabled = bisector.bisection_enabled
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = bisector.do_bisect(inductor_good)
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            bisector.delete_bisect_status()
        bisector.bisection_enabled = enabled
        bisector.in_process_cache = None
    if result is None:
        return "no stage fails under the bisector (the failure did not reproduce)"
    if not result.subsystem:
        return f"in {result.backend}, but no single subsystem was identified"
    if result.bisect_number is None or result.subsystem == result.debug_info:
        return f"{result.backend}: {result.subsystem} (a config switch)"
    info = f": {result.debug_info}" if result.debug_info else ""
    return f"{result.subsystem} #{result.bisect_number}{info}"


# -- CUDA graphs -----------------------------------------------------------------------------

# Every CUDA graph skip goes through ``log_cudagraph_skip_and_bump_counter`` in
# torch/_inductor/cudagraph_utils.py: it bumps ``counters["inductor"]["cudagraph_skips"]`` and
# logs the message at WARNING on that module's artifact logger: "perf_hints" up to torch 2.6,
# "cudagraphs" since. A graph with no CUDA kernel bumps the counter without a message. Wording:
#   "skipping cudagraphs due to mutated inputs (1 instances). Found from : \n  File ..."
#   "skipping cudagraphs due to skipping cudagraphs due to cpu device (arg1_1). Found from ..."
#     (a lowering reason, already worded, wrapped once more)
#   "skipping cudagraphs due to disabling cudagraphs due to incompatible op aten.nonzero..."
#   "skipping cudagraphs due to ['mutated inputs']" (the list of failed tests)
#   "skipping cudagraph due to function 0 exceeding max re-recording limit (=50) on
#     cudagraph node None due to static input data pointer changed. ..." (torch 2.4+)
_CUDAGRAPH_SKIP = re.compile(r"(?:skipping|disabling) cudagraphs? due to\s*", re.IGNORECASE)
_FOUND_FROM = re.compile(r"\.?\s*Found from\s*:?", re.IGNORECASE)
_CUDAGRAPH_LOG_ARTIFACTS = ("__cudagraphs", "__perf_hints")


def cudagraph_skip_loggers() -> list[logging.Logger]:
    """The loggers CUDA graph skips are logged on (one or two artifacts of one module)."""
    module = "torch._inductor.cudagraph_utils"
    importlib.import_module(module)  # registers its artifact loggers
    registry = _first("torch's registry of log artifacts", "torch._logging._internal:log_registry")
    names = sorted(
        n
        for n in getattr(registry, "artifact_log_qnames", ())
        if n.startswith(module + ".") and n.endswith(_CUDAGRAPH_LOG_ARTIFACTS)
    )
    if not names:
        raise TorchFeatureMissing(
            "the log of CUDA graph skips",
            f"{module}.__cudagraphs or .__perf_hints in torch._logging._internal.log_registry",
        )
    return [logging.getLogger(name) for name in names]


def parse_cudagraph_skip(message: str) -> tuple[str, str | None] | None:
    """``(reason, "file:line")`` from a CUDA graph skip's log message; None for other
    messages on the same logger. The location is the innermost frame outside torch of the
    stack torch attached (``Found from``), where it attached one."""
    match = _CUDAGRAPH_SKIP.search(message)
    if match is None:
        return None
    text = message[match.end() :]
    while (again := _CUDAGRAPH_SKIP.match(text)) is not None:  # a reason worded twice
        text = text[again.end() :]
    head = _FOUND_FROM.split(text, maxsplit=1)[0]
    lines = [ln.strip() for ln in head.splitlines() if ln.strip()]
    reason = lines[0].rstrip(".") if lines else ""
    if reason.startswith("[") and reason.endswith("]"):  # the list of failed tests
        with contextlib.suppress(ValueError, SyntaxError):
            reason = ", ".join(map(str, ast.literal_eval(reason)))
    frames = _FILE_LINE.findall(text)
    outside = [f for f in frames if not in_torch(f[0])] or frames
    location = f"{outside[-1][0]}:{outside[-1][1]}" if outside else None
    return reason or "no reason given", location


def cudagraph_skip_count() -> int:
    """CUDA graph skips torch has counted in this process, stated or not."""
    counters = _first("Dynamo's counters", "torch._dynamo.utils:counters")
    return int(counters["inductor"].get("cudagraph_skips", 0))


def inductor_cudagraphs_default() -> bool:
    """Whether inductor wraps its code in CUDA graphs when no mode or option says
    (``TORCHINDUCTOR_CUDAGRAPHS=1``, or the user's own config)."""
    config, key = _config_key("inductor's CUDA graphs switch", "torch._inductor.config", "triton")
    return bool(getattr(getattr(config, key), "cudagraphs", False))


def _cudagraph_tree(device: torch.device) -> Any | None:
    """The CUDA graph tree manager of ``device``, where one exists (never creates one)."""
    module = sys.modules.get("torch._inductor.cudagraph_trees")
    if module is None or device.type != "cuda" or not torch.cuda.is_available():
        return None  # never imported: no CUDA graph was ever made
    get_manager = getattr(module, "get_manager", None)
    if get_manager is None:
        raise TorchFeatureMissing("CUDA graph trees", "torch._inductor.cudagraph_trees.get_manager")
    index = device.index if device.index is not None else torch.cuda.current_device()
    return get_manager(index, create_if_none_exists=False)


def cudagraph_tree_state(device: torch.device) -> str | None:
    """What the last compiled call on ``device`` did: "warmup" (ran once before recording),
    "recording", "execution" (replayed a recorded graph), or None where no CUDA graph tree
    holds live memory (none made, or every graph skipped)."""
    manager = _cudagraph_tree(device)
    state = getattr(manager, "path_state", None)
    name = getattr(state, "name", None)
    return None if name in (None, "NONE") else str(name).lower()


def cudagraph_pool(device: torch.device) -> tuple[int, int] | None:
    """The id of the private memory pool the CUDA graph tree of ``device`` records into
    (as ``torch.cuda.memory_snapshot()`` names segments' pools); None where there is none."""
    pool = getattr(_cudagraph_tree(device), "cuda_graphs_thread_pool", None)
    return tuple(pool) if pool is not None else None  # type: ignore[return-value]


# Under graph partition (on by default outside fbcode in torch 2.11 and 2.13), each
# compiled graph's ``post_compile`` hands CUDA graphs to ``cudagraph_partition_post_compile``
# in torch/_inductor/output_code.py. When no partition is left to capture, or a test failed
# (mutated inputs, non-Tensor inputs...), it disables CUDA graphs and returns without
# logging or counting a skip (torch 2.11 and 2.13 alike; pytorch/pytorch#176611):
#     if (cudagraph_fail_reasons or compiled_graph.partition_maps is None
#             or len(compiled_graph.partition_maps) == 0):
#         # cudagraphify is not called if there are no partitions
#         BoxedBool.disable(cudagraphs)
#         maybe_handle_backward_generation(compiled_graph, boxed_forward_device_index)
#         return
# No partition is left, for instance, under ``triton.cudagraph_skip_dynamic_graphs=True``
# in a graph whose every kernel uses a dynamic size: ``Scheduler.should_partition`` splits
# each such kernel out ("dynamic shape ops"), and ``compute_graph_partition_maps`` keeps
# no map for a partition it split out.
_PARTITION_POST_COMPILE = "cudagraph_partition_post_compile"
_NOTHING_TO_CAPTURE = (
    "graph partition left nothing to capture: inductor split every kernel of this graph "
    "out of CUDA graphs, and torch ran it without them, silently"
)
_DYNAMIC_SPLIT = (
    " (triton.cudagraph_skip_dynamic_graphs=True splits out each kernel that uses a dynamic size)"
)


@contextlib.contextmanager
def hear_silent_cudagraph_skips(sink: Callable[[str, str | None], None]) -> Iterator[None]:
    """Call ``sink(reason, "file:line" or None)`` for each graph with CUDA kernels that
    graph partition leaves without CUDA graphs and torch does not count as a skip. Where
    this torch has no graph partition, there is nothing to hear. A skip torch counts (a
    later torch may) is not heard twice: its log says it."""
    module = importlib.import_module("torch._inductor.output_code")
    original = getattr(module, _PARTITION_POST_COMPILE, None)
    if original is None:
        yield
        return
    import inspect

    signature = inspect.signature(original)
    if not {"compiled_graph", "cudagraphs"} <= set(signature.parameters):
        raise TorchFeatureMissing(
            "the CUDA graph step of graph partition",
            f"torch._inductor.output_code.{_PARTITION_POST_COMPILE}(compiled_graph, cudagraphs)",
        )

    def post_compile(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        graph, cudagraphs = bound.arguments["compiled_graph"], bound.arguments["cudagraphs"]
        wanted, counted = bool(cudagraphs), cudagraph_skip_count()
        result = original(*args, **kwargs)
        if wanted and not cudagraphs and _runs_cuda(graph) and cudagraph_skip_count() == counted:
            sink(*_silent_skip(graph))
        return result

    setattr(module, _PARTITION_POST_COMPILE, post_compile)
    try:
        yield
    finally:
        setattr(module, _PARTITION_POST_COMPILE, original)


def _runs_cuda(graph: Any) -> bool:
    """Whether a compiled graph has work on a CUDA device: a graph of views alone (no
    scheduler node, as inductor's metrics count them) costs nothing without CUDA graphs."""
    deltas = getattr(graph, "metrics_deltas", None)
    nodes = getattr(deltas, "ir_nodes_pre_fusion", None)
    return "cuda" in (getattr(graph, "device_types", None) or ()) and nodes != 0


def _silent_skip(graph: Any) -> tuple[str, str | None]:
    """Reason and user line of a skip torch did not state, in the words torch would use."""
    info = getattr(graph, "cudagraph_info", None)
    failed = list(getattr(info, "cudagraph_fail_reasons", None) or ())
    reason = getattr(graph, "disabled_cudagraphs_reason", None) or (
        ", ".join(failed) if failed else None
    )
    if reason is None:
        triton = getattr(importlib.import_module("torch._inductor.config"), "triton", None)
        dynamic = bool(getattr(triton, "cudagraph_skip_dynamic_graphs", False))
        reason = _NOTHING_TO_CAPTURE + (_DYNAMIC_SPLIT if dynamic else "")
    traces = [t for t in getattr(info, "stack_traces", None) or () if t]
    found = f". Found from : \n{traces[0]}" if traces and "Found from" not in reason else ""
    parsed = parse_cudagraph_skip(f"skipping cudagraphs due to {reason}{found}")
    return parsed if parsed is not None else (reason, None)


@contextlib.contextmanager
def cudagraph_steps_kept() -> Iterator[None]:
    """Leave cudagraph trees' step tracking as it was on entry.

    ``torch.compiler.cudagraph_mark_step_begin()`` switches the trees, for the rest of the
    process, from starting a step at each call of a compiled function (dynamo's generation)
    to starting one only where a step is marked (``MarkStepBox.mark_step_counter`` != 0 in
    ``CUDAGraphTreeManager.get_curr_generation``). A model handed back after marked calls
    would then, called as usual, record a new graph at every call while the previous call's
    outputs are alive, and never replay."""
    name = "torch._inductor.cudagraph_trees"
    saved = getattr(getattr(sys.modules.get(name), "MarkStepBox", None), "mark_step_counter", 0)
    try:
        yield
    finally:
        module = sys.modules.get(name)
        box = getattr(module, "MarkStepBox", None)
        if module is not None and box is None:
            raise TorchFeatureMissing("cudagraph trees' step counter", f"{name}.MarkStepBox")
        if box is not None:
            box.mark_step_counter = saved


# -- portable compile-cache artifacts ("mega-cache") -----------------------------------------


def load_cache_artifacts(payload: bytes) -> dict[str, int]:
    """Write serialized artifacts into inductor's, AOTAutograd's... on-disk caches; how many
    of each kind were written. Raises ``ValueError`` where torch cannot read the payload."""
    load = _first("portable compile-cache artifacts", "torch.compiler:load_cache_artifacts")
    info = _quietly(load, payload)
    if info is None:
        raise ValueError("torch could not read these compile-cache artifacts")
    return {kind: len(keys) for kind, keys in info.artifacts.items() if keys}


def save_cache_artifacts() -> bytes | None:
    """Every compile-cache artifact this process wrote or hit, serialized; None if none."""
    save = _first("portable compile-cache artifacts", "torch.compiler:save_cache_artifacts")
    saved = save()
    return saved[0] if saved else None


def merge_cache_artifacts(payloads: Iterable[bytes]) -> tuple[bytes, dict[str, int]] | None:
    """One serialized payload holding every distinct artifact of ``payloads`` (and how many
    of each kind), or None if they hold none. torch serializes the artifacts of one process
    only; this reads several (a loaded file, each xdist worker's) and writes them as torch
    would, without touching any cache on disk. Raises ``ValueError`` on an unreadable one."""
    manager = _first(
        "torch's cache-artifact manager",
        "torch.compiler._cache:CacheArtifactManager",
    )
    write_one = _first(
        "torch's cache-artifact serializer",
        "torch.compiler._cache:_serialize_single_cache",
    )
    serializer = _first(
        "torch's appending byte serializer",
        "torch.utils._appending_byte_serializer:AppendingByteSerializer",
    )
    merged: dict[str, list[Any]] = {}
    seen: set[tuple[str, str, bytes]] = set()
    for payload in payloads:
        artifacts = _quietly(manager.deserialize, payload)
        if artifacts is None:
            raise ValueError("torch could not read these compile-cache artifacts")
        for kind, items in artifacts.items():
            for artifact in items:
                identity = (kind, artifact.key, artifact.content)
                if identity not in seen:
                    seen.add(identity)
                    merged.setdefault(kind, []).append(artifact)
    if not merged:
        return None
    writer = serializer(serialize_fn=write_one)
    writer.extend(merged.items())
    return writer.to_bytes(), {kind: len(items) for kind, items in merged.items()}


def _quietly(function: Callable[[bytes], Any], payload: bytes) -> Any:
    """torch logs a traceback at WARNING for an unreadable payload; the caller says it in
    one line instead."""
    log = logging.getLogger("torch.compiler._cache")
    previous = log.disabled
    log.disabled = True
    try:
        return function(payload)
    finally:
        log.disabled = previous


# -- the minifier's standalone graph repro -------------------------------------------------


def dynamo_graphs(model: Any, args: tuple, kwargs: dict, dynamic: bool | None) -> list[Any]:
    """The FX graphs Dynamo captures from one call, each with its example inputs."""
    graphs: list[tuple[Any, list[Any]]] = []

    def capture(gm: Any, example_inputs: list[Any]) -> Any:
        graphs.append((gm, list(example_inputs)))
        return gm.forward

    torch._dynamo.reset()
    try:
        torch.compile(model, backend=capture, dynamic=dynamic)(*args, **kwargs)
    finally:
        torch._dynamo.reset()
    return graphs


def graph_repro(
    graph: tuple[Any, list[Any]], backend: str, options: dict[str, Any], save_dir: str
) -> str:
    """The script PyTorch's minifier writes for one Dynamo graph (``after_dynamo``): it
    loads the graph's inputs from ``save_dir`` and checks ``backend`` against eager with
    ``same()``. Inductor's options are in its config dump, so the script compiles alike."""
    from torch._dynamo.repro.after_dynamo import generate_dynamo_fx_repro_string
    from torch._inductor import config as inductor_config

    gm, example_inputs = graph
    known = {k: v for k, v in options.items() if k in inductor_option_names()}
    with inductor_config.patch(known):
        return generate_dynamo_fx_repro_string(
            gm, example_inputs, backend, check_accuracy=True, save_dir=save_dir
        )
