"""Leaf-by-leaf comparison: paths, exact leaves, NaN, tolerances and the fp64 judgement."""

import dataclasses
from collections import namedtuple

import torch

from pytest_torchcompile.compare import compare, harness_tolerance, judge_fp64


@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    extra: dict


def test_paths_name_the_failing_leaf():
    eager = Out(torch.zeros(3), {"ids": torch.tensor([1, 2]), "n": 3})
    compiled = Out(torch.tensor([0.0, 0.5, 0.0]), {"ids": torch.tensor([1, 3]), "n": 3})
    result = compare(eager, compiled)
    assert [leaf.path for leaf in result.failures] == ['out.extra["ids"]', "out.logits"]
    text = result.describe()
    assert "out.logits: 1 of 3 elements differ" in text
    assert "greatest absolute difference 0.5 at index (1,)" in text
    assert 'out.extra["ids"]: 1 of 2 elements differ' in text and "(exact compare)" in text


def test_structure_type_and_shape_mismatches():
    Pair = namedtuple("Pair", "a b")
    assert "missing from the compiled output" in compare({"a": 1, "b": 2}, {"a": 1}).describe()
    assert (
        "eager gives list of 2, compiled gives list of 3" in compare([1, 2], [1, 2, 3]).describe()
    )
    assert "shape [2] != eager's [3]" in compare(torch.zeros(3), torch.zeros(2)).describe()
    assert "dtype torch.float64" in compare(torch.zeros(2), torch.zeros(2).double()).describe()
    assert compare(Pair(torch.ones(1), None), Pair(torch.ones(1), None)).passed


def test_nan_equals_nan_only_where_eager_has_nan():
    eager = torch.tensor([float("nan"), 1.0])
    assert compare(eager, eager.clone()).passed
    assert not compare(torch.tensor([0.0, 1.0]), eager).passed


def test_default_tolerance_is_per_dtype():
    a = torch.ones(4, dtype=torch.bfloat16)
    assert compare(a, a + 0.0078).passed  # within bf16's rtol 1.6e-2
    assert not compare(a.float(), a.float() + 0.0078).passed  # not fp32's


def test_fp64_judgement_accepts_drift_no_worse_than_eager():
    ref = torch.linspace(0, 1, 1000, dtype=torch.float64)
    eager = (ref + 1e-4).float()
    compiled = (ref - 1.5e-4).float()  # fails allclose, but only 1.5x eager's own error
    result = compare(eager, compiled, reference=lambda: ref)
    assert result.passed
    assert compare(eager, compiled).failures  # without a reference it fails


def test_fp64_judgement_rejects_much_worse_drift():
    ref = torch.linspace(0, 1, 1000, dtype=torch.float64)
    judgement = judge_fp64(ref.float(), (ref + 1e-3).float(), ref, harness_tolerance(torch.float32))
    assert not judgement.passed
    assert "exceeds 2 x RMSE(eager, fp64)" in judgement.describe()


def test_fp64_multiplier_is_three_in_half_precision():
    ref = torch.zeros(10, dtype=torch.float64)
    assert judge_fp64(ref.half(), ref.half(), ref, 1e-3).multiplier == 3.0


def test_worst_reports_the_greatest_error_even_when_passing():
    result = compare({"x": torch.zeros(3)}, {"x": torch.tensor([0.0, 1e-6, 0.0])})
    assert result.passed and result.worst.max_abs > 0 and result.worst.path == 'out["x"]'
