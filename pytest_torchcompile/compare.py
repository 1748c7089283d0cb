"""Compare compiled against eager, leaf by leaf, the way PyTorch's own harness judges.

Both outputs are walked to their leaves (``walk.flatten``: any object, with paths like
``out["cache"].layers[0].keys``) and a change of structure is reported where it happens.
A floating leaf passes if it is ``isclose`` with the given (or per-dtype default)
tolerance, its absolute part scaled to the leaf's own magnitude (``tolerances``). Where it
is not, the fp64 judgement of ``torch._dynamo.utils.same`` decides: the compiled result
passes if its RMSE against a float64 run of the model is within a small multiple of
eager's own RMSE against that run (eager is not exact either). Integer, bool and other
leaves compare exactly. A floating leaf that is all zeros, or one constant, in eager
cannot show a compiler's error: it is marked ``vacuous``, and the caller decides.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from typing import Any

import torch

from .tolerances import (
    DEFAULT_TOLERANCES,
    Fp64Judgement,
    effective_atol,
    harness_tolerance,
    judge_fp64,
    leaf_scale,
    tolerance,
)
from .walk import MAX_DEPTH, TooDeep, flatten, is_array

__all__ = [
    "DEFAULT_TOLERANCES",
    "Comparison",
    "Fp64Judgement",
    "LeafResult",
    "compare",
    "compare_leaf",
    "compare_tensor",
    "flatten",
    "harness_tolerance",
    "judge_fp64",
    "tolerance",
]

# Compared by identity: two equal values are the same object.
_SINGLETONS = (enum.Enum, type, torch.dtype, torch.layout, torch.memory_format)


@dataclasses.dataclass(frozen=True)
class LeafResult:
    """The verdict on one leaf; ``problem`` is set for structural mismatches.

    For floating leaves ``atol`` is the tolerance asked for (the user's or the dtype's
    default), ``effective_atol`` the one applied after scaling to the leaf's RMS
    ``scale``. ``vacuous`` says why the leaf cannot show a compiler's error (all zeros or
    constant in eager), whether it passed or not.
    """

    path: str
    passed: bool
    problem: str | None = None
    numel: int = 0
    mismatched: int = 0
    max_abs: float = 0.0
    max_abs_at: tuple[int, ...] = ()
    max_rel: float = 0.0
    max_rel_at: tuple[int, ...] = ()
    rtol: float | None = None
    atol: float | None = None
    fp64: Fp64Judgement | None = None
    effective_atol: float | None = None
    scale: float | None = None
    vacuous: str | None = None
    tensor: bool = False  # a tensor leaf (not a Python value): what a compiler computes

    @property
    def informative(self) -> bool:
        """Could this leaf have shown a compiler's error? A non-empty tensor that is not
        constant in eager; Python values (None, ints, flags) cannot."""
        return self.tensor and self.numel > 0 and self.problem is None and not self.vacuous

    def describe(self) -> str:
        if self.problem:
            return f"{self.path}: {self.problem}"
        share = 100.0 * self.mismatched / max(self.numel, 1)
        lines = [
            f"{self.path}: {self.mismatched} of {self.numel} elements differ ({share:.3g}%)",
            f"  greatest absolute difference {self.max_abs:.4g} at index {self.max_abs_at}"
            + f" ({self._atol_text()})",
        ]
        if self.rtol is not None:
            lines.append(
                f"  greatest relative difference {self.max_rel:.4g} at index {self.max_rel_at}"
                f" (rtol {self.rtol:g})"
            )
        if self.fp64 is not None:
            lines.append("  " + self.fp64.describe())
        if self.vacuous:
            lines.append(f"  note: this leaf is {self.vacuous}")
        return "\n".join(lines)

    def _atol_text(self) -> str:
        if self.atol is None:
            return "exact compare"
        if self.effective_atol is None or self.effective_atol == self.atol:
            return f"atol {self.atol:g}"
        return (
            f"atol {self.atol:g}, scaled to {self.effective_atol:.2g} "
            f"by the leaf's RMS {self.scale:.2g}"
        )


@dataclasses.dataclass(frozen=True)
class Comparison:
    leaves: tuple[LeafResult, ...]

    @property
    def passed(self) -> bool:
        return all(leaf.passed for leaf in self.leaves)

    @property
    def failures(self) -> tuple[LeafResult, ...]:
        return tuple(leaf for leaf in self.leaves if not leaf.passed)

    @property
    def vacuous(self) -> tuple[LeafResult, ...]:
        """Leaves that cannot show a compiler's error (see ``LeafResult.vacuous``)."""
        return tuple(leaf for leaf in self.leaves if leaf.vacuous)

    @property
    def worst(self) -> LeafResult | None:
        """The floating leaf with the greatest absolute error (for reports)."""
        floating = [leaf for leaf in self.leaves if leaf.atol is not None]
        return max(floating, key=lambda leaf: leaf.max_abs, default=None)

    def describe(self) -> str:
        return "\n".join(leaf.describe() for leaf in self.failures)


