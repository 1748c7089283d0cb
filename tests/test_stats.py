"""Speed statistics: the sign-test interval and the sequential decision."""

import math
import random

from pytest_torchcompile.stats import decide, estimate, look_schedule, median_interval


def test_median_interval_covers_the_true_median_about_95_percent():
    rng = random.Random(0)
    hits = 0
    for _ in range(400):
        sample = [rng.gauss(0.0, 1.0) for _ in range(30)]
        low, high = median_interval(sample, 0.95)
        hits += low <= 0.0 <= high
    assert 0.93 <= hits / 400 <= 1.0


def test_too_few_rounds_give_an_unbounded_interval():
    assert median_interval([1.0, 2.0], 0.95) == (-math.inf, math.inf)


def test_estimate_is_paired():
    eager = [2.0, 4.0, 2.0, 4.0, 2.0, 4.0, 2.0, 4.0, 2.0, 4.0]
    compiled = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
    est = estimate(eager, compiled)
    assert math.isclose(est.speedup, 2.0) and math.isclose(est.low, 2.0)


def test_decision_passes_fails_or_waits():
    est = estimate([3.0] * 10, [1.0] * 10)
    assert decide(est, 2.0, final=False).passed
    assert not decide(est, 4.0, final=False).passed
    noisy = estimate([1.0, 3.0] * 5, [1.0] * 10)  # interval [1, 3] straddles 2
    assert decide(noisy, 2.0, final=False) is None
    final = decide(noisy, 2.0, final=True)
    assert final.close and "close result" in final.describe()


def test_look_schedule_is_geometric_and_ends_at_the_budget():
    looks = look_schedule(100)
    assert looks[0] == 8 and looks[-1] == 100 and looks == sorted(looks)
    assert len(looks) <= 8
