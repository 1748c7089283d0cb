"""Every private torch API the plugin relies on, in one place, with feature detection.

A torch release that renames or removes one of these breaks this package loudly (a
``TorchFeatureMissing`` naming the feature and the torch version), not ten call sites
quietly. Nothing outside this package imports from ``torch._*``. Where torch renamed a
feature, the new name is tried first, then the old one. Where the plugin reads torch's log
wording, it knows the formats of torch 2.4 to 2.13, and keeps text it does not recognise
verbatim rather than turning it into a silent "unknown".

Callers import the package (``from . import torch_compat as compat``) and look names up on
it at call time (``compat.NAME``), so a test can patch one name here. By topic: ``_base``
(the error and the newest-name-first look-ups), ``dynamo`` (modes, backends, settings,
compilation metrics), ``logs`` (graph-break and guard-failure wording), ``pytree``,
``inductor`` (bisector, cache artifacts, graph repro), ``cudagraphs`` and ``export``
(torch.export and AOTInductor).
"""

from ._base import TORCH_DIR, TorchFeatureMissing, in_torch
from ._base import _config_key as _config_key  # tests reach these two
from ._base import _first as _first
from .cudagraphs import (
    cudagraph_pool,
    cudagraph_skip_count,
    cudagraph_skip_loggers,
    cudagraph_steps_kept,
    cudagraph_tree_state,
    hear_silent_cudagraph_skips,
    inductor_cudagraphs_default,
    parse_cudagraph_skip,
)
from .dynamo import (
    CACHE_COUNTERS,
    MARK_DYNAMIC,
    FrameMetrics,
    backend_names,
    cache_counts,
    capture_recompile_reasons,
    check_graph_counter,
    clear_compilation_metrics,
    compilation_metrics,
    compile_errors_raise,
    fail_on_recompile_limit,
    frame_metrics,
    graph_count,
    inductor_fallback_random,
    inductor_mode_options,
    inductor_modes,
    inductor_option_names,
    keep_all_compilation_metrics,
    recompile_limit,
    recompile_limit_error,
    reset,
)
from .export import (
    CHECK_LOWERBOUND,
    RUNTIME_CHECKS_ENV,
    Violation,
    aoti_compile,
    aoti_load,
    aoti_unavailable,
    export,
    is_constraint_violation,
    lowerbound_switch,
    machine_key,
    make_dim,
    numbers_back,
    register_output_dataclasses,
    user_error_type,
    user_output_values,
    violations,
)
from .inductor import (
    compiler_bisector,
    dynamo_graphs,
    graph_repro,
    load_cache_artifacts,
    merge_cache_artifacts,
    run_bisector,
    save_cache_artifacts,
)
from .logs import (
    graph_break_loggers,
    parse_graph_break_log,
    quiet_structured_trace,
    recompile_cause,
)
from .pytree import pytree_children

__all__ = [
    "CHECK_LOWERBOUND",
    "RUNTIME_CHECKS_ENV",
    "Violation",
    "aoti_compile",
    "aoti_load",
    "aoti_unavailable",
    "export",
    "is_constraint_violation",
    "lowerbound_switch",
    "machine_key",
    "make_dim",
    "numbers_back",
    "register_output_dataclasses",
    "user_error_type",
    "user_output_values",
    "violations",
    "CACHE_COUNTERS",
    "MARK_DYNAMIC",
    "TORCH_DIR",
    "FrameMetrics",
    "TorchFeatureMissing",
    "backend_names",
    "cache_counts",
    "capture_recompile_reasons",
    "check_graph_counter",
    "clear_compilation_metrics",
    "compilation_metrics",
    "compile_errors_raise",
    "compiler_bisector",
    "cudagraph_pool",
    "cudagraph_skip_count",
    "cudagraph_skip_loggers",
    "cudagraph_steps_kept",
    "cudagraph_tree_state",
    "dynamo_graphs",
    "fail_on_recompile_limit",
    "frame_metrics",
    "graph_break_loggers",
    "graph_count",
    "graph_repro",
    "hear_silent_cudagraph_skips",
    "in_torch",
    "inductor_cudagraphs_default",
    "inductor_fallback_random",
    "inductor_mode_options",
    "inductor_modes",
    "inductor_option_names",
    "keep_all_compilation_metrics",
    "load_cache_artifacts",
    "merge_cache_artifacts",
    "parse_cudagraph_skip",
    "parse_graph_break_log",
    "pytree_children",
    "quiet_structured_trace",
    "recompile_cause",
    "recompile_limit",
    "recompile_limit_error",
    "reset",
    "run_bisector",
    "save_cache_artifacts",
]
