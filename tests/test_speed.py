"""compile_faster with real inductor timing: pass, fail with evidence, skip with reasons."""

import json
import subprocess
import sys

import pytest

from conftest import run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SPEED = """
import torch
from models import PointwiseChain
from pytest_torchcompile import TensorSpec, compile_faster

class MatMul(torch.nn.Module):
    '''One large matmul: inductor calls the same GEMM as eager, so no real speedup.'''
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(512, 512, bias=False)
    def forward(self, x):
        return self.lin(x)

@compile_faster(min_speedup=1.3, inputs=[TensorSpec(1 << 18)], max_time=2.0)
def test_fused_pointwise():
    return PointwiseChain()

@compile_faster(min_speedup=3.0, inputs=[TensorSpec(256, 512)], max_time=2.0)
def test_matmul_is_not_3x():
    return MatMul()
"""


def test_real_speedup_passes_and_a_missing_one_fails_with_evidence(suite, tmp_path):
    suite.makepyfile(test_speed=SPEED)
    bench = tmp_path / "bench.json"
    result = run(suite, "-v", "-rs", f"--benchmark-json={bench}")
    if "inconclusive for min_speedup" in result.stdout.str():  # never a pass: a visible skip
        pytest.skip("the machine was too busy to time soundly; the gate said inconclusive")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "compile_faster failed [[]mode=default, backend=inductor, device=cpu[]]",
            "misses min_speedup=3: speedup *x, 95% interval (*% at each of * looks) [[]*, *[]] over"
            " * paired rounds; "
            "median eager *, compiled * per call; decided by the confidence interval",
            "* torch thread(s)",
        ]
    )
    data = json.loads(bench.read_text())
    names = sorted(b["name"] for b in data["benchmarks"])
    assert names == [
        "test_fused_pointwise[default][compiled]",
        "test_fused_pointwise[default][eager]",
        "test_matmul_is_not_3x[default][compiled]",
        "test_matmul_is_not_3x[default][eager]",
    ]
    fused = [b for b in data["benchmarks"] if b["name"].startswith("test_fused")]
    assert {b["group"] for b in fused} == {"test_speed.py::test_fused_pointwise[default]"}
    info = fused[0]["extra_info"]
    assert (
        info["mode"] == "default" and info["speedup"] > 1.3 and len(info["speedup_interval"]) == 2
    )
    assert data["machine_info"]["torch"].startswith("2.")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--benchmark-disable",), "benchmarks are disabled (--benchmark-disable)"),
        (("--benchmark-skip",), "Skipping benchmark (--benchmark-skip active)"),
        (("-n", "2"), "speed not measured under pytest-xdist*"),
    ],
)
def test_untrustworthy_timing_skips_with_the_reason(suite, args, reason):
    """The marker and the fixture's assert_faster skip alike, never pass untimed."""
    fixture_face = """
def test_fixture_face(torchcompile):
    torchcompile.assert_faster(PointwiseChain(), [TensorSpec(1 << 18)], min_speedup=1.3)
"""
    suite.makepyfile(test_speed=SPEED + fixture_face)
    result = run(suite, "-rs", *args)
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines([f"SKIPPED *{reason}*"])
    if args[0] != "--benchmark-skip":  # pytest-benchmark skips its own fixture's users
        # Each skip is reported at its test (-rs groups skips by location and reason).
        shown = [line for line in result.stdout.lines if line.startswith("SKIPPED [1] test_")]
        assert len(shown) == 3, result.stdout.str()


def test_a_false_claim_on_a_busy_machine_never_passes(suite):
    """The issue's case: a chain that is ~1.3x faster compiled, gated at 3x, with both cores
    busy. Contention inflates eager's many small kernels far more than the fused one, so
    naive timing reads 20-30x here; the gate must say inconclusive (a skip) or fail."""
    suite.makepyfile(
        test_claim="""
        from models import SinCosChain
        from pytest_torchcompile import TensorSpec, compile_faster

        @compile_faster(min_speedup=3.0, inputs=[TensorSpec(1 << 18)], max_time=2.0)
        def test_false_claim():
            return SinCosChain()
    """
    )
    spin = "import time\nend = time.time() + 120\nwhile time.time() < end: pass"
    loads = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    try:
        result = run(suite, "-rs")
    finally:
        for load in loads:
            load.kill()
    outcomes = result.parseoutcomes()
    assert "passed" not in outcomes, result.stdout.str()
    if "skipped" in outcomes:
        result.stdout.fnmatch_lines(
            ["SKIPPED *inconclusive for min_speedup=3, the machine too busy to time soundly:*"]
        )


def test_benchmark_only_runs_just_the_speed_tests(suite):
    suite.makepyfile(
        test_speed=SPEED.replace("min_speedup=3.0", "min_speedup=0.2")
        + """
from pytest_torchcompile import compile_equivalent

@compile_equivalent(inputs=[TensorSpec(8)])
def test_equivalence_only():
    return PointwiseChain()
"""
    )
    result = run(suite, "--benchmark-only", "-rs")
    result.assert_outcomes(passed=2, skipped=1)


def test_a_speed_check_on_an_output_that_cannot_differ_fails(suite):
    """Plugin logic (the correctness check before timing), so the eager backend: an output
    that is all zeros in eager cannot confirm the compiled model computes the same."""
    suite.makepyfile(
        test_zeros="""
        import torch
        from pytest_torchcompile import TensorSpec, compile_faster

        @compile_faster(min_speedup=0.5, inputs=[TensorSpec(64)], backend="eager")
        def test_zeros():
            return lambda x: torch.zeros_like(x) * x
    """
    )
    result = run(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["this check cannot detect a wrong result: out is all zeros in eager, on every example*"]
    )
