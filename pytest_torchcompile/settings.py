"""Validated settings shared by the CLI, ini, markers, the fixture and ``safe_compile``.

Torch is imported only to check mode and backend names, so building settings from the
command line stays cheap until a compile check actually runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Callable, Mapping
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
MARKERS = ("compile_equivalent", "compile_faster")
_BOTH = MARKERS


@dataclasses.dataclass(frozen=True)
class Declared:
    """What a setting declares beside its name, type and default: every face (validation,
    markers, ``safe_compile``, help for options and marker docs) is derived from these."""

    validate: Callable[[str, Any], Any]
    help: str
    markers: tuple[str, ...]  # the markers that accept it as an argument
    safe_compile: bool  # whether ``safe_compile`` takes it as a keyword


_DECLARED = "pytest_torchcompile"


def _setting(
    default: Any,
    validate: Callable[[str, Any], Any],
    help: str,
    *,
    markers: tuple[str, ...] = _BOTH,
    safe_compile: bool = False,
) -> Any:
    """A ``CompileSettings`` field, declared once with everything its faces need."""
    declared = Declared(validate, help, markers, safe_compile)
    return dataclasses.field(default=default, metadata={_DECLARED: declared})


@dataclasses.dataclass(frozen=True)
class CompileSettings:
    """Everything that decides how a model is compiled, judged, timed and gated.

    Validated on construction; ``replace`` and ``from_dict`` validate too. Each field is
    declared once here: ``MARKER_ARGS``, ``marker_doc``, ``safe_compile``'s setting
    keywords and the options' help are derived from the declarations.
    """

    mode: str = _setting(
        DEFAULT_MODE,
        _text,
        "torch.compile mode, or a deployment target: 'export' (torch.export's module) or "
        "'aoti' (the AOTInductor package compiled from it)",
        markers=(),
        safe_compile=True,
    )
    backend: str = _setting(DEFAULT_BACKEND, _text, "torch.compile backend", safe_compile=True)
    dynamic: bool | None = _setting(
        None,
        _optional_flag,
        "torch.compile's dynamic= (None: Dynamo decides when shapes change)",
        safe_compile=True,
    )
    fullgraph: bool = _setting(
        False, _flag, "torch.compile's fullgraph=: a graph break is an error", safe_compile=True
    )
    options: dict[str, Any] | None = _setting(
        None,
        _options,
        "torch.compile options (a mode's options merge with them; inductor's names are checked)",
        safe_compile=True,
    )
    rtol: float | None = _setting(
        None,
        _optional(_NUMBER, minimum=0),
        "relative tolerance, given with atol (neither: the per-dtype defaults)",
        safe_compile=True,
    )
    atol: float | None = _setting(
        None,
        _optional(_NUMBER, minimum=0),
        "absolute tolerance, given with rtol (neither: the per-dtype defaults)",
        safe_compile=True,
    )
    examples: int = _setting(
        20,
        _optional(int, minimum=1),
        "Hypothesis examples per equivalence check",
        markers=("compile_equivalent",),
    )
    grad: bool = _setting(
        False,
        _flag,
        "also compare gradients (equivalence) / time forward+backward (speed)",
    )
    seed: int | None = _setting(
        None,
        _optional(int, minimum=0),
        "the Hypothesis seed (None: derived from the test id and mode)",
    )
    device: str = _setting(
        "cpu", _text, "device the check runs on, 'cpu' or 'cuda'...; skipped if absent"
    )
    fallback: bool = _setting(
        True,
        _flag,
        "on a failed check, hand back the eager model with the reason instead of raising",
        markers=(),
        safe_compile=True,
    )
    benchmark: bool = _setting(
        False,
        _flag,
        "time compiled against eager and report the speedup, even without min_speedup",
        markers=(),
        safe_compile=True,
    )
    min_speedup: float | None = _setting(
        None,
        _optional(_NUMBER, minimum=0, strict=True),
        "compiled must be at least this many times faster than eager",
        markers=("compile_faster",),
        safe_compile=True,
    )
    max_time: float = _setting(
        5.0,
        _optional(_NUMBER, minimum=0, strict=True),
        "measuring budget of a speed check, seconds",
        markers=("compile_faster",),
    )
    max_memory_ratio: float | None = _setting(
        None,
        _optional(_NUMBER, minimum=0, strict=True),
        "most compiled peak memory over eager's (CUDA; on the CPU a warning says so)",
        markers=("compile_faster",),
    )
    max_graph_breaks: int | None = _setting(
        None, _optional(int, minimum=0), "most graph breaks allowed (None: no gate)"
    )
    max_recompiles: int | None = _setting(
        None, _optional(int, minimum=0), "most recompiles allowed (None: no gate)"
    )
    max_compile_time: float | None = _setting(
        None,
        _optional(_NUMBER, minimum=0, strict=True),
        "most seconds the first compile may take (None: no gate)",
    )
    max_cudagraph_skips: int | None = _setting(
        None,
        _optional(int, minimum=0),
        "most CUDA graphs torch may skip (CUDA, cudagraph modes; None: no gate)",
    )
    strict: bool = _setting(
        False, _flag, "export and aoti targets: torch.export's strict (Dynamo) tracing"
    )
    explore: bool = _setting(
        False,
        _flag,
        "draw fresh Hypothesis examples every run and replay saved failures",
        markers=(),
    )
    threads: int | None = _setting(
        None,
        _optional(int, minimum=1),
        "torch threads for both sides while speed checks time them (the user's setting is "
        "restored after)",
        markers=("compile_faster",),
    )
    diagnose: str = _setting(
        "auto",
        _diagnose,
        "on a failed equivalence check, find where it goes wrong: 'auto' (default), 'deep' "
        "(adds inductor's compiler bisector) or 'off'",
        markers=("compile_equivalent",),
    )
    diagnose_time: float | None = _setting(
        None,
        _optional(_NUMBER, minimum=0, strict=True),
        "time one failed check's diagnosis may take (default 120 seconds, 600 when "
        "diagnose is 'deep'); what does not finish is reported as not reached",
        markers=(),
    )

    def __post_init__(self) -> None:
        for name, validate in _VALIDATORS.items():
            object.__setattr__(self, name, validate(name, getattr(self, name)))
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


def declarations(cls: type = CompileSettings) -> dict[str, Declared]:
    """Each setting's declaration by name, in field order (``cls`` for tests that plant one)."""
    return {f.name: f.metadata[_DECLARED] for f in dataclasses.fields(cls)}


def setting_help(name: str) -> str:
    """A setting's one-line help, for options and ini keys that set it run-wide."""
    return declarations()[name].help


SETTING_NAMES = tuple(declarations())
_VALIDATORS = {name: d.validate for name, d in declarations().items()}
SAFE_COMPILE_ARGS = tuple(name for name, d in declarations().items() if d.safe_compile)


def _reject_unknown(data: Mapping[str, Any], what: str, allowed: tuple[str, ...] = ()) -> None:
    allowed = allowed or SETTING_NAMES
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise SettingsError(
            f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
