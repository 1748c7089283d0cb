"""Wall time of a compile_equivalent check against the minimal hand-written equivalent.

    python bench/overhead.py --examples 20 --repeats 3

The hand-written minimum: compile once, then for each example run eager and compiled and
``assert_close``. Both sides start from ``torch.compiler.reset()`` with a warm inductor
cache and run the same sequence of batch sizes: the one Hypothesis draws for that seed
(recorded in a warm-up pass, which also warms the cache for both). The first size decides
which static graph Dynamo compiles first, so unequal sequences would not compare like for
like. The sides alternate which runs first; medians over the repeats are reported.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
from models import MLP, ConvNet, TwoHeads  # noqa: E402

from pytest_torchcompile import CompileSettings, TensorSpec  # noqa: E402
from pytest_torchcompile.checker import CompileChecker  # noqa: E402
from pytest_torchcompile.equivalence import EquivalenceCheck  # noqa: E402

CASES = {
    "mlp": (lambda: MLP().eval(), ("b", 128), (1, 64)),
    "convnet": (lambda: ConvNet().eval(), ("b", 3, 16, 16), (1, 8)),
    "two_heads": (lambda: TwoHeads().eval(), ("b", 24), (1, 64)),
}


def hand_written(make, shape, sizes: list[int]) -> float:
    start = time.perf_counter()
    torch.compiler.reset()
    eager = make()
    compiled = torch.compile(copy.deepcopy(eager))
    for b in sizes:
        x = torch.randn(b, *shape[1:])
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), eager(x))
    return time.perf_counter() - start


def drawn_sizes(make, shape, dims, examples: int, seed: int) -> list[int]:
    """The batch sizes the plugin's check runs for this seed, in order."""
    sizes: list[int] = []
    check_example = EquivalenceCheck.check_example

    def spy(self, example):
        sizes.append(example.dims["b"])
        return check_example(self, example)

    with mock.patch.object(EquivalenceCheck, "check_example", spy):
        plugin_check(make, shape, dims, examples, seed)
    return sizes


def plugin_check(make, shape, dims, examples: int, seed: int) -> float:
    start = time.perf_counter()
    checker = CompileChecker(CompileSettings(examples=examples, seed=seed), database=False)
    checker.assert_equivalent(make(), [TensorSpec(*shape)], dims={"b": dims})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = {}
    for name, (make, shape, dims) in CASES.items():  # record sizes; warm both sides' cache
        for r in range(args.repeats):
            sizes[name, r] = drawn_sizes(make, shape, dims, args.examples, r)
            hand_written(make, shape, sizes[name, r])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.examples} examples, median of {args.repeats}"
    )
    print(f"examples per check (hand-written = plugin): {len(sizes['mlp', 0])}")
    print("| model | hand-written (s) | compile_equivalent (s) | ratio |")
    print("|---|---|---|---|")
    ratios = []
    for name, (make, shape, dims) in CASES.items():
        hand, ours = [], []
        for r in range(args.repeats):
            runs = [
                (hand, functools.partial(hand_written, make, shape, sizes[name, r])),
                (ours, functools.partial(plugin_check, make, shape, dims, args.examples, r)),
            ]
            for times, run in runs if r % 2 == 0 else reversed(runs):
                times.append(run())
        h, o = statistics.median(hand), statistics.median(ours)
        ratios.append(o / h)
        print(f"| {name} | {h:.2f} | {o:.2f} | {o / h:.2f}x |")
    print(f"geometric mean ratio: {statistics.geometric_mean(ratios):.2f}x")


if __name__ == "__main__":
    main()
