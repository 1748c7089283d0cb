"""How much a floating leaf may differ: per-dtype tolerances scaled to the leaf's own
magnitude, and the fp64 judgement of ``torch._dynamo.utils.same``.

The absolute tolerance and the fp64 judgement's slack shrink with the RMS of eager's
values below 1 (``scale_factor``), so an output of 1e-10 is judged as strictly as one of
1: random-weight models whose outputs are tiny would otherwise be "close" to anything,
even to a backend that multiplies every output by 1.5. Above 1 nothing changes, since
``rtol`` already grows with the values.
"""

from __future__ import annotations

import dataclasses
import math

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
_NAN_RESCUE_TOL = 4e-2  # same()'s loose tolerance when only eager has NaN


def harness_tolerance(dtype: torch.dtype) -> float:
    """The ``tol`` PyTorch's benchmark harness hands ``same()``: 1e-4, 1e-3 in half precision.

    The fp64 judgement allows ``tol / 10`` on top of the RMSE multiple, unless the user
    gave ``atol``, which then stands for ``tol``.
    """
    return 1e-3 if dtype in _LOW_PRECISION else 1e-4


def fp64_multiplier(eager: torch.Tensor, reference_numel: int, tol: float) -> tuple[float, str]:
    """``same()``'s multiplier, and the rule that chose it: 3 where noise may dominate the
    RMSE (half precision, small tensors, 1x1 spatial maps, a loose ``tol``), else 2."""
    if eager.dtype in (torch.float16, torch.bfloat16):
        return 3.0, f"{str(eager.dtype).removeprefix('torch.')} result"
    if reference_numel < 1000:
        return 3.0, "fewer than 1000 elements"
    if eager.ndim == 4 and eager.shape[-1] == eager.shape[-2] == 1:
        return 3.0, "4-D with a 1x1 spatial shape"
    if tol >= 2e-2:
        return 3.0, f"tol {tol:g} >= 2e-2"
    return 2.0, ""


def leaf_scale(eager: torch.Tensor) -> float:
    """The RMS of eager's finite values: the magnitude a leaf's errors are judged against."""
    values = eager.detach().abs() if eager.is_complex() else eager.detach()
    if values.numel() == 0:
        return 0.0
    rms = float(torch.linalg.vector_norm(values)) / values.numel() ** 0.5
    if 1e-15 < rms < 1e15:  # the common case: squares neither underflow nor overflow
        return rms
    values = values[torch.isfinite(values)].double()  # NaN, infinities, or tiny values
    return float(torch.linalg.vector_norm(values)) / max(values.numel(), 1) ** 0.5


# The fp64 slack scales with the leaf below RMS 0.01 only: there same()'s absolute tol/10
# (1e-5) would be over 0.1% of the leaf; below it a leaf keeps a slack of 0.1% of its RMS,
# still 10x below a 1.01x wrong result. Gradients need that room: measured on ConvNet in
# train mode (examples/test_examples.py), BatchNorm's bias and weight gradients (RMS 0.002 to
# 0.005) drift 1.8e-4 and 2e-5 relative compiled, against 1.2e-5 and 2.4e-6 in eager, which
# same() passes (absolute 1e-5) and a slack of tol/10 relative to the RMS failed.
FP64_SLACK_HEADROOM = 100.0


def scale_factor(scale: float) -> float:
    """How far absolute tolerances shrink for a leaf of RMS ``scale``: to its magnitude
    below 1; not above 1 (``rtol`` already grows with the values), nor for an all-zero
    leaf, which has no magnitude to judge against (and is marked vacuous)."""
    return min(1.0, scale) if scale > 0 else 1.0


def effective_atol(atol: float, rtol: float, scale: float, dtype: torch.dtype) -> float:
    """``atol`` scaled by ``scale_factor``; never below ``rtol`` times the smallest normal
    number, where rounding turns absolute (float16 below 6e-5), nor above ``atol``."""
    factor = scale_factor(scale)
    if factor >= 1.0:
        return atol
    return max(atol * factor, min(atol, rtol * torch.finfo(dtype).tiny))


