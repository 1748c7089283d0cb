"""Marker arguments: which each marker takes (derived from the settings' declarations),
its documentation line, and their validation at collection. Torch-free."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .errors import SettingsError
from .settings import (
    MARKERS,
    CompileSettings,
    _reject_unknown,
    check_mode,
    declarations,
)

# Arguments a marker takes beside settings: what to feed the model, and which modes to run.
_CHECK_ARGS = ("inputs", "dims", "modes")
# Settings a marker cannot do without, with an example value for the error that asks.
_REQUIRED: dict[str, dict[str, str]] = {"compile_faster": {"min_speedup": "1.2"}}
MARKER_ARGS: dict[str, tuple[str, ...]] = {
    marker: _CHECK_ARGS + tuple(n for n, d in declarations().items() if marker in d.markers)
    for marker in MARKERS
}
_MARKER_SUMMARY = {
    "compile_equivalent": (
        "the test returns a model (or (model, inputs)); it is compiled under every "
        "--compile-modes mode or deployment target (export, aoti) and checked against eager "
        "on Hypothesis-drawn shapes (under a target, the ends of dims= always among them, "
        "and sizes past them refused); a failure is diagnosed (diagnose='auto', 'deep' or "
        "'off')."
    ),
    "compile_faster": (
        "the test returns a model; compiled must be at least min_speedup times faster than "
        "eager, by paired interleaved timing with a 95% confidence interval."
    ),
}


def marker_doc(marker: str) -> str:
    """The marker's line for ``pytest --markers``: its arguments, required ones first, with
    their built-in defaults (``...`` where there is none), then what it checks."""
    fields = {f.name: f.default for f in dataclasses.fields(CompileSettings)}
    required = tuple(_REQUIRED.get(marker, ()))
    names = required + tuple(n for n in MARKER_ARGS[marker] if n not in required)
    shown = [f"{n}=..." if fields.get(n) is None else f"{n}={fields[n]!r}" for n in names]
    return f"{marker}({', '.join(shown)}): {_MARKER_SUMMARY[marker]}"


@dataclasses.dataclass(frozen=True)
class MarkerArgs:
    """A marker's arguments, split into settings overrides and what to feed the model."""

    marker: str
    overrides: dict[str, Any]
    inputs: Any = None
    dims: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    modes: tuple[str, ...] | None = None


def parse_marker(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> MarkerArgs:
    """Validate a marker's arguments at collection; errors name the argument."""
    if args:
        raise SettingsError(
            f"@{name} takes keyword arguments only, got positional {args!r}; "
            f"write e.g. @{name}(inputs=[...])"
        )
    _reject_unknown(kwargs, f"@{name} argument", MARKER_ARGS[name])
    overrides = {k: v for k, v in kwargs.items() if k not in _CHECK_ARGS}
    for arg, example in _REQUIRED.get(name, {}).items():
        if overrides.get(arg) is None:
            raise SettingsError(f"@{name} needs {arg}=, e.g. {arg}={example}")
    CompileSettings(**overrides)  # validates values and names the bad one
    modes = kwargs.get("modes")
    if modes is not None:
        if isinstance(modes, str):
            modes = (modes,)
        modes = tuple(modes)
        for mode in modes:
            check_mode(mode)
    dims = parse_dims(kwargs.get("dims"))
    named = spec_dim_names(kwargs.get("inputs"))
    if named is not None:
        check_dims_used(dims, named)
    return MarkerArgs(
        marker=name,
        overrides=overrides,
        inputs=kwargs.get("inputs"),
        dims=dims,
        modes=modes,
    )


def spec_dim_names(inputs: Any) -> tuple[str, ...] | None:
    """The symbolic dims the inputs' TensorSpecs name, in order; None where the inputs are
    not a list or dict of values (a Hypothesis strategy, or not given yet)."""
    if isinstance(inputs, Mapping):
        values: Any = inputs.values()
    elif isinstance(inputs, (list, tuple)):
        values = inputs
    elif hasattr(inputs, "dim_names"):
        values = (inputs,)
    else:
        return None
    return tuple(dict.fromkeys(n for v in values for n in getattr(v, "dim_names", ())))


def check_dims_used(dims: Mapping[str, Any], named: tuple[str, ...]) -> None:
    unused = sorted(set(dims) - set(named))
    if unused:
        raise SettingsError(
            f"dims names {', '.join(map(repr, unused))} that no TensorSpec uses; "
            f"symbolic dims in inputs: {', '.join(named) or 'none'}"
        )


def parse_dims(dims: Any) -> dict[str, tuple[int, int]]:
    if dims is None:
        return {}
    if not isinstance(dims, Mapping):
        raise SettingsError(f"dims must map dim names to (low, high), got {dims!r}")
    parsed = {}
    for dim, bounds in dims.items():
        if isinstance(bounds, int) and not isinstance(bounds, bool):
            bounds = (bounds, bounds)
        if (
            not isinstance(bounds, (tuple, list))
            or len(bounds) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
            or not 0 <= bounds[0] <= bounds[1]
        ):
            raise SettingsError(
                f"dims[{dim!r}] must be an inclusive range (low, high) with 0 <= low <= high, "
                f"got {bounds!r}"
            )
        parsed[str(dim)] = (bounds[0], bounds[1])
    return parsed
