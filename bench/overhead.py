"""Wall time of a compile_equivalent check against the minimal hand-written equivalent.

    python bench/overhead.py --examples 20 --repeats 3

The hand-written minimum: compile once, then for each example run eager and compiled and
``assert_close``. Both sides start from ``torch.compiler.reset()`` with a warm inductor
cache, see the same number of examples over the same size range, and alternate which runs
first; medians over the repeats are reported side by side.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
from models import MLP, ConvNet, TwoHeads  # noqa: E402

from pytest_torchcompile import CompileSettings, TensorSpec  # noqa: E402
from pytest_torchcompile.checker import CompileChecker  # noqa: E402

CASES = {
    "mlp": (lambda: MLP().eval(), ("b", 128), (1, 64)),
    "convnet": (lambda: ConvNet().eval(), ("b", 3, 16, 16), (1, 8)),
    "two_heads": (lambda: TwoHeads().eval(), ("b", 24), (1, 64)),
}


def hand_written(make, shape, dims, examples: int, seed: int) -> float:
    rng = random.Random(seed)
    start = time.perf_counter()
    torch.compiler.reset()
    eager = make()
    compiled = torch.compile(copy.deepcopy(eager))
    for _ in range(examples):
        b = rng.randint(*dims)
        x = torch.randn(b, *shape[1:])
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), eager(x))
    return time.perf_counter() - start


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
    for make, shape, dims in CASES.values():  # warm the inductor cache for every shape kind
        plugin_check(make, shape, dims, 3, 0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.examples} examples, median of {args.repeats}"
    )
    print("| model | hand-written (s) | compile_equivalent (s) | ratio |")
    print("|---|---|---|---|")
    ratios = []
    for name, (make, shape, dims) in CASES.items():
        hand, ours = [], []
        for r in range(args.repeats):
            order = [(hand, hand_written), (ours, plugin_check)]
            for times, fn in order if r % 2 == 0 else reversed(order):
                times.append(fn(make, shape, dims, args.examples, r))
        h, o = statistics.median(hand), statistics.median(ours)
        ratios.append(o / h)
        print(f"| {name} | {h:.2f} | {o:.2f} | {o / h:.2f}x |")
    print(f"geometric mean ratio: {statistics.geometric_mean(ratios):.2f}x")


if __name__ == "__main__":
    main()
