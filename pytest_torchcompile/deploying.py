"""Deployment targets: check what ships, not only what ``torch.compile`` runs.

``export`` checks the module ``torch.export.export`` makes; ``aoti`` the AOTInductor
package compiled from that program and loaded back, as a server would load it. A
``DeploymentSession`` has ``CompileSession``'s face (``compile``, ``call``, ``stats``), so the
equivalence search, the comparison and the speed check do not know which one they hold.

What only a deployment target needs lives here: the declared dims become export ``Dim``s
(one export per check, from an example of at least 2 in every dynamic dim: export
specialises sizes 0 and 1); a dim export specialises or narrows fails the check before
anything runs; after the in-range examples, every dim one past its range must be refused;
packages are cached, keyed on everything that decides their code.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from . import torch_compat as compat
from .compiling import CompileStats, environ
from .errors import CompileFailedError, ModelError, SettingsError
from .inputs import InputPlan, TensorSpec
from .packages import PackageCache, PackageInfo, package_key
from .running import describe_model_error, restore, snapshot
from .settings import CompileSettings
from .tracebacks import export_error_message, first_lines, specialisation_message

BACKENDS = {"export": "torch.export", "aoti": "aotinductor"}


class DeploymentSession:
    """The ``export`` target: export once, then run the exported program's module.
    ``AotiSession`` builds on it. ``open_deployment`` picks the class for a target."""

    cudagraphs = False
    ends = True  # a deployed program serves its whole range: both ends are examples
    diagnosable = False  # the diagnosis climbs torch.compile's stages, not export's
    noun = "exported program"

    def __init__(
        self,
        settings: CompileSettings,
        plan: InputPlan,
        *,
        fallback_random: bool = True,
        cache_dir: str | None = None,
        package_dir: str | None = None,
        test_id: str = "",
    ) -> None:
        """``cache_dir``: a fresh inductor cache (``--compile-cold``), which also bypasses
        the package cache; ``package_dir``: where packages are cached (default: beside
        inductor's cache)."""
        self.settings = settings
        self.plan = plan
        self.target = settings.mode
        self.fallback_random = fallback_random
        self.cache_dir = cache_dir
        self.package_dir = package_dir
        self.test_id = test_id
        self.ranges = dict(plan.dims)
        self.seconds = 0.0
        self.package: PackageInfo | None = None
        self.notes: list[str] = []
        self.compiled = False
        self.unobserved: tuple[str, ...] = ()  # parts of a run the target cannot show
        self._sizes: dict[str, int] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> DeploymentSession:
        compat.reset()
        self._stack.enter_context(compat.quiet_structured_trace())
        if self.cache_dir is not None:
            self._stack.enter_context(environ("TORCHINDUCTOR_CACHE_DIR", self.cache_dir))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    # -- CompileSession's face -----------------------------------------------------------

    def compile(self, model: Callable[..., Any]) -> Callable[..., Any]:
        """Export ``model`` with the declared dims (and build and load its package)."""
        module = model if isinstance(model, torch.nn.Module) else as_module(model)
        start = time.perf_counter()
        self._sizes = export_sizes(self.ranges, self.plan.static_sizes())
        example = self.plan.materialize(self._sizes, seed=0)
        self._register_outputs(module, example)
        self._note_ignored()
        deployed = self._deploy(self._export(module, example))
        self.seconds = time.perf_counter() - start
        self.compiled = True
        return deployed

    def call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (CompileFailedError, ModelError):
            raise
        except Exception as error:
            raise CompileFailedError(
                f"the {self.noun} raised on an input inside the declared dims:\n  "
                + first_lines(error)
            ) from error

    def stats(self) -> CompileStats:
        return CompileStats(
            graphs=1 if self.compiled else 0,
            compile_seconds=self.seconds,
            compile_seconds_total=self.seconds,
            frames=1 if self.compiled else 0,
            target=self.target,
            package_bytes=self.package.bytes if self.package else None,
            package_cached=self.package.cached if self.package else None,
            notes=tuple(self.notes),
        )

    def expect_replay(self, state: str | None, calls: int) -> None:
        """CUDA graphs are torch.compile's: nothing to expect of a deployed program."""

    def before_example(self) -> None:
        """The exported module shares the checked module's parameters and buffers, which
        the check restores in place."""

    def after_search(self, compiled: Callable[..., Any]) -> list[str]:
        return self.out_of_range(compiled)

    # -- what only a deployment target checks ----------------------------------------------

    def out_of_range(self, deployed: Callable[..., Any]) -> list[str]:
        """Each dim one past its range must be refused with an error; the failures where
        the target accepted it (what a server would then run on unchecked)."""
        failures = []
        for name, (low, high) in self.ranges.items():
            sizes = [high + 1]
            if low > 0:
                why_not = self._lower_unchecked(low, high)
                if why_not:
                    self.notes.append(f"{name}={low - 1} (below dims {name}) not probed: {why_not}")
                else:
                    sizes.append(low - 1)
            for size in sizes:
                example = self.plan.materialize({**self._sizes, name: size}, seed=0)
                try:
                    with torch.no_grad():
                        deployed(*example.args, **example.kwargs)
                except Exception:
                    continue  # refused, as it must be
                failures.append(
                    f"the {self.noun} accepts {name}={size}, outside dims {name}=({low}, {high}): "
                    f"it would run on inputs it was never checked on{self._accepts_hint}"
                )
        return failures

    _accepts_hint = ""

    def _lower_unchecked(self, low: int, high: int) -> str | None:
        """Why a size below ``low`` cannot be refused by this target, if it cannot."""
        if low < high and low <= 2:
            return "the exported module checks lower bounds above 2 only (torch's guards)"
        return None

    def _note_ignored(self) -> None:
        """Settings that configure torch.compile, said to have no effect here."""
        defaults = CompileSettings()
        ignored = [
            f"{name}={getattr(self.settings, name)!r}"
            for name in ("backend", "dynamic", "fullgraph")
            if getattr(self.settings, name) != getattr(defaults, name)
        ]
        if ignored:
            self.notes.append(
                f"{', '.join(ignored)} configure torch.compile: not used by the {self.target} "
                "target (export's dims come from dims=)"
            )

    def _deploy(self, program: Any) -> Callable[..., Any]:
        if self.settings.options:
            self.notes.append("options= configure inductor: not used by the export target")
        return program.module()

    # -- export and package ----------------------------------------------------------------

    def _register_outputs(self, module: torch.nn.Module, example: Any) -> None:
        """Dataclass outputs must be pytree nodes for export: register the ones found."""
        state = snapshot(module)
        try:
            with torch.no_grad():
                out = module(*example.args, **example.kwargs)
        except Exception as error:
            raise ModelError(describe_model_error(error, example)) from error
        finally:
            restore(module, state)  # the eager call may have stepped BatchNorm's statistics
        for name in compat.register_output_dataclasses(out):
            self.notes.append(f"registered output dataclass {name} as a pytree node for export")

    def _export(self, module: torch.nn.Module, example: Any) -> Any:
        dims = {
            name: compat.make_dim(name, low, high)
            for name, (low, high) in self.ranges.items()
            if low < high
        }
        shapes = dynamic_shapes(module, self.plan, dims)
        try:
            return compat.export(module, example.args, example.kwargs, shapes, self.settings.strict)
        except Exception as error:
            if compat.is_constraint_violation(error):
                message = specialisation_message(error, self.ranges)
            else:
                message = export_error_message(error, self.settings.strict)
            raise CompileFailedError(message) from error


class AotiSession(DeploymentSession):
    """The ``aoti`` target: the exported program compiled by AOTInductor into a package,
    cached, and loaded back as a server loads it, with its runtime input checks on."""

    noun = "AOTInductor package"
    input_checks = True  # AOTInductor's runtime input checks (a test turns them off)
    _accepts_hint = (
        f" (it ran with {compat.RUNTIME_CHECKS_ENV}=1, under which recent torch's packages "
        "refuse sizes outside the exported range; unset, a package checks nothing)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A package's buffers live inside it, out of reach of the module a check observes;
        # it does not keep their in-place updates from one call to the next (measured on
        # torch 2.13: a counter buffer reads 1 on every call), so examples stay independent.
        self.unobserved = ("buffers",)

    def __enter__(self) -> AotiSession:
        super().__enter__()
        if self.input_checks:  # read once per loaded package: set before loading
            self._stack.enter_context(environ(compat.RUNTIME_CHECKS_ENV, "1"))
        return self

    def _lower_unchecked(self, low: int, high: int) -> str | None:
        if low < high and self._lowerbound_off():
            return (
                "the package's lower-bound checks are off, since a dim starts below 2 "
                "(AOTInductor would refuse sizes below 2)"
            )
        return None

    def _lowerbound_off(self) -> bool:
        return any(low < 2 for low, high in self.ranges.values() if low < high)

    def _deploy(self, program: Any) -> Callable[..., Any]:
        configs = dict(self.settings.options or {})
        if self.fallback_random:  # random ops draw as eager's do, as under torch.compile
            configs.setdefault("fallback_random", True)
        switch = compat.lowerbound_switch()
        if self._lowerbound_off() and switch is not None:
            configs[switch] = False
        cache = PackageCache(self.cache_dir, self.package_dir)
        key = package_key(program, configs, self.test_id, self.settings.strict, self.ranges)
        deployed, self.package = cache.load_or_build(program, key, configs)
        if self.package.cached and self.settings.max_compile_time is not None:
            self.notes.append(
                f"max_compile_time={self.settings.max_compile_time:g} s was checked against "
                "export and loading the cached package; --compile-cold gates the build itself"
            )
        if any(True for _ in program.buffers()):
            self.notes.append(
                "buffers live inside the AOTInductor package: outputs and inputs were "
                "compared, buffers were not"
            )
        return deployed


def open_deployment(settings: CompileSettings, plan: InputPlan, **kwargs: Any) -> DeploymentSession:
    """The session for ``settings.mode``'s deployment target."""
    cls = AotiSession if settings.mode == "aoti" else DeploymentSession
    return cls(settings, plan, **kwargs)


def as_module(fn: Callable[..., Any]) -> torch.nn.Module:
    """A plain function as a module (export takes modules only), whose ``forward`` has the
    function's own signature: export maps ``dynamic_shapes`` by parameter name."""

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin: positional inputs only
        signature = None
    if signature is not None:
        own = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        forward.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[own, *signature.parameters.values()]
        )
    name = getattr(fn, "__name__", "function")
    return type(f"Function_{name}", (torch.nn.Module,), {"forward": forward})()


# -- dims ------------------------------------------------------------------------------------


def export_sizes(ranges: Mapping[str, tuple[int, int]], avoid: set[int]) -> dict[str, int]:
    """The export example's size of each dim: at least 2 (export specialises 0 and 1),
    near the middle of its range, and distinct from the other dims and the fixed sizes
    where the range allows (equal sizes invite export to assume the dims equal)."""
    chosen: dict[str, int] = {}
    used = set(avoid)
    for name, (low, high) in ranges.items():
        if low == high:
            chosen[name] = low
            continue
        if high < 2:
            raise SettingsError(
                f"dims {name}=({low}, {high}) cannot be exported as a dynamic dim: export "
                f"needs an example of at least 2 in it; widen the range to reach 2, or fix "
                f'the size, e.g. dims={{"{name}": {high}}}'
            )
        start = max(low, 2)
        middle = (start + high) // 2
        pick = next((s for s in _outward(middle, start, high) if s not in used), middle)
        chosen[name] = pick
        used.add(pick)
    return chosen


def _outward(middle: int, low: int, high: int, limit: int = 256) -> Iterator[int]:
    for step in range(limit):
        for size in (middle + step, middle - step) if step else (middle,):
            if low <= size <= high:
                yield size


def dynamic_shapes(module: torch.nn.Module, plan: InputPlan, dims: Mapping[str, Any]) -> Any:
    """export's ``dynamic_shapes``: each forward parameter's input, with its named axes
    mapped to the ``Dim`` of that name (shared across inputs, as the search shares it)."""

    def shape_of(value: Any) -> Any:
        if isinstance(value, TensorSpec):
            axes = {
                i: dims[s] for i, s in enumerate(value.shape) if isinstance(s, str) and s in dims
            }
            return axes or None
        if isinstance(value, (list, tuple)):
            return tuple(shape_of(v) for v in value)
        if isinstance(value, Mapping):
            return {k: shape_of(v) for k, v in value.items()}
        return None

    try:
        bound = inspect.signature(module.forward).bind(*plan.args, **plan.kwargs)
    except TypeError as error:
        raise SettingsError(f"the inputs do not fit the model's forward: {error}") from None
    return {name: shape_of(value) for name, value in bound.arguments.items()}
