"""Input declarations -> Hypothesis strategies -> concrete example inputs.

Hypothesis draws only the symbolic dims and one seed; torch fills the tensors from that
seed. Shrinking therefore works on sizes (what a user wants to see in a failure), and
generating a large tensor costs one ``torch.randn`` rather than a list of floats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .errors import SettingsError
from .markers import check_dims_used

DEFAULT_DIM_RANGE = (1, 32)
_SEED_MAX = 2**32 - 1


@dataclasses.dataclass(frozen=True, init=False)
class TensorSpec:
    """A tensor input: ``TensorSpec("batch", 128, dtype=torch.long, high=100)``.

    Ints are fixed sizes; strings name symbolic dims, which take one drawn size per
    example shared by every input that names them.
    """

    shape: tuple[int | str, ...]
    dtype: torch.dtype
    low: float | None
    high: float | None
    requires_grad: bool

    def __init__(
        self,
        *shape: int | str,
        dtype: torch.dtype = torch.float32,
        low: float | None = None,
        high: float | None = None,
        requires_grad: bool = False,
    ) -> None:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        for size in shape:
            ok_int = isinstance(size, int) and not isinstance(size, bool) and size >= 0
            if not ok_int and not (isinstance(size, str) and size.isidentifier()):
                raise SettingsError(
                    f"TensorSpec sizes are ints >= 0 or dim names like 'batch', got {size!r}"
                )
        if not isinstance(dtype, torch.dtype):
            raise SettingsError(f"TensorSpec dtype must be a torch.dtype, got {dtype!r}")
        integral = not (dtype.is_floating_point or dtype.is_complex) and dtype != torch.bool
        if integral and high is None:
            raise SettingsError(
                f"TensorSpec of {dtype} needs a value range: give high= (exclusive), e.g. "
                f"TensorSpec('batch', 'seq', dtype={dtype}, high=vocab_size)"
            )
        if low is not None and high is not None and not low < high:
            raise SettingsError(f"TensorSpec needs low < high, got low={low}, high={high}")
        if requires_grad and not (dtype.is_floating_point or dtype.is_complex):
            raise SettingsError(f"requires_grad=True needs a floating dtype, not {dtype}")
        for name, value in (
            ("shape", tuple(shape)),
            ("dtype", dtype),
            ("low", low),
            ("high", high),
            ("requires_grad", requires_grad),
        ):
            object.__setattr__(self, name, value)

    @property
    def dim_names(self) -> tuple[str, ...]:
        return tuple(s for s in self.shape if isinstance(s, str))

    def concrete_shape(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(dims[s] if isinstance(s, str) else s for s in self.shape)

    def make(self, dims: Mapping[str, int], generator: torch.Generator, device: str):
        shape = self.concrete_shape(dims)
        dtype = self.dtype
        if dtype == torch.bool:
            value = torch.randint(0, 2, shape, generator=generator).bool()
        elif dtype.is_floating_point or dtype.is_complex:
            if self.low is None and self.high is None:
                value = torch.randn(shape, generator=generator, dtype=dtype)
            else:
                low = -1.0 if self.low is None else self.low
                high = low + 2.0 if self.high is None else self.high
                value = torch.rand(shape, generator=generator, dtype=dtype) * (high - low) + low
        else:
            low = 0 if self.low is None else int(self.low)
            high = int(self.high)  # type: ignore[arg-type]  # required for integers in __init__
            value = torch.randint(low, high, shape, generator=generator, dtype=dtype)
        value = value.to(device)
        return value.requires_grad_() if self.requires_grad else value

    def __repr__(self) -> str:
        dims = ", ".join(map(repr, self.shape))
        return f"TensorSpec({dims}, dtype={self.dtype})"


@dataclasses.dataclass(frozen=True)
class Example:
    """One concrete set of inputs, and how it was drawn (for failure messages)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    dims: dict[str, int]
    seed: int | None = None  # what filled the tensors: ``InputPlan.materialize(dims, seed)``

    def describe(self) -> str:
        drawn = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        named = [(f"arg{i}", v) for i, v in enumerate(self.args)] + list(self.kwargs.items())
        shapes = ", ".join(f"{name}: {describe_value(v)}" for name, v in named)
        return f"{drawn}; inputs {shapes}" if drawn else f"inputs {shapes}"

    def rebuild_hint(self) -> str | None:
        """How to make these exact inputs again without the plugin, for a failure message."""
        if self.seed is None:
            return None
        return (
            f"rebuild these inputs: InputPlan(inputs, dims).materialize({self.dims!r}, "
            f"seed={self.seed}) (pytest_torchcompile.inputs)"
        )

    def provenance(self) -> dict[str, Any]:
        """What rebuilds these inputs outside the plugin (JSON-ready)."""
        return {"dims": dict(self.dims), "seed": self.seed}


