"""Validated settings shared by the CLI, ini, markers, the fixture and ``safe_compile``.

Torch is imported only to check mode and backend names, so building settings from the
command line stays cheap until a compile check actually runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Mapping
from typing import Any, cast

from .errors import SettingsError

DEFAULT_MODE = "default"
DEFAULT_BACKEND = "inductor"
# Deployment targets, accepted beside inductor's modes: ``export`` checks the module of
# ``torch.export.export``, ``aoti`` the AOTInductor package compiled from it (deploying.py).
TARGETS = ("export", "aoti")


def is_target(mode: str) -> bool:
    return mode in TARGETS


@functools.cache
def available_modes() -> tuple[str, ...]:
    """The modes this torch knows, as ``torch.compile(mode=...)`` accepts them."""
    from .torch_compat import inductor_modes

    return inductor_modes()


@functools.cache
def available_backends() -> tuple[str, ...]:
    """Every registered Dynamo backend, debug and testing ones included."""
    from .torch_compat import backend_names

    return backend_names()


def check_mode(mode: str) -> str:
    if is_target(mode):
        return mode
    valid = available_modes()
    if mode not in valid:
        raise SettingsError(
            f"unknown compile mode {mode!r}; valid modes: {', '.join(valid)}; "
            f"deployment targets: {', '.join(TARGETS)}"
        )
    return mode


def check_options(backend: str, options: Mapping[str, Any] | None) -> None:
    """Inductor's options must be names inductor knows (a typo would be ignored silently
    by no one: torch raises mid-compile); the nearest valid name is suggested."""
    if not options or backend != DEFAULT_BACKEND:
        return
    from .torch_compat import inductor_option_names

    valid = inductor_option_names()
    for key in options:
        if key not in valid:
            near = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise SettingsError(f"options: {key!r} is not an inductor option{hint}")


def check_backend(backend: str) -> str:
    import torch

    if not hasattr(torch, "compile"):
        raise SettingsError(
            f"torch {torch.version.__version__} has no torch.compile; pytest-torchcompile "
            "needs torch>=2.0"
        )
    valid = available_backends()
    if backend not in valid:
        raise SettingsError(
            f"unknown compile backend {backend!r} (not installed or not registered); "
            f"registered backends: {', '.join(valid)}"
        )
    return backend


def parse_modes(text: str) -> tuple[str, ...]:
    """``"default, max-autotune"`` -> validated, de-duplicated modes in the given order."""
    modes = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not modes:
        raise SettingsError("--compile-modes is empty; give at least one mode, e.g. 'default'")
    for mode in modes:
        check_mode(mode)
    return modes


def _optional(kind: type | tuple[type, ...], *, minimum: float | None = None, strict=False):
    """A validator for an optional number (None allowed) with a lower bound."""

    def validate(name: str, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, kind):
            raise SettingsError(f"{name} must be a number, got {value!r}")
        bound = float(cast(float, value))  # kind is int or (int, float)
        if not math.isfinite(bound):
            raise SettingsError(f"{name} must be finite, got {value!r}")
        if minimum is not None and (bound <= minimum if strict else bound < minimum):
            relation = ">" if strict else ">="
            raise SettingsError(f"{name} must be {relation} {minimum}, got {value!r}")
        return value

    return validate


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{name} must be True or False, got {value!r}")
    return value


def _optional_flag(name: str, value: Any) -> bool | None:
    return None if value is None else _flag(name, value)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise SettingsError(f"{name} must be a non-empty string, got {value!r}")
    return value


DIAGNOSE_LEVELS = ("off", "auto", "deep")


def _diagnose(name: str, value: Any) -> str:
    if value not in DIAGNOSE_LEVELS:
        raise SettingsError(f"{name} must be one of {', '.join(DIAGNOSE_LEVELS)}, got {value!r}")
    return str(value)


def _options(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SettingsError(f"{name} must be a dict of torch.compile options, got {value!r}")
    return dict(value)


_NUMBER = (int, float)
_VALIDATORS = {
    "mode": _text,
    "backend": _text,
    "dynamic": _optional_flag,
    "fullgraph": _flag,
    "options": _options,
    "rtol": _optional(_NUMBER, minimum=0),
    "atol": _optional(_NUMBER, minimum=0),
    "examples": _optional(int, minimum=1),
    "grad": _flag,
    "seed": _optional(int, minimum=0),
    "device": _text,
    "fallback": _flag,
    "benchmark": _flag,
    "min_speedup": _optional(_NUMBER, minimum=0, strict=True),
    "max_time": _optional(_NUMBER, minimum=0, strict=True),
    "max_memory_ratio": _optional(_NUMBER, minimum=0, strict=True),
    "max_graph_breaks": _optional(int, minimum=0),
    "max_recompiles": _optional(int, minimum=0),
    "max_compile_time": _optional(_NUMBER, minimum=0, strict=True),
    "max_cudagraph_skips": _optional(int, minimum=0),
    "strict": _flag,
    "explore": _flag,
    "threads": _optional(int, minimum=1),
    "diagnose": _diagnose,
    "diagnose_time": _optional(_NUMBER, minimum=0, strict=True),
}


@dataclasses.dataclass(frozen=True)
class CompileSettings:
    """Everything that decides how a model is compiled, judged, timed and gated.

    Validated on construction; ``replace`` and ``from_dict`` validate too.
    """

    mode: str = DEFAULT_MODE
    backend: str = DEFAULT_BACKEND
    dynamic: bool | None = None
    fullgraph: bool = False
    options: dict[str, Any] | None = None
    rtol: float | None = None
    atol: float | None = None
    examples: int = 20
    grad: bool = False
    seed: int | None = None
    device: str = "cpu"
    fallback: bool = True
    benchmark: bool = False
    min_speedup: float | None = None
    max_time: float = 5.0
    max_memory_ratio: float | None = None
    max_graph_breaks: int | None = None
    max_recompiles: int | None = None
    max_compile_time: float | None = None
    max_cudagraph_skips: int | None = None  # CUDA graphs torch skipped (CUDA, cudagraph modes)
    strict: bool = False  # export/aoti targets: torch.export's strict (Dynamo) tracing
    explore: bool = False  # fresh Hypothesis examples each run (else derived from the test id)
    threads: int | None = None  # torch threads while timing (None: leave the user's setting)
    diagnose: str = "auto"  # on a failed check: "off", "auto" or "deep" (adds bisection)
    diagnose_time: float | None = None  # seconds one diagnosis may take (None: 120, deep 600)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = _VALIDATORS[field.name](field.name, getattr(self, field.name))
            object.__setattr__(self, field.name, value)
        if (self.rtol is None) != (self.atol is None):
            raise SettingsError(
                "rtol and atol go together: give both, or neither to use the per-dtype defaults"
            )
        if self.rtol == 0 and self.atol == 0:
            raise SettingsError(
                "rtol=0 and atol=0 demand bit-identical floats, which compiled kernels do not "
                "promise; give a positive atol or rtol"
            )
        for name in ("examples", "max_time"):
            if getattr(self, name) is None:
                raise SettingsError(f"{name} needs a value; leave it out to take the default")

    def validate_names(self) -> CompileSettings:
        """Check mode and backend against what this torch offers (imports torch)."""
        check_backend(self.backend)
        check_mode(self.mode)
        check_options(self.backend, self.options)
        if self.backend != "inductor" and self.mode != DEFAULT_MODE and not is_target(self.mode):
            raise SettingsError(
                f"mode {self.mode!r} configures inductor and cannot apply to backend "
                f"{self.backend!r}; use --compile-modes=default or backend='inductor'"
            )
        return self

    def replace(self, **changes: Any) -> CompileSettings:
        _reject_unknown(changes, "setting")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompileSettings:
        """Settings from a project's config section; missing keys take the defaults."""
        if not isinstance(data, Mapping):
            raise SettingsError(f"settings must be a mapping, got {type(data).__name__}")
        _reject_unknown(data, "settings key")
        return cls(**data).validate_names()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SETTING_NAMES = tuple(f.name for f in dataclasses.fields(CompileSettings))


def _reject_unknown(data: Mapping[str, Any], what: str, allowed: tuple[str, ...] = ()) -> None:
    allowed = allowed or SETTING_NAMES
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise SettingsError(
            f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


# -- markers ---------------------------------------------------------------------------------

_CHECK_ARGS = ("inputs", "dims", "modes")
_COMMON = (
    "backend",
    "dynamic",
    "fullgraph",
    "options",
    "device",
    "seed",
    "grad",
    "max_graph_breaks",
    "max_recompiles",
    "max_compile_time",
    "max_cudagraph_skips",
    "strict",
)
MARKER_ARGS: dict[str, tuple[str, ...]] = {
    "compile_equivalent": _CHECK_ARGS + _COMMON + ("rtol", "atol", "examples", "diagnose"),
    "compile_faster": _CHECK_ARGS
    + _COMMON
    + ("rtol", "atol", "min_speedup", "max_time", "max_memory_ratio", "threads"),
}


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
    if name == "compile_faster" and overrides.get("min_speedup") is None:
        raise SettingsError("@compile_faster needs min_speedup=, e.g. min_speedup=1.2")
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
