"""``safe_compile``: compile, validate, optionally benchmark, and fall back to eager.

The same engine as the markers (``CompileChecker``): the verdict on the same model and
inputs is the same. Two differences suit a pipeline: Dynamo's global state is not reset
(other compiled models keep their caches), and nothing is written to a Hypothesis
database in the working directory.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable
from typing import Any

from .errors import CompileCheckError
from .records import CheckRecord
from .settings import CompileSettings

log = logging.getLogger("pytest_torchcompile")
_UNSET: Any = object()
_GATE_FREE_SPEEDUP = 1e-6  # benchmark=True without min_speedup: measure, don't gate


@dataclasses.dataclass(frozen=True)
class CompileResult:
    model: Callable[..., Any]  # the compiled model, or the original after a fallback
    compiled: bool
    fallback_used: bool
    reason: str | None
    validation_passed: bool
    max_abs_error: float | None
    compile_seconds: float | None
    graph_breaks: int
    recompiles: int
    speedup: float | None
    speedup_interval: tuple[float, float] | None
    mode: str
    backend: str


def safe_compile(
    model: Callable[..., Any],
    example_inputs: Any,
    *,
    settings: CompileSettings | None = None,
    mode: str = _UNSET,
    backend: str = _UNSET,
    dynamic: bool | None = _UNSET,
    fullgraph: bool = _UNSET,
    options: dict[str, Any] | None = _UNSET,
    rtol: float | None = _UNSET,
    atol: float | None = _UNSET,
    fallback: bool = _UNSET,
    benchmark: bool = _UNSET,
    min_speedup: float | None = _UNSET,
) -> CompileResult:
    """Compile ``model`` if, on ``example_inputs``, it matches eager (and is fast enough).

    ``example_inputs``: a tuple/list of positional inputs or a dict of keyword inputs.
    Explicit keywords override ``settings``. On a compile error, a failed validation or a
    speedup below ``min_speedup``: with ``fallback=True`` return the original model with
    the reason (and warn); with ``fallback=False`` raise ``CompileCheckError``.
    """
    given = {k: v for k, v in locals().items() if v is not _UNSET and k in _SETTING_ARGS}
    base = settings if settings is not None else CompileSettings()
    resolved = base.replace(**given).validate_names()
    from .checker import CompileChecker
    from .compiling import compile_kwargs

    checker = CompileChecker(resolved, test_id="safe_compile", fallback_random=False,
                             isolate=False, database=False)  # fmt: skip
    inputs = example_inputs if isinstance(example_inputs, (dict, list)) else (
        tuple(example_inputs) if isinstance(example_inputs, tuple) else (example_inputs,))  # fmt: skip
    speed: CheckRecord | None = None
    try:
        checked = checker.assert_equivalent(model, inputs, examples=1)
        if resolved.benchmark or resolved.min_speedup is not None:
            threshold = resolved.min_speedup or _GATE_FREE_SPEEDUP
            speed = checker.assert_faster(model, inputs, min_speedup=threshold)
    except CompileCheckError as error:
        return _fall_back(model, resolved, error)
    import torch

    return CompileResult(
        model=torch.compile(model, **compile_kwargs(resolved)),
        compiled=True,
        fallback_used=False,
        reason=None,
        validation_passed=True,
        max_abs_error=checked.max_error,
        compile_seconds=checked.compile_seconds,
        graph_breaks=len(checked.graph_breaks),
        recompiles=len(checked.recompiles),
        speedup=speed.speedup if speed else None,
        speedup_interval=(speed.speedup_low, speed.speedup_high) if speed else None,  # type: ignore[arg-type]
        mode=resolved.mode,
        backend=resolved.backend,
    )


_SETTING_ARGS = ("mode", "backend", "dynamic", "fullgraph", "options", "rtol", "atol",
                 "fallback", "benchmark", "min_speedup")  # fmt: skip


def _fall_back(model: Any, settings: CompileSettings, error: Exception) -> CompileResult:
    record = getattr(error, "result", None)
    reason = str(error)
    result = CompileResult(
        model=model,
        compiled=False,
        fallback_used=settings.fallback,
        reason=reason,
        validation_passed=False,
        max_abs_error=getattr(record, "max_error", None),
        compile_seconds=getattr(record, "compile_seconds", None),
        graph_breaks=len(getattr(record, "graph_breaks", ())),
        recompiles=len(getattr(record, "recompiles", ())),
        speedup=getattr(record, "speedup", None),
        speedup_interval=(record.speedup_low, record.speedup_high)
        if getattr(record, "speedup", None) is not None
        else None,
        mode=settings.mode,
        backend=settings.backend,
    )
    if not settings.fallback:
        raise CompileCheckError(f"safe_compile refused to compile: {reason}", result) from error
    message = f"safe_compile fell back to eager: {reason}"
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return result
