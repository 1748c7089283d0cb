"""Speed statistics on synthetic data: quantile intervals, the contention filter, and the
sequential decision. Nothing here times anything, so it holds on a loaded machine."""

import fnmatch
import math
import random

from pytest_torchcompile.stats import (
    CLEAN_WAIT,
    MIN_ROUNDS,
    Blocks,
    bounded_after,
    clean_rounds,
    decide,
    estimate,
    look_schedule,
    quantile,
    quantile_interval,
)


def sides(eager, compiled, eager_waits=None, compiled_waits=None):
    """Both sides' blocks; the same waits for both unless told otherwise."""
    compiled_waits = eager_waits if compiled_waits is None else compiled_waits
    return (
        Blocks(tuple(eager), None if eager_waits is None else tuple(eager_waits)),
        Blocks(tuple(compiled), None if compiled_waits is None else tuple(compiled_waits)),
    )


def test_quantile_interval_covers_the_true_quantile_at_its_confidence():
    rng = random.Random(0)
    for q, true in ((0.5, 0.0), (0.25, -0.6744897501960817)):
        hits = 0
        for _ in range(400):
            sample = [rng.gauss(0.0, 1.0) for _ in range(40)]
            low, high = quantile_interval(sample, q, 0.95)
            hits += low <= true <= high
        assert 0.93 <= hits / 400 <= 1.0, q


def test_the_median_interval_is_the_sign_test_one():
    values = list(range(1, 21))  # n=20: the 95% sign-test interval is (x_6, x_15)
    assert quantile_interval(values, 0.5, 0.95) == (6, 15)
    assert quantile(values, 0.5) == 10.5


def test_too_few_rounds_give_an_unbounded_interval():
    assert quantile_interval([1.0, 2.0], 0.5, 0.95) == (-math.inf, math.inf)
    low, high = quantile_interval(list(range(10)), 0.25, 0.99)
    assert low == -math.inf and high < math.inf  # a low quantile needs more rounds below it


def test_estimate_is_the_ratio_of_lower_quartiles():
    eager = [2.0, 2.0, 2.0, 9.0] * 10  # a quarter of eager's blocks hit by noise
    compiled = [1.0] * 40
    est = estimate(eager, compiled)
    assert math.isclose(est.speedup, 2.0) and est.low <= 2.0 <= est.high
    assert math.isclose(est.eager_low, 2.0) and math.isclose(est.compiled_low, 1.0)


def test_noise_that_leaves_no_trace_in_the_wait_stays_in_the_upper_tail():
    # Memory-traffic interference slows memory-bound eager in 60% of rounds, and the run
    # queue never sees it: the median of paired ratios follows it, the quartiles do not.
    rng = random.Random(1)
    eager = [2.0 * (1.8 if rng.random() < 0.6 else 1.0) * rng.uniform(1, 1.02) for _ in range(60)]
    compiled = [1.0 * rng.uniform(1, 1.02) for _ in range(60)]
    est = estimate(eager, compiled)
    median_of_ratios = sorted(e / c for e, c in zip(eager, compiled, strict=True))[30]
    assert 1.95 <= est.speedup <= 2.1 < median_of_ratios


def test_a_contended_run_is_inconclusive_never_a_pass():
    # The issue: a busy neighbour, two torch threads; eager's barriers wait for a
    # descheduled thread, so eager looks 20x slower and compiled 1.3x: "33x".
    rng = random.Random(2)
    n = 60
    eager = [20 * 2.4e-3 * rng.uniform(0.5, 2) for _ in range(n)]
    compiled = [1.3 * 1.7e-3 * rng.uniform(0.9, 1.1) for _ in range(n)]
    waits = [rng.uniform(0.4, 1.0) for _ in range(n)]
    eager_blocks, compiled_blocks = sides(eager, compiled, waits, waits)
    assert estimate(eager, compiled).low > 3.0  # what the rounds alone would say
    assert decide(eager_blocks, compiled_blocks, 3.0, final=False, threads=2) is None
    decision = decide(eager_blocks, compiled_blocks, 3.0, final=True, threads=2)
    assert decision.inconclusive and not decision.passed and decision.outcome == "inconclusive"
    text = decision.describe()
    assert text.startswith("inconclusive for min_speedup=3, the machine too busy to time")
    assert f"0 of {n} rounds ran free of contention ({MIN_ROUNDS} needed;" in text
    assert "eager's per-call time varied" in text and "(p10-p90)" in text
    assert text.endswith("rerun on a quiet runner, or set threads= to the cores this job owns")


