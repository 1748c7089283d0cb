"""Speedup statistics, contention and the speed decision, as pure functions of measured data.

Each round times a block of eager calls and a block of compiled calls back to back, so
both sides sample the same moments of the machine. Noise only ever adds time, and it does
not add it evenly: when another process takes a core, every one of eager's many small
multi-threaded kernels waits at its barrier for a descheduled thread, while a fused
compiled kernel waits a few times. A busy neighbour can make eager look ten times slower
and the speedup ten times larger, in every round alike, so pairing rounds does not cancel
it. Two defences, both from data contention cannot fake:

* Every block records how long the process's threads were runnable but waiting for a CPU
  (the kernel's run-queue delay). That time bounds what contention added to the block: a
  round counts only if both of its blocks waited at most ``CLEAN_WAIT`` of their time. Too
  few such rounds and the decision is *inconclusive*, never a pass.
* Among the rounds that count, each side is summarised by its lower quartile of per-call
  times: quiet moments show there, and noise the wait cannot see (a neighbour's cache and
  memory traffic, which slow memory-bound eager more than fused code) stays in the upper
  tail. The speedup is the ratio of the two quartiles; its interval combines each side's
  distribution-free (order-statistic) interval, at half the error rate each.

Deciding while measuring means looking at the interval several times; each look uses
``alpha / looks`` (Bonferroni over the looks the budget allows), so the chance of any
wrong decision stays within ``alpha`` overall.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections.abc import Sequence

MIN_ROUNDS = 8  # uncontended rounds below which nothing is decided
LOOK_GROWTH = 1.5
LOW_QUANTILE = 0.25  # each side's statistic: its lower quartile of per-call times
# A block counts when its threads waited for a CPU at most this share of its wall time.
# Measured on the project's 2-core runner with bench/speed_gate.py's sin/cos chain and 2
# torch threads (indicative: other jobs shared the machine): blocks wait 0.1% (median)
# and 0.5% (p90) with no load of ours, 42% (p10) to 93% (p90) with a busy loop on the
# other core. Binned by wait, over 750 rounds under duty-cycled loads, the lower-quartile
# speedup reads 1.16x below 1% wait, 1.16x at 1-3%, 1.23x at 3-5%, then 1.39x at 5-10%,
# 1.52x at 20-50% and 1.78x past 100% (where the median of paired ratios reads 15x).
CLEAN_WAIT = 0.05


@dataclasses.dataclass(frozen=True)
class Blocks:
    """One side's timed blocks, one per round, in round order."""

    times: tuple[float, ...]  # seconds per call
    # Thread-seconds the process's threads spent runnable but off a CPU, per second of the
    # block: an upper bound on the share of the block that contention added. None where
    # nothing measures it (then every block counts, as before this measure existed).
    waits: tuple[float, ...] | None = None
    # Process CPU time over (torch threads x wall time): 1.0 is a fully served block.
    served: tuple[float, ...] | None = None

    def take(self, rounds: Sequence[int]) -> Blocks:
        return Blocks(
            tuple(self.times[i] for i in rounds),
            None if self.waits is None else tuple(self.waits[i] for i in rounds),
            None if self.served is None else tuple(self.served[i] for i in rounds),
        )


@dataclasses.dataclass(frozen=True)
class Contention:
    """How much the machine's other work got in the way: the evidence behind trusting, or
    not, a speed decision."""

    rounds: int  # rounds measured
    clean: int  # rounds whose two blocks each waited at most ``limit`` of their time
    limit: float
    threads: int  # torch threads while timing
    wait: float | None  # median over blocks of ``Blocks.waits`` (None: not measured)
    served: float | None  # median over blocks of ``Blocks.served``
    eager_range: tuple[float, float]  # per-call seconds, p10 and p90 over every round
    compiled_range: tuple[float, float]
    source: str = "run-queue delay"  # what measured the wait

    def evidence(self) -> str:
        """What was seen, in words: the rounds that counted, the wait, the spread."""
        parts = []
        if self.wait is not None:
            parts.append(
                f"{self.clean} of {self.rounds} rounds ran free of contention ({MIN_ROUNDS} "
                f"needed; a round counts when both blocks' threads waited for a CPU at most "
                f"{self.limit:.0%} of the time, by {self.source})"
            )
        if self.served is not None:
            parts.append(
                f"the process got {min(self.served, 1.0):.0%} of {_threads(self.threads)} "
                "time (median block)"
            )
        parts.append(
            f"eager's per-call time varied {_fmt_range(self.eager_range)}, compiled's "
            f"{_fmt_range(self.compiled_range)} (p10-p90)"
        )
        return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class SpeedEstimate:
    speedup: float
    low: float
    high: float
    rounds: int  # rounds the estimate rests on (the uncontended ones)
    eager_median: float  # seconds per call
    compiled_median: float
    confidence: float  # of this interval
    looks: int = 1  # intervals examined while measuring (Bonferroni: confidence is per look)
    eager_low: float | None = None  # each side's lower quartile: the speedup is their ratio
    compiled_low: float | None = None

    def describe(self) -> str:
        overall = 1.0 - (1.0 - self.confidence) * self.looks
        per_look = (
            f" ({self.confidence:.1%} at each of {self.looks} looks)" if self.looks > 1 else ""
        )
        quartiles = (
            f"; estimated from the lower quartiles, eager {_fmt_time(self.eager_low)} and "
            f"compiled {_fmt_time(self.compiled_low)} per call"
            if self.eager_low is not None and self.compiled_low is not None
            else ""
        )
        return (
            f"speedup {self.speedup:.3f}x, {overall:.0%} interval{per_look} "
            f"[{self.low:.3f}, {self.high:.3f}] over {self.rounds} paired rounds; "
            f"median eager {_fmt_time(self.eager_median)}, "
            f"compiled {_fmt_time(self.compiled_median)} per call{quartiles}"
        )


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_range(span: tuple[float, float]) -> str:
    """ "41-172 ms": both ends in the upper end's unit."""
    upper = _fmt_time(span[1])
    unit = upper.split()[1]
    scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    return f"{span[0] / scale:.3g}-{upper}"