@dataclasses.dataclass(frozen=True)
class Fp64Judgement:
    """``same()``'s verdict: ``passed`` if compiled drifts from fp64 at most ``multiplier``
    times as far as eager does, plus ``slack`` (``tol / 10`` times ``slack_factor``)."""

    compiled_rmse: float
    eager_rmse: float
    multiplier: float
    slack: float
    rule: str = ""  # why the multiplier is 3, not 2
    tol: float | None = None
    slack_factor: float = 1.0
    better_than_eager: bool = False  # eager has NaN, compiled and fp64 none and agree

    @property
    def allowed(self) -> float:
        return self.multiplier * self.eager_rmse + self.slack

    @property
    def passed(self) -> bool:
        return self.better_than_eager or self.compiled_rmse <= self.allowed

    def describe(self) -> str:
        if self.better_than_eager:
            return (
                "fp64 judgement: eager has NaN where compiled and fp64 have none, and "
                f"compiled is within {_NAN_RESCUE_TOL:g} of fp64: compiled is better than eager"
            )
        verdict = "within" if self.passed else "exceeds"
        rule = f" ({self.rule})" if self.rule else ""
        slack = "tol/10"
        if self.slack_factor < 1.0 and self.tol is not None:
            slack += f" ({self.tol / 10:g}, scaled to {self.slack:.2g} by the leaf's RMS)"
        return (
            f"fp64 judgement: RMSE(compiled, fp64)={self.compiled_rmse:.3g} {verdict} "
            f"{self.multiplier:g} x RMSE(eager, fp64)={self.eager_rmse:.3g}{rule} + {slack} "
            f"= {self.allowed:.3g}"
        )


def tolerance(dtype: torch.dtype, rtol: float | None, atol: float | None) -> tuple[float, float]:
    if rtol is not None and atol is not None:
        return rtol, atol
    return DEFAULT_TOLERANCES.get(dtype, DEFAULT_TOLERANCES[torch.float32])


def judge_fp64(
    eager: torch.Tensor, compiled: torch.Tensor, reference: torch.Tensor, tol: float
) -> Fp64Judgement:
    """``same()``'s rule: compiled may drift from fp64 at most a few times as far as eager,
    plus ``tol / 10`` scaled to the leaf's magnitude."""
    multiplier, rule = fp64_multiplier(eager, reference.numel(), tol)
    factor = scale_factor(leaf_scale(eager) * FP64_SLACK_HEADROOM)
    wide = torch.complex128 if eager.is_complex() else torch.float64
    ref = reference.detach().to(eager.device, wide)
    eager64 = eager.detach().to(wide)
    compiled64 = compiled.detach().to(eager.device, wide)
    finite = torch.isfinite(ref) & torch.isfinite(eager64)
    judgement = Fp64Judgement(
        math.inf, _rmse(eager64, ref, finite), multiplier, tol / 10 * factor, rule, tol, factor
    )
    if _better_than_eager(ref, eager, compiled.detach().to(eager.device), factor):
        return dataclasses.replace(judgement, compiled_rmse=math.nan, better_than_eager=True)
    if not torch.equal(torch.isfinite(eager64), torch.isfinite(compiled64)):
        return judgement  # non-finite where the other is finite is never drift
    return dataclasses.replace(judgement, compiled_rmse=_rmse(compiled64, ref, finite))


def _better_than_eager(
    ref: torch.Tensor, eager: torch.Tensor, compiled: torch.Tensor, factor: float
) -> bool:
    """``same()``'s corner case: eager has NaN, compiled and fp64 have none and agree."""
    if not bool(eager.isnan().any()) or bool(compiled.isnan().any()) or bool(ref.isnan().any()):
        return False
    loose = _NAN_RESCUE_TOL
    return torch.allclose(ref.to(compiled.dtype), compiled, rtol=loose, atol=loose * factor)


def _rmse(value: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> float:
    if not bool(mask.any()):
        return 0.0
    err = (value - ref)[mask].abs()
    return float(torch.sqrt(torch.mean(err * err)))
