"""Deployment targets: ``export`` and ``aoti`` in --compile-modes, real torch.export and
AOTInductor on the CPU. Each verdict has a test that plants the defect it must catch: a
Python branch that export specialises, a branch at size 1 that only the range's end shows,
code export cannot trace, a target that accepts out-of-range inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import run
from pytest_torchcompile import torch_compat as compat
from pytest_torchcompile.deploying import export_sizes
from pytest_torchcompile.errors import SettingsError

TESTS = """
import torch
from models import MLP, ConvNet, TinyLM, TwoHeads
from pytest_torchcompile import TensorSpec, compile_equivalent, compile_faster


def seeded(model):
    torch.manual_seed(0)
    return model().eval()


@compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"batch": (1, 64)}, examples=6)
@compile_faster(min_speedup=0.01, max_time=1.0, inputs=[TensorSpec("batch", 128)],
                dims={"batch": (1, 64)})
def test_mlp():
    return seeded(MLP)


@compile_equivalent(inputs=[TensorSpec("batch", 3, 16, 16)], dims={"batch": (2, 8)}, examples=4)
def test_convnet():
    return seeded(ConvNet)


@compile_equivalent(inputs=[TensorSpec("batch", 24)], dims={"batch": (2, 16)}, examples=4,
                    max_graph_breaks=0)
def test_dict_outputs():
    return seeded(TwoHeads)


@compile_equivalent(
    inputs={"input_ids": TensorSpec("batch", "seq", dtype=torch.long, high=100)},
    dims={"batch": (1, 4), "seq": (1, 32)},
    examples=4,
)
def test_tiny_transformer():
    return seeded(TinyLM)


class Capped(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] > 40:  # a Python branch on the dim: export keeps batch <= 40
            return x[:40] * 2
        return x * 2


@compile_equivalent(inputs=[TensorSpec("batch", 3)], dims={"batch": (1, 64)})
def test_branch_on_dim():
    return Capped()


class SqueezeOne(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] == 1:  # export assumes sizes >= 2 and never takes this branch
            return x.squeeze(0) * 3
        return x * 3


@compile_equivalent(inputs=[TensorSpec("batch", 3)], dims={"batch": (1, 8)}, examples=2)
def test_branch_at_one():
    return SqueezeOne()


def add_sin(x, y):
    return torch.sin(x) + y


@compile_equivalent(inputs={"x": TensorSpec("batch", 4), "y": TensorSpec("batch", 4)},
                    dims={"batch": (2, 9)}, examples=3, modes=("export",))
def test_function_with_keywords():
    return add_sin  # a plain function, its inputs by keyword: exported under its signature


@compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"batch": (1, 64)}, strict=True,
                    examples=3, modes=("export",))
def test_strict():
    return seeded(MLP)


class Counter(torch.nn.Module):
    # updates a buffer in place: the package keeps it inside, out of the comparison

    def __init__(self):
        super().__init__()
        self.register_buffer("steps", torch.zeros(()))
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        self.steps.add_(1)
        return self.lin(x) * self.steps


@compile_equivalent(inputs=[TensorSpec("batch", 4)], dims={"batch": (2, 8)}, examples=3)
def test_buffer_update():
    torch.manual_seed(0)
    return Counter()


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return x
        return -x


@compile_equivalent(inputs=[TensorSpec("batch", 3)], dims={"batch": (2, 8)})
def test_untraceable():
    return DataDependent()


@compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"batch": (2, 16)}, grad=True,
                    examples=3)
def test_training_step():
    return seeded(MLP).train()
"""

PERMISSIVE = """
import pytest
from pytest_torchcompile import deploying

# A deliberately permissive target: AOTInductor's runtime input checks off, and the
# exported program swapped for the eager module (which accepts any batch).
deploying.AotiSession.input_checks = False
_compile = deploying.DeploymentSession.compile


def permissive(self, model):
    compiled = _compile(self, model)
    return model if self.target == "export" else compiled


