"""CUDA graphs: the skips torch logs, counts or makes in silence, and the state of the CUDA
graph trees."""

from __future__ import annotations

import ast
import contextlib
import importlib
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ._base import (
    _FILE_LINE,
    TorchFeatureMissing,
    _artifact_loggers,
    _config_key,
    _first,
    in_torch,
)

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
    return _artifact_loggers(
        module,  # registers its artifact loggers
        lambda name: name.startswith(module + ".") and name.endswith(_CUDAGRAPH_LOG_ARTIFACTS),
        "the log of CUDA graph skips",
        f"{module}.__cudagraphs or .__perf_hints in torch._logging._internal.log_registry",
    )


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
