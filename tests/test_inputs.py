"""TensorSpec and input plans: validation, shared symbolic dims, reproducible values."""

import pytest
import torch
from hypothesis import given, settings

from pytest_torchcompile import SettingsError, TensorSpec
from pytest_torchcompile.inputs import InputPlan


def test_integer_spec_needs_a_range():
    with pytest.raises(SettingsError, match="needs a value range: give high="):
        TensorSpec("batch", dtype=torch.long)


@pytest.mark.parametrize("size", [-1, 1.5, "not a name", True])
def test_bad_sizes_are_rejected(size):
    with pytest.raises(SettingsError, match="TensorSpec sizes"):
        TensorSpec(size)


def test_dims_must_be_used_by_some_spec():
    with pytest.raises(SettingsError, match="dims names 'seq' that no TensorSpec uses"):
        InputPlan([TensorSpec("batch", 4)], {"seq": (1, 2)})


def test_symbolic_dims_are_shared_and_values_reproducible():
    plan = InputPlan(
        {"a": TensorSpec("b", 3), "ids": TensorSpec("b", "s", dtype=torch.long, high=7)},
        {"b": (2, 2), "s": (5, 5)},
    )
    one = plan.materialize({"b": 2, "s": 5}, seed=3)
    two = plan.materialize({"b": 2, "s": 5}, seed=3)
    assert one.kwargs["a"].shape == (2, 3) and one.kwargs["ids"].shape == (2, 5)
    assert torch.equal(one.kwargs["a"], two.kwargs["a"])
    assert int(one.kwargs["ids"].max()) < 7
    assert one.describe() == "b=2, s=5; inputs a: float32[2, 3], ids: int64[2, 5]"


@settings(max_examples=25, deadline=None)
@given(example=InputPlan([TensorSpec("n", 2)], {"n": (3, 6)}).strategy())
def test_drawn_sizes_stay_in_range(example):
    assert 3 <= example.args[0].shape[0] <= 6


def test_timing_uses_the_top_of_each_range():
    plan = InputPlan([TensorSpec("n", "m")], {"n": (1, 9), "m": (2, 3)})
    assert plan.largest().args[0].shape == (9, 3)


def test_bad_inputs_say_what_is_accepted():
    with pytest.raises(SettingsError, match="inputs must be a list of positional inputs"):
        InputPlan("x")
