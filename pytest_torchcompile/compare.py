"""Compare compiled against eager, leaf by leaf, the way PyTorch's own harness judges.

A floating leaf passes if it is ``allclose`` with the given (or per-dtype default)
tolerance. Where it is not, the fp64 judgement of ``torch._dynamo.utils.same`` decides:
the compiled result passes if its RMSE against a float64 run of the model is within a
small multiple of eager's own RMSE against that run (eager is not exact either). Integer,
bool and non-tensor leaves compare exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

# torch.testing.assert_close's documented per-dtype defaults: dtype -> (rtol, atol).
DEFAULT_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
    torch.complex32: (1e-3, 1e-5),
    torch.complex64: (1.3e-6, 1e-5),
    torch.complex128: (1e-7, 1e-7),
}
_LOW_PRECISION = (torch.float16, torch.bfloat16, torch.complex32)


def harness_tolerance(dtype: torch.dtype) -> float:
    """The ``tol`` PyTorch's benchmark harness hands ``same()``: 1e-4, 1e-3 in half precision.

    The fp64 judgement allows ``tol / 10`` on top of the RMSE multiple, unless the user
    gave ``atol``, which then stands for ``tol``.
    """
    return 1e-3 if dtype in _LOW_PRECISION else 1e-4


def fp64_multiplier(dtype: torch.dtype) -> float:
    """How much worse than eager the compiled RMSE may be (as in ``same()``)."""
    return 3.0 if dtype in _LOW_PRECISION else 2.0


@dataclasses.dataclass(frozen=True)
class Fp64Judgement:
    compiled_rmse: float
    eager_rmse: float
    multiplier: float
    slack: float

    @property
    def allowed(self) -> float:
        return self.multiplier * self.eager_rmse + self.slack

    @property
    def passed(self) -> bool:
        return self.compiled_rmse <= self.allowed

    def describe(self) -> str:
        verdict = "within" if self.passed else "exceeds"
        return (
            f"fp64 judgement: RMSE(compiled, fp64)={self.compiled_rmse:.3g} {verdict} "
            f"{self.multiplier:g} x RMSE(eager, fp64)={self.eager_rmse:.3g} + tol/10 "
            f"= {self.allowed:.3g}"
        )


@dataclasses.dataclass(frozen=True)
class LeafResult:
    """The verdict on one leaf; ``problem`` is set for structural mismatches."""

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

    def describe(self) -> str:
        if self.problem:
            return f"{self.path}: {self.problem}"
        share = 100.0 * self.mismatched / max(self.numel, 1)
        lines = [
            f"{self.path}: {self.mismatched} of {self.numel} elements differ ({share:.3g}%)",
            f"  greatest absolute difference {self.max_abs:.4g} at index {self.max_abs_at}"
            + (f" (atol {self.atol:g})" if self.atol is not None else " (exact compare)"),
        ]
        if self.rtol is not None:
            lines.append(
                f"  greatest relative difference {self.max_rel:.4g} at index {self.max_rel_at}"
                f" (rtol {self.rtol:g})"
            )
        if self.fp64 is not None:
            lines.append("  " + self.fp64.describe())
        return "\n".join(lines)


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
    def worst(self) -> LeafResult | None:
        """The floating leaf with the greatest absolute error (for reports)."""
        floating = [leaf for leaf in self.leaves if leaf.atol is not None]
        return max(floating, key=lambda leaf: leaf.max_abs, default=None)

    def describe(self) -> str:
        return "\n".join(leaf.describe() for leaf in self.failures)


# -- walking nested outputs ------------------------------------------------------------------


def flatten(tree: Any, path: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Leaves by path, and the container type at each inner path."""
    leaves: dict[str, Any] = {}
    containers: dict[str, str] = {}

    def walk(node: Any, at: str) -> None:
        if isinstance(node, torch.Tensor) or node is None or isinstance(node, (str, bytes)):
            leaves[at] = node
        elif isinstance(node, Mapping):
            containers[at] = type(node).__name__
            for key, value in node.items():
                walk(value, f"{at}[{key!r}]".replace("'", '"'))
        elif isinstance(node, tuple) and hasattr(node, "_fields"):
            containers[at] = type(node).__name__
            for name in node._fields:
                walk(getattr(node, name), f"{at}.{name}")
        elif isinstance(node, (list, tuple)):
            containers[at] = f"{type(node).__name__} of {len(node)}"
            for i, value in enumerate(node):
                walk(value, f"{at}[{i}]")
        elif dataclasses.is_dataclass(node) and not isinstance(node, type):
            containers[at] = type(node).__name__
            for field in dataclasses.fields(node):
                walk(getattr(node, field.name), f"{at}.{field.name}")
        else:
            leaves[at] = node

    walk(tree, path)
    return leaves, containers


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
    results: list[LeafResult] = []
    for at in sorted(set(eager_kinds) | set(compiled_kinds)):
        want, got = eager_kinds.get(at), compiled_kinds.get(at)
        if want != got and want is not None and got is not None:
            results.append(LeafResult(at, False, f"eager gives {want}, compiled gives {got}"))
    for at in eager_leaves.keys() | compiled_leaves.keys():
        if at not in compiled_leaves or at not in eager_leaves:
            side = "compiled" if at not in compiled_leaves else "eager"
            results.append(LeafResult(at, False, f"missing from the {side} output"))
    reference_leaves: dict[str, Any] | None = None
    for at, want in eager_leaves.items():
        if at not in compiled_leaves:
            continue
        result = compare_leaf(at, want, compiled_leaves[at], rtol, atol)
        if not result.passed and result.problem is None and result.atol is not None:
            if reference is not None and reference_leaves is None:
                reference_leaves = flatten(reference(), path)[0]
            ref = (reference_leaves or {}).get(at)
            if isinstance(ref, torch.Tensor):
                tol = atol if atol is not None else harness_tolerance(want.dtype)
                judgement = judge_fp64(want, compiled_leaves[at], ref, tol)
                result = dataclasses.replace(result, fp64=judgement, passed=judgement.passed)
        results.append(result)
    return Comparison(tuple(sorted(results, key=lambda r: r.path)))