deploying.DeploymentSession.compile = permissive
"""


def _records(path: Path) -> dict[str, dict]:
    report = json.loads(path.read_text())
    return {f"{r['test_id'].split('::')[-1]}/{r['check']}": r for r in report["records"]}


def _sections(out: str) -> dict[str, str]:
    """Each failure's report, up to its captured output."""
    found = re.findall(
        r"_{3,} (test_\w+\[\w+\]) _{3,}\n(.*?)(?=\n_{3,} |\n=+ |\n-+ Captured)", out, re.S
    )
    return dict(found)


@pytest.mark.skipif(compat.aoti_unavailable() is not None, reason="no AOTInductor here")
@pytest.mark.skipif(
    torch.__version__ < "2.13",
    reason="this torch's AOTInductor packages refused no size when measured (2.6), so its aoti "
    "checks fail their out-of-range probe, truthfully; these verdicts are pinned on 2.13",
)
def test_export_and_aoti_targets(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_deploy=TESTS)
    modes = "--compile-modes=export,aoti"
    result = run(suite, modes, "--compile-report=cold.json", "-W", "ignore::DeprecationWarning")
    out = result.stdout.str()
    records = _records(suite.path / "cold.json")
    sections = _sections(out)

    # The example models pass under both targets: outputs (dataclass, dict with an int),
    # and, under export, gradients of a training step.
    for name in ("test_mlp", "test_convnet", "test_dict_outputs", "test_tiny_transformer"):
        for target in ("export", "aoti"):
            assert records[f"{name}[{target}]/equivalent"]["outcome"] == "passed", out
    assert records["test_training_step[export]/equivalent"]["outcome"] == "passed", out
    for target in ("export", "aoti"):
        assert records[f"test_buffer_update[{target}]/equivalent"]["outcome"] == "passed", out
    for name in ("test_function_with_keywords", "test_strict"):
        assert records[f"{name}[export]/equivalent"]["outcome"] == "passed", out
        assert f"{name}[aoti]/equivalent" not in records  # modes= keeps it to export
    buffer_notes = records["test_buffer_update[aoti]/equivalent"]["warnings"]
    assert any("buffers live inside the AOTInductor package" in w for w in buffer_notes)
    aoti = records["test_mlp[aoti]/equivalent"]
    assert aoti["backend"] == "aotinductor" and aoti["graphs"] == 1
    assert aoti["package_bytes"] > 100_000
    assert records["test_mlp[export]/equivalent"]["package_bytes"] is None
    # The speed gate times the loaded package (a contended machine skips, never passes).
    assert records["test_mlp[aoti]/faster"]["outcome"] in ("passed", "skipped")
    # A health gate that cannot apply to a target is said so, never passed in silence.
    dict_notes = records["test_dict_outputs[export]/equivalent"]["warnings"]
    assert any("max_graph_breaks=0 does not apply to the export target" in w for w in dict_notes)
    # Out of range: what was not probed is said, with torch's reason.
    notes = records["test_convnet[export]/equivalent"]["warnings"]
    assert any("batch=1 (below dims batch) not probed" in w for w in notes), notes

    # A Python branch on a dim: the check fails before running, naming the dim, the range
    # declared, the range export kept, export's reason and torch's fix.
    branch = sections["test_branch_on_dim[export]"]
    assert "export could not keep the dims declared dynamic" in branch
    assert "dims batch=(1, 64): export narrowed it" in branch
    assert "kept batch=(2, 40)" in branch
    assert "torch suggests: batch = Dim('batch', max=40)" in branch
    assert records["test_branch_on_dim[aoti]/equivalent"]["outcome"] == "failed"
    assert records["test_branch_on_dim[export]/equivalent"]["examples"] is None  # none ran

    # Export assumes sizes >= 2: only the range's end (batch=1, always run) shows the
    # branch it never took.
    for target in ("export", "aoti"):
        one = sections[f"test_branch_at_one[{target}]"]
        assert "compiled output differs from eager" in one
        assert "smallest failing example: batch=1" in one

    # Untraceable code fails short, with export's reason and the user's line.
    untraceable = sections["test_untraceable[export]"]
    assert "torch.export (non-strict) could not trace the model" in untraceable
    assert "in user code:" in untraceable and "if x.sum() > 0" in untraceable
    assert "Traceback" not in untraceable and len(untraceable.splitlines()) < 12

    # A package has no autograd: grad checks are skipped under aoti, visibly.
    skipped = records["test_training_step[aoti]/equivalent"]
    assert skipped["outcome"] == "skipped"
    assert "AOTInductor packages run inference only" in skipped["message"]
    assert "INTERNALERROR" not in out

    # A warm run loads each package from the cache instead of rebuilding it.
    cold_seconds = records["test_tiny_transformer[aoti]/equivalent"]["compile_seconds"]
    warm = run(suite, "--compile-modes=aoti", "-k", "mlp or transformer", "--compile-report=w.json")
    warm_records = _records(suite.path / "w.json")
    lm = warm_records["test_tiny_transformer[aoti]/equivalent"]
    assert lm["outcome"] == "passed" and lm["package_cached"] is True, warm.stdout.str()
    assert lm["compile_cache"] == "warm"
    assert records["test_tiny_transformer[aoti]/equivalent"]["package_cached"] is False
    assert lm["compile_seconds"] < cold_seconds

    # Planted: a target that accepts out-of-range inputs fails the check.
    suite.makeconftest(PERMISSIVE)
    loose = run(suite, modes, "-k", "test_mlp", "--compile-report=p.json")
    loose_out = loose.stdout.str()
    assert "the AOTInductor package accepts batch=65, outside dims batch=(1, 64)" in loose_out
    assert "the exported program accepts batch=65, outside dims batch=(1, 64)" in loose_out
    assert _records(suite.path / "p.json")["test_mlp[aoti]/equivalent"]["outcome"] == "failed"