def test_contended_rounds_are_left_out_and_the_quiet_ones_decide():
    rng = random.Random(3)
    n = 90
    quiet = [rng.random() < 0.4 for _ in range(n)]
    eager = [2.4e-3 * (1.0 if q else rng.uniform(3, 30)) * rng.uniform(1, 1.05) for q in quiet]
    compiled = [1.7e-3 * (1.0 if q else rng.uniform(1, 2)) * rng.uniform(1, 1.05) for q in quiet]
    waits = [0.002 if q else rng.uniform(0.3, 1.0) for q in quiet]
    eager_blocks, compiled_blocks = sides(eager, compiled, waits, waits)
    assert clean_rounds(eager_blocks, compiled_blocks) == [i for i in range(n) if quiet[i]]
    decision = decide(eager_blocks, compiled_blocks, 2.0, final=False, threads=2)
    assert decision is not None and not decision.passed and not decision.close
    assert decision.estimate.rounds == sum(quiet)
    assert 1.3 <= decision.estimate.speedup <= 1.55
    assert f"{n - sum(quiet)} of {n} rounds left out" in decision.describe()


def test_a_round_counts_only_if_both_blocks_were_served():
    eager_blocks, compiled_blocks = sides(
        [2.0] * 3, [1.0] * 3, [0.0, CLEAN_WAIT, 0.0], [0.0, 0.0, CLEAN_WAIT * 1.01]
    )
    assert clean_rounds(eager_blocks, compiled_blocks) == [0, 1]


def test_without_a_wait_measure_every_round_counts():
    eager_blocks, compiled_blocks = sides([3.0] * 30, [1.0] * 30)
    decision = decide(eager_blocks, compiled_blocks, 2.0, final=False)
    assert decision.passed and decision.estimate.rounds == 30
    assert "left out" not in decision.describe()


def test_decision_passes_fails_or_waits():
    assert decide(*sides([3.0] * 30, [1.0] * 30), 2.0, final=False).passed
    assert not decide(*sides([3.0] * 30, [1.0] * 30), 4.0, final=False).passed
    spread = [1.5 + 2.0 * i / 29 for i in range(30)]  # lower quartile 2.0, interval ~[1.6, 2.4]
    noisy = sides(spread, [1.0] * 30)
    assert decide(*noisy, 2.0, final=False) is None
    final = decide(*noisy, 2.0, final=True)  # still straddling at the deadline: no coin flip
    assert final.close and final.inconclusive and not final.passed
    assert final.outcome == "inconclusive"
    assert "still straddled the threshold when the time budget ran out" in final.describe()


def test_the_message_keeps_the_shape_users_match():
    decision = decide(
        *sides([3.0e-3] * 30, [1.0e-3] * 30), 4.0, confidence=1 - 0.05 / 3, looks=3, final=False
    )
    pattern = (
        "misses min_speedup=4: speedup *x, 95% interval (*% at each of * looks) [[]*, *[]] over"
        " * paired rounds; median eager *, compiled * per call; decided by the confidence interval"
    )
    assert fnmatch.fnmatch(decision.describe(), pattern)


def test_look_schedule_is_geometric_and_ends_at_the_budget():
    looks = look_schedule(100)
    assert looks[0] == 8 and looks[-1] == 100 and looks == sorted(looks)
    assert len(looks) <= 8


def test_the_first_useful_look_is_where_the_interval_can_close():
    for looks in (1, 3, 5, 8):
        n = bounded_after(looks)
        side = 1 - 0.05 / looks / 2
        assert -math.inf < quantile_interval(list(range(n)), 0.25, side)[0]
        assert quantile_interval(list(range(n - 1)), 0.25, side)[0] == -math.inf