def tolerance(dtype: torch.dtype, rtol: float | None, atol: float | None) -> tuple[float, float]:
    if rtol is not None and atol is not None:
        return rtol, atol
    return DEFAULT_TOLERANCES.get(dtype, DEFAULT_TOLERANCES[torch.float32])


def compare_leaf(
    path: str, eager: Any, compiled: Any, rtol: float | None, atol: float | None
) -> LeafResult:
    if isinstance(eager, torch.Tensor) and isinstance(compiled, torch.Tensor):
        return compare_tensor(path, eager, compiled, rtol, atol)
    if type(eager) is not type(compiled) and not _both_numbers(eager, compiled):
        return LeafResult(
            path,
            False,
            f"eager gives {type(eager).__name__}, compiled gives {type(compiled).__name__}",
        )
    if isinstance(eager, float) or isinstance(compiled, float):
        r, a = tolerance(torch.float32, rtol, atol)
        both_nan = math.isnan(eager) and math.isnan(compiled)
        ok = both_nan or math.isclose(compiled, eager, rel_tol=r, abs_tol=a)
        diff = abs(compiled - eager) if not both_nan else 0.0
        return LeafResult(
            path, ok, None, 1, int(not ok), diff, (), diff / abs(eager or 1), (), r, a
        )
    if eager == compiled:
        return LeafResult(path, True, numel=1)
    return LeafResult(path, False, f"eager gives {eager!r}, compiled gives {compiled!r}")


def _both_numbers(a: Any, b: Any) -> bool:
    number = (int, float)
    return isinstance(a, number) and isinstance(b, number) and not isinstance(a, bool)


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
    close = torch.isclose(compiled, eager, rtol=r, atol=a, equal_nan=True)
    if bool(close.all()):  # the common case: only the greatest difference, for the report
        diff = (compiled - eager).abs().nan_to_num(nan=0.0)  # NaN only where both are NaN
        max_abs = float(diff.max()) if numel else 0.0
        return LeafResult(path, True, None, numel, 0, max_abs, (), 0.0, (), r, a)
    mismatched = numel - int(close.sum())
    wide = torch.complex128 if eager.is_complex() else torch.float64
    same = (compiled == eager) | (torch.isnan(compiled) & torch.isnan(eager))
    diff = (compiled.to(wide) - eager.to(wide)).abs().nan_to_num(nan=math.inf)
    diff = torch.where(same, torch.zeros_like(diff), diff)  # also equal infinities
    rel = diff / eager.abs().double()
    rel = torch.where(diff == 0, torch.zeros_like(rel), rel)
    return LeafResult(
        path,
        False,
        None,
        numel,
        mismatched,
        float(diff.max()),
        _index(diff.argmax(), eager.shape),
        float(rel.max()),
        _index(rel.argmax(), eager.shape),
        r,
        a,
    )


def judge_fp64(
    eager: torch.Tensor, compiled: torch.Tensor, reference: torch.Tensor, tol: float
) -> Fp64Judgement:
    """``same()``'s rule: compiled may drift from fp64 at most a few times as far as eager."""
    multiplier = fp64_multiplier(eager.dtype)
    wide = torch.complex128 if eager.is_complex() else torch.float64
    ref = reference.detach().to(eager.device, wide)
    eager64 = eager.detach().to(wide)
    compiled64 = compiled.detach().to(eager.device, wide)
    finite = torch.isfinite(ref) & torch.isfinite(eager64)
    if not torch.equal(torch.isfinite(eager64), torch.isfinite(compiled64)):
        # Non-finite values where eager has finite ones (or the reverse) are never drift.
        return Fp64Judgement(math.inf, _rmse(eager64, ref, finite), multiplier, tol / 10)
    return Fp64Judgement(
        _rmse(compiled64, ref, finite), _rmse(eager64, ref, finite), multiplier, tol / 10
    )


def _rmse(value: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> float:
    if not bool(mask.any()):
        return 0.0
    err = (value - ref)[mask].abs()
    return float(torch.sqrt(torch.mean(err * err)))


def _index(flat: torch.Tensor, shape: torch.Size) -> tuple[int, ...]:
    index = int(flat)
    out = []
    for size in reversed(shape):
        out.append(index % size)
        index //= size
    return tuple(reversed(out))