def test_target_usage_errors(pytester: pytest.Pytester) -> None:
    """Unknown modes list the targets; a fixture's compile() and a strategy input under a
    target are skipped with the reason (what to use instead)."""
    result = run(pytester, "--compile-modes=default,exprot")
    assert "deployment targets: export, aoti" in result.stderr.str()
    pytester.makepyfile(
        """
        import torch
        from hypothesis import strategies as st
        from pytest_torchcompile import compile_equivalent

        def test_fixture(torchcompile):
            torchcompile.compile(torch.nn.Linear(2, 2))

        @compile_equivalent(inputs=st.just((torch.ones(2, 2),)), modes=("export",))
        def test_strategy():
            return torch.nn.Linear(2, 2)
        """
    )
    result = run(pytester, "--compile-modes=export", "-rs")
    out = result.stdout.str()
    assert "compile() is torch.compile, and this test runs under the export target" in out
    assert "a Hypothesis strategy declares none" in out
    result.assert_outcomes(skipped=2)  # visibly not checked, never passed


def test_aoti_skips_without_a_compiler(pytester: pytest.Pytester) -> None:
    """Planted: no C++ compiler. aoti items are skipped with the reason, never passed."""
    pytester.makeconftest(
        """
        from pytest_torchcompile import torch_compat
        torch_compat.aoti_unavailable = lambda: "no C++ compiler for AOTInductor (planted)"
        """
    )
    pytester.makepyfile(
        """
        import torch
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec("batch", 4)], dims={"batch": (2, 8)})
        def test_linear():
            return torch.nn.Linear(4, 4)
        """
    )
    result = run(pytester, "--compile-modes=aoti", "-rs")
    result.assert_outcomes(skipped=1)
    assert "aoti cannot run here: no C++ compiler for AOTInductor (planted)" in result.stdout.str()


def test_export_sizes_avoid_specialisation_and_equal_dims() -> None:
    sizes = export_sizes({"batch": (1, 4), "seq": (1, 4), "fixed": (5, 5)}, {3})
    assert sizes["fixed"] == 5
    assert all(2 <= sizes[d] <= 4 for d in ("batch", "seq"))
    assert len({sizes["batch"], sizes["seq"], 3}) == 3  # distinct, and not a fixed size
    with pytest.raises(SettingsError, match="needs an example of at least 2"):
        export_sizes({"batch": (0, 1)}, set())


