"""Every judgement catches the defect it exists for: planted wrong gradients, input
gradients and buffers; the model's own errors; a compile-time gate; xfail records.

The planted backends are test doubles that run the captured graph eagerly and corrupt one
thing (plugin logic: what is under test is the judgement, not a compiler).
"""

import json

import pytest

from conftest import run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PLANTED = """
import torch
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.backends.registry import register_backend


def _scaled(gm):
    def run(*args):
        out = gm(*args)
        return type(out)(o * 1.5 if isinstance(o, torch.Tensor) else o for o in out)
    return run


# Forward right, backward 1.5x: every gradient (parameters' and inputs') is wrong.
register_backend(
    aot_autograd(fw_compiler=lambda gm, ex: gm, bw_compiler=lambda gm, ex: _scaled(gm)),
    name="wrong_backward",
)


@register_backend
def wrong_input(gm, example_inputs):
    '''Output right, but every 2-D input is changed in place (as a dropped or spurious
    input mutation would leave it).'''
    def run(*args):
        out = gm(*args)
        for a in args:
            if isinstance(a, torch.Tensor) and a.dim() == 2:
                a.mul_(1.5)
        return out
    return run


@register_backend
def wrong_buffer(gm, example_inputs):
    '''Output right, but every 1-D float input that needs no grad (a buffer) is scaled.'''
    def run(*args):
        out = gm(*args)
        for a in args:
            if isinstance(a, torch.Tensor) and a.dim() == 1 and not a.requires_grad:
                a.mul_(1.5)
        return out
    return run
"""

SUITE = """
import pytest, torch
from torch import nn
from models import MLP
from pytest_torchcompile import TensorSpec, compile_equivalent


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.register_buffer("total", torch.zeros(8))

    def forward(self, x):
        self.total.add_(x.sum(0))
        return self.lin(x)


def smooth(x):
    return torch.sin(x) * x


@compile_equivalent(inputs=[TensorSpec(3, 128)], grad=True, backend="wrong_backward",
                    examples=1)
def test_wrong_parameter_gradient():
    return MLP().eval()


@compile_equivalent(inputs=[TensorSpec(3, 5)], grad=True, backend="wrong_backward",
                    examples=1)
def test_wrong_input_gradient():
    return smooth


@compile_equivalent(inputs=[TensorSpec(4, 8)], backend="wrong_buffer", examples=1)
def test_wrong_buffer():
    return Counter()


@compile_equivalent(inputs=[TensorSpec(4, 8)], backend="wrong_input", examples=1)
def test_wrong_input_mutation():
    return smooth


@compile_equivalent(inputs=[TensorSpec("batch", 17)], dims={"batch": (1, 4)})
def test_eager_raises():
    return MLP().eval()  # takes 128 features, gets 17


@compile_equivalent(inputs=[TensorSpec(2, 128)], max_compile_time=0.001, examples=1)
def test_compile_time_gate():
    return MLP().eval()


@pytest.mark.xfail(reason="planted", strict=True)
@compile_equivalent(inputs=[TensorSpec(4, 8)], backend="wrong_buffer", examples=1)
def test_expected_failure():
    return Counter()
"""


def test_planted_defects_are_caught_and_recorded(suite, tmp_path):
    suite.makeconftest(PLANTED)
    suite.makepyfile(test_planted=SUITE)
    report = tmp_path / "report.json"
    result = run(suite, f"--compile-report={report}")
    result.assert_outcomes(failed=6, xfailed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(['grad[[]"net.0.weight"[]]: * elements differ*'])
    result.stdout.fnmatch_lines(['input_grad[[]"arg0"[]]: 15 of 15 elements differ*'])
    result.stdout.fnmatch_lines(['buffers[[]"total"[]]: 8 of 8 elements differ*'])
    result.stdout.fnmatch_lines(['inputs[[]"arg0"[]]: 32 of 32 elements differ*'])
    # The model's own error: short, recorded, no plugin source, no Hypothesis dump.
    result.stdout.fnmatch_lines(
        [
            "eager raised RuntimeError: mat1 and mat2 shapes cannot be multiplied*",
            "example: batch=*; inputs arg0: float32[[]*, 17[]]*",
            "  in user code: *models.py:* in forward: *",
            "The model fails without compiling, so nothing was compared: check inputs=*",
        ]
    )
    assert "Falsifying example" not in out and "def pytest_pyfunc_call" not in out
    assert "Traceback" not in out
    result.stdout.fnmatch_lines(["first compile took * s, max_compile_time=0.001 s"])
    records = {r["test_id"].split("::")[1]: r for r in json.loads(report.read_text())["records"]}
    assert records["test_eager_raises[default]"]["outcome"] == "failed"
    assert "eager raised RuntimeError" in records["test_eager_raises[default]"]["message"]
    assert records["test_expected_failure[default]"]["outcome"] == "xfailed"
    assert records["test_compile_time_gate[default]"]["compile_seconds_total"] > 0
    long = run(suite, "--tb=long", "-k", "eager_raises")
    assert "Traceback" in long.stdout.str() or "raise " in long.stdout.str()


def test_a_failure_carries_what_rebuilds_its_inputs(suite, tmp_path):
    """The record and the message hold the drawn dims and the value seed; rebuilt with
    them, the inputs are the very tensors that failed."""
    suite.makeconftest(PLANTED)
    suite.makepyfile(
        test_seed="""
        from models import MLP
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec("batch", 3, 5)], dims={"batch": (2, 4)},
                            grad=True, backend="wrong_backward", examples=2)
        def test_seeded():
            import torch
            return lambda x: torch.sin(x)
    """
    )
    report = tmp_path / "report.json"
    result = run(suite, f"--compile-report={report}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["rebuild these inputs: InputPlan(inputs, dims).materialize(*"])
    record = json.loads(report.read_text())["records"][0]
    assert set(record["example"]) == {"dims", "seed"}
    assert isinstance(record["example"]["seed"], int)