def compare(
    eager: Any,
    compiled: Any,
    *,
    path: str = "out",
    rtol: float | None = None,
    atol: float | None = None,
    reference: Callable[[], Any] | None = None,
) -> Comparison:
    """Compare two output trees; ``reference`` lazily gives the fp64 tree when needed."""
    eager_leaves, eager_kinds = flatten(eager, path)
    compiled_leaves, compiled_kinds = flatten(compiled, path)
    results = _structure(eager_leaves, eager_kinds, compiled_leaves, compiled_kinds)
    broken = [result.path for result in results]
    reference_leaves: dict[str, Any] | None = None
    for at, want in eager_leaves.items():
        if at not in compiled_leaves or (broken and _beneath(at, broken)):
            continue
        got = compiled_leaves[at]
        result = compare_leaf(at, want, got, rtol, atol)
        if not result.passed and result.problem is None and result.atol is not None:
            if reference is not None and reference_leaves is None:
                reference_leaves = flatten(reference(), path)[0]
            ref = (reference_leaves or {}).get(at)
            result = _judge(result, want, got, ref, atol)
        results.append(result)
    return Comparison(tuple(sorted(results, key=lambda r: r.path)))


def _structure(
    eager_leaves: dict[str, Any],
    eager_kinds: dict[str, str],
    compiled_leaves: dict[str, Any],
    compiled_kinds: dict[str, str],
) -> list[LeafResult]:
    """Containers that differ (type, length, container against leaf), then leaves on one
    side only, except beneath a differing container, whose contents cannot line up."""
    problems: list[LeafResult] = []
    for at in sorted(eager_kinds.keys() | compiled_kinds.keys()):  # parents sort first
        want = eager_kinds.get(at) or _leaf_kind(eager_leaves, at)
        got = compiled_kinds.get(at) or _leaf_kind(compiled_leaves, at)
        broken = [problem.path for problem in problems]
        if want != got and want and got and not _beneath(at, broken):
            problems.append(LeafResult(at, False, f"eager gives {want}, compiled gives {got}"))
    broken = [problem.path for problem in problems]
    for at in sorted(eager_leaves.keys() ^ compiled_leaves.keys()):
        if not _beneath(at, broken):
            side = "compiled" if at in eager_leaves else "eager"
            problems.append(LeafResult(at, False, f"missing from the {side} output"))
    return problems


def _leaf_kind(leaves: dict[str, Any], at: str) -> str | None:
    if at not in leaves:
        return None
    return "None" if leaves[at] is None else type(leaves[at]).__name__


def _beneath(at: str, paths: list[str]) -> bool:
    """Whether ``at`` is one of ``paths`` or lies inside one."""
    return any(at.startswith(p) and (len(at) == len(p) or at[len(p)] in ".[") for p in paths)


def compare_leaf(
    path: str, eager: Any, compiled: Any, rtol: float | None, atol: float | None
) -> LeafResult:
    """Tensors (and numpy arrays) by ``compare_tensor``, Python floats by a scaled
    ``isclose``, anything else exactly (``_equal``)."""
    if isinstance(eager, TooDeep) or isinstance(compiled, TooDeep):
        return LeafResult(
            path,
            False,
            f"holds tensors nested deeper than {MAX_DEPTH} objects, which were not compared: "
            "return them nearer the top, or register the type with torch.utils._pytree",
        )
    eager, compiled = _tensor_if_array(eager), _tensor_if_array(compiled)
    if isinstance(eager, torch.Tensor) and isinstance(compiled, torch.Tensor):
        return dataclasses.replace(compare_tensor(path, eager, compiled, rtol, atol), tensor=True)
    if type(eager) is not type(compiled) and not _both_numbers(eager, compiled):
        return LeafResult(
            path,
            False,
            f"eager gives {type(eager).__name__}, compiled gives {type(compiled).__name__}",
        )
    if isinstance(eager, float) or isinstance(compiled, float):  # judged as float32 tensors
        r, a = tolerance(torch.float32, rtol, atol)
        e, c = (torch.tensor(float(v), dtype=torch.float64) for v in (eager, compiled))
        result = compare_tensor(path, e, c, r, a)
        return result if isinstance(eager, float) else dataclasses.replace(result, vacuous=None)
    if _equal(eager, compiled):
        return LeafResult(path, True, numel=1)
    return LeafResult(
        path, False, f"eager gives {_short(eager)}, compiled gives {_short(compiled)}"
    )


def _equal(eager: Any, compiled: Any) -> bool:
    """Value equality where the class defines ``==``; identity for singletons (enums,
    classes, dtypes); else the same type is all two objects built apart can share."""
    if eager is compiled:
        return True
    if isinstance(eager, _SINGLETONS):
        return False
    if type(eager).__eq__ is object.__eq__:
        return True
    try:
        return bool(eager == compiled)
    except Exception:  # an ``==`` without a truth value: the type already matched
        return True


