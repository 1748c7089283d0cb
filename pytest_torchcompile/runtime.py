"""``safe_compile``: compile, validate, optionally benchmark, and fall back to eager.

The same engine as the markers (``CompileChecker``): the verdict on the same model and
inputs is the same. Like a test, validation starts from ``torch.compiler.reset()``, so the
count of graphs is this model's own and "nothing was compiled" cannot hide behind another
model's cache; other compiled models then recompile from the warm on-disk cache on their
next call, which is why this belongs at start-up. Nothing is written to a Hypothesis
database in the working directory, and inductor's ``fallback_random`` is left off, so the
compiled model keeps inductor's fast RNG: validate with randomness off (``model.eval()``).

Under CUDA graphs (``mode="reduce-overhead"``), validation marks a step at each of its
calls and then puts torch's step tracking back as it was: the model handed back steps as
any reduce-overhead model does (each call a new step, replaying from about its third call;
a call may overwrite the previous call's outputs, so clone what you keep). Had the marked
steps stayed in force, each call made while the previous outputs were still referenced
would record a new CUDA graph, and none would replay.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import warnings
from collections.abc import Callable
from typing import Any

from .errors import CompileCheckError, SettingsError
from .records import CheckRecord
from .settings import SAFE_COMPILE_ARGS, CompileSettings, declarations, is_target

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
    Explicit keywords override ``settings``. Validation runs on the model's own device
    (its parameters', else its inputs'); the model is never moved. The compiled model
    returned is the one validated, sharing the model's parameters. On a compile error,
    a failed validation or a speedup below ``min_speedup``: with ``fallback=True`` return
    the original model with the reason (and warn); with ``fallback=False`` raise
    ``CompileCheckError``.
    """
    given = {k: v for k, v in locals().items() if v is not _UNSET and k in SAFE_COMPILE_ARGS}
    base = settings if settings is not None else CompileSettings()
    single = not isinstance(example_inputs, (dict, list, tuple))
    inputs = [example_inputs] if single else example_inputs
    device = _device_of(model, inputs)
    if device is not None:
        given["device"] = device
    resolved = base.replace(**given).validate_names()
    if is_target(resolved.mode):
        raise SettingsError(
            f"safe_compile compiles with torch.compile; {resolved.mode!r} is a deployment "
            "target, checked by the markers over a range of shapes (dims=): give "
            "safe_compile an inductor mode"
        )
    from .checker import CompileChecker

    checker = CompileChecker(
        resolved,
        test_id="safe_compile",
        fallback_random=False,
        database=False,
        skip=lambda reason: None,  # an undecided timing is judged below, not skipped
    )
    timed = resolved.benchmark or resolved.min_speedup is not None
    try:
        if timed:  # checks the outputs on these inputs first, then times: one compile
            threshold = resolved.min_speedup or _GATE_FREE_SPEEDUP
            checked = checker.check_faster(model, inputs, min_speedup=threshold, in_place=True)
        else:
            checked = checker.check_equivalent(model, inputs, examples=1, in_place=True)
    except CompileCheckError as error:
        return _fall_back(model, resolved, error)
    record = checked.record
    if record.outcome == "skipped":  # validated, but the machine was too busy to time
        if resolved.min_speedup is not None:  # a speed demand that nothing confirmed
            refused = CompileCheckError(f"speed not confirmed: {record.message}", record)
            return _fall_back(model, resolved, refused)
        message = f"safe_compile could not measure the speedup: {record.message}"
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        timed = False  # no speedup to report
    return _result(checked.compiled, resolved, record, compiled=True, timed=timed)


def signature_drift(
    func: Callable[..., Any] = safe_compile, cls: type = CompileSettings
) -> list[str]:
    """How ``func``'s setting keywords differ from the settings ``cls`` declares for
    ``safe_compile``; empty when they agree. The signature stays written out, for users and
    type checkers; a test runs this so it cannot drift from the declarations."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    declared = {name for name, d in declarations(cls).items() if d.safe_compile}
    params = {
        p.name: p
        for p in inspect.signature(func).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "settings"
    }
    drift = [
        f"{n}: declared for safe_compile, not a keyword" for n in sorted(declared - set(params))
    ]
    drift += [
        f"{n}: a keyword, not declared for safe_compile" for n in sorted(set(params) - declared)
    ]
    for name in sorted(declared & set(params)):
        param, field = params[name], fields[name]
        if str(param.annotation) != str(field.type):
            drift.append(f"{name}: annotated {param.annotation}, declared {field.type}")
        if param.default is not _UNSET:
            drift.append(f"{name}: defaults to {param.default!r}; settings decide the default")
    return drift


def _result(
    model: Callable[..., Any],
    settings: CompileSettings,
    record: CheckRecord | None,
    *,
    compiled: bool,
    timed: bool,
    reason: str | None = None,
) -> CompileResult:
    """The result a caller reads, from the check's record (None if none was made)."""
    speed = timed and record is not None and record.speedup is not None
    return CompileResult(
        model=model,
        compiled=compiled,
        fallback_used=not compiled and settings.fallback,
        reason=reason,
        validation_passed=compiled,
        max_abs_error=record.max_error if record else None,
        compile_seconds=record.compile_seconds if record else None,
        graph_breaks=len(record.graph_breaks) if record else 0,
        recompiles=len(record.recompiles) if record else 0,
        speedup=record.speedup if speed else None,  # type: ignore[union-attr]
        speedup_interval=(record.speedup_low, record.speedup_high) if speed else None,  # type: ignore[arg-type,union-attr]
        mode=settings.mode,
        backend=settings.backend,
    )


def _device_of(model: Any, inputs: Any) -> str | None:
    """The model's device: its first parameter or buffer, else its first tensor input."""
    import torch

    if isinstance(model, torch.nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return str(tensor.device)
    values = inputs.values() if isinstance(inputs, dict) else inputs
    for value in values:
        if isinstance(value, torch.Tensor):
            return str(value.device)
    return None


def _fall_back(model: Any, settings: CompileSettings, error: CompileCheckError) -> CompileResult:
    record = error.result if isinstance(error.result, CheckRecord) else None
    reason = str(error)
    result = _result(model, settings, record, compiled=False, timed=True, reason=reason)
    if not settings.fallback:
        raise CompileCheckError(f"safe_compile refused to compile: {reason}", result) from error
    message = f"safe_compile fell back to eager: {reason}"
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return result