def test_violations_read_exports_words() -> None:
    class Error(Exception):
        msg = (
            "Constraints violated (batch)!\n"
            "  - You marked batch as dynamic but your code specialized it to be a constant "
            "(7). If you're using mark_dynamic, ...\n"
            "  - Not all values of seq = L['x'].size()[1] in the specified range seq <= 64 "
            "satisfy the generated guard 3 <= L['x'].size()[1] and L['x'].size()[1] <= 64\n"
            "Suggested fixes:\n  batch = 7\n  seq = Dim('seq', min=3, max=64)"
        )

    found = {v.dim: v for v in compat.violations(Error())}
    assert found["batch"].constant == 7 and found["batch"].fix == "batch = 7"
    assert found["seq"].kept == (3, 64)
    assert "3 <= L['x'].size()[1]" in found["seq"].reason


def _program(scale: float, seed: int = 0):
    import torch

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            with torch.no_grad():  # a block export keeps as a submodule graph
                y = self.lin(x) * scale
            return y + 1

    torch.manual_seed(seed)
    batch = torch.export.Dim("batch", min=1, max=8)
    return torch.export.export(Model(), (torch.randn(3, 4),), dynamic_shapes=({0: batch},))


def test_package_key_sees_weights_and_nested_graphs() -> None:
    from pytest_torchcompile.packages import package_key

    def key(program, **changes):
        args = {"configs": {}, "test_id": "t", "strict": False, "ranges": {"batch": (1, 8)}}
        args.update(changes)
        return package_key(program, **args)

    base = key(_program(2.0))
    assert key(_program(2.0)) == base  # stable across exports
    assert key(_program(3.0)) != base  # code inside a no_grad block
    assert key(_program(2.0, seed=1)) != base  # weights
    assert key(_program(2.0), configs={"max_autotune": True}) != base
    assert key(_program(2.0), ranges={"batch": (1, 16)}) != base
    assert key(_program(2.0), test_id="u") != base


def test_cold_runs_bypass_the_package_cache(tmp_path: Path) -> None:
    from pytest_torchcompile.packages import PACKAGE_DIR, PackageCache

    assert PackageCache(None, str(tmp_path / "kept")).folder == str(tmp_path / "kept")
    cold = PackageCache(str(tmp_path / "cold"), str(tmp_path / "kept"))
    assert cold.folder == str(tmp_path / "cold" / PACKAGE_DIR)


def test_numbers_come_back_as_numbers() -> None:
    import torch

    out = {"logits": torch.ones(2), "n": torch.tensor(3)}
    back = compat.numbers_back(out, [1])
    assert back["n"] == 3 and isinstance(back["n"], int)
    assert isinstance(back["logits"], torch.Tensor)


def test_safe_compile_refuses_a_target() -> None:
    import torch

    from pytest_torchcompile import safe_compile

    with pytest.raises(SettingsError, match="'aoti' is a deployment target"):
        safe_compile(torch.nn.Linear(2, 2), (torch.ones(1, 2),), mode="aoti")


ENDS = """
import torch
from pytest_torchcompile import TensorSpec, compile_equivalent

SEEN = []


class Recorder(torch.nn.Module):
    def forward(self, x):
        SEEN.append(x.shape[0])  # eager's runs (export traces with symbolic sizes)
        return x * 2


@compile_equivalent(inputs=[TensorSpec("batch", 3)], dims={"batch": (3, 50)}, examples=1,
                    modes=("export",))
def test_record():
    return Recorder()


def test_ends_were_examples():
    sizes = [s for s in SEEN if isinstance(s, int)]
    assert 3 in sizes and 50 in sizes, sizes
"""


def test_range_ends_are_always_examples(pytester: pytest.Pytester) -> None:
    """One drawn example, and still both ends of the range run; planted: with the ends off
    the max is not reached."""
    pytester.makepyfile(test_ends=ENDS)
    run(pytester, "--compile-modes=export").assert_outcomes(passed=2)
    pytester.makeconftest(
        """
        from pytest_torchcompile import deploying
        deploying.DeploymentSession.ends = False
        """
    )
    planted = run(pytester, "--compile-modes=export")
    planted.assert_outcomes(passed=1, failed=1)
    assert "test_ends_were_examples" in planted.stdout.str()