def _threads(n: int) -> str:
    return f"its {n} threads'" if n != 1 else "its thread's"


def binomial_pmf(n: int, p: float) -> list[float]:
    """P(X = i) for i in 0..n, X ~ Binomial(n, p), in log space: exact for any n."""
    log_p, log_q = math.log(p), math.log1p(-p)
    head = math.lgamma(n + 1)
    return [
        math.exp(head - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        for i in range(n + 1)
    ]


def binomial_cdf(k: int, n: int, p: float = 0.5) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return min(1.0, math.fsum(binomial_pmf(n, p)[: k + 1]))


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile, interpolating between order statistics (the median for q=0.5)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def quantile_interval(values: Sequence[float], q: float, confidence: float) -> tuple[float, float]:
    """Distribution-free confidence interval for the q-quantile: the order statistics
    (l, u) with P(x_(l) > quantile) and P(x_(u) < quantile) each at most alpha/2, from
    the Binomial(n, q) count of values below it. Infinite ends: too few values."""
    ordered = sorted(values)
    n = len(ordered)
    tail = (1.0 - confidence) / 2
    pmf = binomial_pmf(n, q)
    below = list(itertools.accumulate(pmf))  # below[k] = P(X <= k)
    above = list(itertools.accumulate(reversed(pmf)))[::-1]  # above[k] = P(X >= k)
    low = sum(1 for k in range(n) if below[k] <= tail)  # the largest l: P(X <= l-1) <= tail
    high = n + 1 - sum(1 for k in range(1, n + 1) if above[k] <= tail)  # smallest u: P(X >= u)
    return (
        ordered[low - 1] if low > 0 else -math.inf,
        ordered[high - 1] if high <= n else math.inf,
    )


def estimate(
    eager: Sequence[float],
    compiled: Sequence[float],
    confidence: float = 0.95,
    looks: int = 1,
    q: float = LOW_QUANTILE,
) -> SpeedEstimate:
    """Ratio of each side's q-quantile of per-call times, from rounds measured in pairs.

    The interval is the ratio of the two sides' quantile intervals, each at confidence
    ``1 - alpha/2``: both cover with probability at least ``1 - alpha``.
    """
    if len(eager) != len(compiled) or not eager:
        raise ValueError("need the same, non-zero number of eager and compiled rounds")
    side = 1.0 - (1.0 - confidence) / 2
    eager_lo, eager_hi = quantile_interval(eager, q, side)
    compiled_lo, compiled_hi = quantile_interval(compiled, q, side)
    eager_q, compiled_q = quantile(eager, q), quantile(compiled, q)
    return SpeedEstimate(
        speedup=eager_q / compiled_q,
        low=eager_lo / compiled_hi if eager_lo > -math.inf and compiled_hi < math.inf else 0.0,
        high=eager_hi / compiled_lo
        if eager_hi < math.inf and compiled_lo > -math.inf
        else math.inf,
        rounds=len(eager),
        eager_median=statistics.median(eager),
        compiled_median=statistics.median(compiled),
        confidence=confidence,
        looks=looks,
        eager_low=eager_q,
        compiled_low=compiled_q,
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


def bounded_after(looks: int, q: float = LOW_QUANTILE, alpha: float = 0.05) -> int:
    """Rounds before the speedup's interval can be finite, with ``looks`` looks: a lower
    quantile's interval needs (1 - q)^n <= its tail (alpha / looks, halved per side and
    per end). Looking earlier spends a look that cannot decide."""
    tail = alpha / looks / 4
    return math.ceil(math.log(tail) / math.log(1.0 - q))


def clean_rounds(eager: Blocks, compiled: Blocks, limit: float = CLEAN_WAIT) -> list[int]:
    """Rounds whose two blocks both waited for a CPU at most ``limit`` of their time."""
    n = len(eager.times)
    if eager.waits is None or compiled.waits is None:
        return list(range(n))
    return [i for i in range(n) if max(eager.waits[i], compiled.waits[i]) <= limit]


def contention(
    eager: Blocks,
    compiled: Blocks,
    *,
    threads: int,
    source: str = "run-queue delay",
    limit: float = CLEAN_WAIT,
) -> Contention:
    waits = None if eager.waits is None or compiled.waits is None else eager.waits + compiled.waits
    served = (
        None if eager.served is None or compiled.served is None else eager.served + compiled.served
    )
    return Contention(
        rounds=len(eager.times),
        clean=len(clean_rounds(eager, compiled, limit)),
        limit=limit,
        threads=threads,
        wait=None if waits is None else statistics.median(waits),
        served=None if served is None else statistics.median(served),
        eager_range=(quantile(eager.times, 0.1), quantile(eager.times, 0.9)),
        compiled_range=(quantile(compiled.times, 0.1), quantile(compiled.times, 0.9)),
        source=source,
    )


@dataclasses.dataclass(frozen=True)
class SpeedDecision:
    """A speed verdict with its evidence: passed, failed, or inconclusive.

    Inconclusive is neither: contention hid the speedup a quiet machine would show, so
    the claim was not checked. Callers report it as a *skip* with this message, as the
    plugin does for other timings it cannot trust (under xdist): a skip says "not
    checked here" and shows with ``-rs`` and in the report. A failure would say the
    model is slow, which nothing measured shows: on a shared runner it would fail
    at random, and a gate that fails at random gets switched off. ``passed`` is False
    either way, so a caller that knows only ``passed`` never lets it through.
    """

    passed: bool
    close: bool  # the budget ran out with the interval straddling the threshold
    estimate: SpeedEstimate  # from the uncontended rounds; from every round if inconclusive
    min_speedup: float
    # Too few uncontended rounds to decide: not a pass. The caller reports it as a skip.
    inconclusive: bool = False
    contention: Contention | None = None

    @property
    def outcome(self) -> str:
        """ "passed", "failed" or "inconclusive"."""
        if self.inconclusive:
            return "inconclusive"
        return "passed" if self.passed else "failed"

    def describe(self) -> str:
        if self.inconclusive and self.close:
            return (
                f"inconclusive for min_speedup={self.min_speedup:g}: {self.estimate.describe()}; "
                "the interval still straddled the threshold when the time budget ran out, and "
                "deciding on the point estimate would be a coin flip; raise max_time, or set "
                "min_speedup clear of the speedup this model has"
            )
        if self.inconclusive:
            assert self.contention is not None
            return (
                f"inconclusive for min_speedup={self.min_speedup:g}, the machine too busy to "
                f"time soundly: {self.contention.evidence()}; all rounds together read "
                f"{self.estimate.speedup:.3g}x, a figure contention inflates unevenly; rerun "
                "on a quiet runner, or set threads= to the cores this job owns"
            )
        verdict = "clears" if self.passed else "misses"
        how = "decided by the confidence interval"
        text = f"{verdict} min_speedup={self.min_speedup:g}: {self.estimate.describe()}; {how}"
        cont = self.contention
        if cont is not None and cont.clean < cont.rounds:
            text += (
                f"\n{cont.rounds - cont.clean} of {cont.rounds} rounds left out: their "
                f"threads waited for a CPU more than {cont.limit:.0%} of the time"
            )
        return text


def decide(
    eager: Blocks,
    compiled: Blocks,
    min_speedup: float,
    *,
    confidence: float = 0.95,
    looks: int = 1,
    final: bool,
    threads: int = 1,
    source: str = "run-queue delay",
) -> SpeedDecision | None:
    """The decision at one look, from every round measured so far.

    Pass once the interval over the uncontended rounds is above the threshold, fail once
    below; else wait or, at the end of the budget, call the result close and inconclusive
    (the point estimate would decide by chance). With fewer than ``MIN_ROUNDS``
    uncontended rounds at the end, the result is inconclusive: contention hides the
    speedup a quiet machine would show, and no arithmetic on contended rounds recovers it.
    """
    seen = contention(eager, compiled, threads=threads, source=source)
    rounds = clean_rounds(eager, compiled)
    if len(rounds) < MIN_ROUNDS:
        if not final:
            return None
        everything = estimate(eager.times, compiled.times, confidence, looks)
        return SpeedDecision(False, False, everything, min_speedup, True, seen)
    kept_eager, kept_compiled = eager.take(rounds), compiled.take(rounds)
    est = estimate(kept_eager.times, kept_compiled.times, confidence, looks)
    if est.low >= min_speedup:
        return SpeedDecision(True, False, est, min_speedup, contention=seen)
    if est.high < min_speedup:
        return SpeedDecision(False, False, est, min_speedup, contention=seen)
    if final:  # still straddling: deciding on the point estimate would be a coin flip
        return SpeedDecision(False, True, est, min_speedup, True, seen)
    return None