def _both_numbers(a: Any, b: Any) -> bool:
    number = (int, float)
    return isinstance(a, number) and isinstance(b, number) and not isinstance(a, bool)


def _tensor_if_array(value: Any) -> Any:
    if is_array(value):
        try:
            return torch.as_tensor(value)
        except (TypeError, RuntimeError):  # object arrays: compared with ``==``
            return value
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def compare_tensor(
    path: str, eager: torch.Tensor, compiled: torch.Tensor, rtol: float | None, atol: float | None
) -> LeafResult:
    if eager.shape != compiled.shape:
        return LeafResult(
            path, False, f"shape {list(compiled.shape)} != eager's {list(eager.shape)}"
        )
    if eager.dtype != compiled.dtype:
        return LeafResult(path, False, f"dtype {compiled.dtype} != eager's {eager.dtype}")
    eager = eager.detach()
    compiled = compiled.detach().to(eager.device)
    numel = eager.numel()
    if not (eager.is_floating_point() or eager.is_complex()):
        differs = eager != compiled
        mismatched = int(differs.sum())
        if not mismatched:
            return LeafResult(path, True, numel=numel)
        diff = (compiled.double() - eager.double()).abs()
        where = _index(diff.argmax(), eager.shape)
        return LeafResult(path, False, None, numel, mismatched, float(diff.max()), where)
    r, a = tolerance(eager.dtype, rtol, atol)
    scale = leaf_scale(eager)
    used = effective_atol(a, r, scale, eager.dtype)
    vacuous = _vacuous(eager)
    close = torch.isclose(compiled, eager, rtol=r, atol=used, equal_nan=True)
    if bool(close.all()):  # the common case: only the greatest difference, for the report
        diff = (compiled - eager).abs().nan_to_num(nan=0.0)  # NaN only where both are NaN
        max_abs = float(diff.max()) if numel else 0.0
        return LeafResult(
            path, True, numel=numel, max_abs=max_abs, rtol=r, atol=a,
            effective_atol=used, scale=scale, vacuous=vacuous,
        )  # fmt: skip
    wide = torch.complex128 if eager.is_complex() else torch.float64
    same = (compiled == eager) | (torch.isnan(compiled) & torch.isnan(eager))
    diff = (compiled.to(wide) - eager.to(wide)).abs().nan_to_num(nan=math.inf)
    diff = torch.where(same, torch.zeros_like(diff), diff)  # also equal infinities
    rel = diff / eager.abs().double()
    rel = torch.where(diff == 0, torch.zeros_like(rel), rel)
    return LeafResult(
        path,
        False,
        numel=numel,
        mismatched=numel - int(close.sum()),
        max_abs=float(diff.max()),
        max_abs_at=_index(diff.argmax(), eager.shape),
        max_rel=float(rel.max()),
        max_rel_at=_index(rel.argmax(), eager.shape),
        rtol=r, atol=a, effective_atol=used, scale=scale, vacuous=vacuous,
    )  # fmt: skip


def _vacuous(eager: torch.Tensor) -> str | None:
    """Why eager's floating leaf cannot show a compiler's error, if it cannot: all zeros
    (any wrong scaling of zero is zero) or every element equal (a degenerate model)."""
    flat = eager.reshape(-1)
    if flat.numel() == 0:
        return None
    if not bool(torch.isfinite(flat).any()):  # NaN == NaN passes: nothing was compared
        return "without a finite value in eager"
    if eager.is_complex():
        if not bool((flat == flat[0]).all()):
            return None
    elif bool(torch.ne(*torch.aminmax(flat))):  # NaN is never constant
        return None
    value = flat[0].item()
    if value == 0:
        return "all zeros in eager" if flat.numel() > 1 else "zero in eager"
    return f"constant (every element {value:g}) in eager" if flat.numel() > 1 else None


def _judge(
    result: LeafResult, eager: Any, compiled: Any, ref: Any, atol: float | None
) -> LeafResult:
    """Let the fp64 judgement overrule a failed ``isclose`` where the reference has the leaf."""
    eager, compiled, ref = (_tensor_if_array(v) for v in (eager, compiled, ref))
    if not isinstance(eager, torch.Tensor):  # a Python number: judged as a 0-d tensor
        eager, compiled = (torch.tensor(float(v), dtype=torch.float64) for v in (eager, compiled))
        if isinstance(ref, (int, float)):
            ref = torch.tensor(float(ref), dtype=torch.float64)
    if not isinstance(ref, torch.Tensor) or ref.shape != eager.shape:
        return result
    tol = atol if atol is not None else harness_tolerance(eager.dtype)
    judgement = judge_fp64(eager, compiled, ref, tol)
    return dataclasses.replace(result, fp64=judgement, passed=judgement.passed)


def _index(flat: torch.Tensor, shape: torch.Size) -> tuple[int, ...]:
    index = int(flat)
    out = []
    for size in reversed(shape):
        out.append(index % size)
        index //= size
    return tuple(reversed(out))