def describe_value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{dtype}[{', '.join(map(str, value.shape))}]"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(describe_value(v) for v in value) + ")"
    return repr(value) if len(repr(value)) < 40 else type(value).__name__


class InputPlan:
    """What to feed a model: specs and values positionally or by keyword, or a strategy."""

    def __init__(
        self, inputs: Any, dims: Mapping[str, tuple[int, int]] | None = None, device: str = "cpu"
    ) -> None:
        self.device = device
        self.strategy_inputs: SearchStrategy | None = None
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        if isinstance(inputs, SearchStrategy):
            self.strategy_inputs = inputs
        elif isinstance(inputs, Mapping):
            self.kwargs = dict(inputs)
        elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
            self.args = tuple(inputs)
        elif isinstance(inputs, (TensorSpec, torch.Tensor)):
            self.args = (inputs,)
        else:
            raise SettingsError(
                "inputs must be a list of positional inputs, a dict of keyword inputs "
                f"(TensorSpec or concrete values), or a Hypothesis strategy; got {inputs!r}"
            )
        specs = [v for v in (*self.args, *self.kwargs.values()) if isinstance(v, TensorSpec)]
        named = tuple(dict.fromkeys(n for spec in specs for n in spec.dim_names))
        given = dict(dims or {})
        check_dims_used(given, named)
        self.dims = {name: given.get(name, DEFAULT_DIM_RANGE) for name in named}

    def strategy(self) -> SearchStrategy[Example]:
        """Draws dims (shrinking toward the smallest sizes) and a seed for the values."""
        if self.strategy_inputs is not None:
            return self.strategy_inputs.map(self._from_drawn)
        dims = st.fixed_dictionaries({n: st.integers(lo, hi) for n, (lo, hi) in self.dims.items()})
        return st.builds(self.materialize, dims, st.integers(0, _SEED_MAX))

    def largest(self, seed: int = 0) -> Example:
        """Fixed inputs for timing: every symbolic dim at the top of its range."""
        if self.strategy_inputs is not None:
            raise SettingsError(
                "timing needs fixed inputs; a Hypothesis strategy cannot say which example "
                "to time. Give TensorSpecs with dims= instead"
            )
        return self.materialize({n: hi for n, (_, hi) in self.dims.items()}, seed)

    def ends(self) -> list[dict[str, int]]:
        """The range's ends: every dim at its min, every dim at its max."""
        if not self.dims:
            return []
        low = {n: lo for n, (lo, _) in self.dims.items()}
        high = {n: hi for n, (_, hi) in self.dims.items()}
        return [low] if low == high else [low, high]

    def static_sizes(self) -> set[int]:
        """The fixed sizes the TensorSpecs name."""
        specs = [v for v in (*self.args, *self.kwargs.values()) if isinstance(v, TensorSpec)]
        return {s for spec in specs for s in spec.shape if isinstance(s, int)}

    def materialize(self, dims: Mapping[str, int], seed: int) -> Example:
        generator = torch.Generator().manual_seed(seed)

        def make(value: Any) -> Any:
            if isinstance(value, TensorSpec):
                return value.make(dims, generator, self.device)
            if isinstance(value, torch.Tensor):
                return value.to(self.device)
            return value

        return Example(
            args=tuple(make(v) for v in self.args),
            kwargs={k: make(v) for k, v in self.kwargs.items()},
            dims=dict(dims),
            seed=seed,
        )

    def _from_drawn(self, drawn: Any) -> Example:
        if isinstance(drawn, Mapping):
            return Example((), {k: _to(v, self.device) for k, v in drawn.items()}, {})
        if not isinstance(drawn, tuple):
            drawn = (drawn,)
        return Example(tuple(_to(v, self.device) for v in drawn), {}, {})


def _to(value: Any, device: str) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value
