"""Speedup statistics and the speed decision, as pure functions of measured times.

Each round times a block of eager calls and a block of compiled calls back to back, so
slow drift of the machine (another process, frequency scaling) hits both alike. The
speedup of a round is ``eager / compiled``; the estimate is the median of the per-round
log-ratios, with the distribution-free (sign-test) confidence interval for a median,
which assumes nothing about the shape of timing noise.

Deciding while measuring means looking at the interval several times; each look uses
``alpha / looks`` (Bonferroni over the looks the budget allows), so the chance of any
wrong decision stays within ``alpha`` overall.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

MIN_ROUNDS = 8
LOOK_GROWTH = 1.5


@dataclasses.dataclass(frozen=True)
class SpeedEstimate:
    speedup: float
    low: float
    high: float
    rounds: int
    eager_median: float  # seconds per call
    compiled_median: float
    confidence: float  # of this interval
    looks: int = 1  # intervals examined while measuring (Bonferroni: confidence is per look)

    def describe(self) -> str:
        overall = 1.0 - (1.0 - self.confidence) * self.looks
        per_look = (
            f" ({self.confidence:.1%} at each of {self.looks} looks)" if self.looks > 1 else ""
        )
        return (
            f"speedup {self.speedup:.3f}x, {overall:.0%} interval{per_look} "
            f"[{self.low:.3f}, {self.high:.3f}] over {self.rounds} paired rounds; "
            f"median eager {_fmt_time(self.eager_median)}, "
            f"compiled {_fmt_time(self.compiled_median)} per call"
        )


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def binomial_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """Sign-test confidence interval for the median: order statistics (k, n+1-k)."""
    ordered = sorted(values)
    n = len(ordered)
    alpha = 1.0 - confidence
    k = 0  # the largest k with P(X <= k-1) <= alpha/2
    while k + 1 <= n // 2 and binomial_cdf(k, n) <= alpha / 2:
        k += 1
    if k == 0:
        return -math.inf, math.inf  # too few rounds for this confidence
    return ordered[k - 1], ordered[n - k]


def estimate(
    eager: Sequence[float], compiled: Sequence[float], confidence: float = 0.95, looks: int = 1
) -> SpeedEstimate:
    """Paired estimate from per-call times of each round (same length, same order)."""
    if len(eager) != len(compiled) or not eager:
        raise ValueError("need the same, non-zero number of eager and compiled rounds")
    logs = [math.log(e / c) for e, c in zip(eager, compiled, strict=True)]
    low, high = median_interval(logs, confidence)
    return SpeedEstimate(
        speedup=math.exp(statistics.median(logs)),
        low=math.exp(low) if low > -math.inf else 0.0,
        high=math.exp(high) if high < math.inf else math.inf,
        rounds=len(logs),
        eager_median=statistics.median(eager),
        compiled_median=statistics.median(compiled),
        confidence=confidence,
        looks=looks,
    )


def look_schedule(max_rounds: int, min_rounds: int = MIN_ROUNDS) -> list[int]:
    """Round counts at which the interval is examined: geometric, ending at the budget."""
    looks: list[int] = []
    n = float(min_rounds)
    while round(n) < max_rounds:
        looks.append(round(n))
        n *= LOOK_GROWTH
    looks.append(max(max_rounds, min_rounds))
    return sorted(set(looks))


@dataclasses.dataclass(frozen=True)
class SpeedDecision:
    passed: bool
    close: bool  # the budget ran out before the interval cleared the threshold
    estimate: SpeedEstimate
    min_speedup: float

    def describe(self) -> str:
        verdict = "clears" if self.passed else "misses"
        how = (
            "decided on the point estimate: the interval still straddled the threshold "
            "when the time budget ran out (a close result)"
            if self.close
            else "decided by the confidence interval"
        )
        return f"{verdict} min_speedup={self.min_speedup:g}: {self.estimate.describe()}; {how}"


def decide(est: SpeedEstimate, min_speedup: float, *, final: bool) -> SpeedDecision | None:
    """Pass once the interval is above the threshold, fail once below; else wait or, at the
    end of the budget, fall back to the point estimate and call the result close."""
    if est.low >= min_speedup:
        return SpeedDecision(True, False, est, min_speedup)
    if est.high < min_speedup:
        return SpeedDecision(False, False, est, min_speedup)
    if final:
        return SpeedDecision(est.speedup >= min_speedup, True, est, min_speedup)
    return None
