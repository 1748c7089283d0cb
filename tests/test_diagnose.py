"""Diagnosis of failed checks: eager against itself, the stage ladder, the first diverging
module, inductor's bisector, the repro folder. Each test plants a defect at a known place
and asserts the diagnosis names that place, as a user reads it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run
from pytest_torchcompile.errors import SettingsError
from pytest_torchcompile.repro import folder_name
from pytest_torchcompile.settings import CompileSettings

# Backends that are right except where planted: about plugin logic (where the diagnosis
# looks), so they wrap Dynamo's graph directly rather than compiling it with inductor.
PLANTED = '''
import torch
from torch._dynamo import register_backend

TANH = (torch.tanh, "tanh", torch.ops.aten.tanh.default)


def _has(gm, targets):
    return any(n.target in targets for n in gm.graph.nodes)


def _scaled(gm):
    def run(*args):
        out = gm(*args)
        return type(out)(o * 1.5 if isinstance(o, torch.Tensor) else o for o in out)
    return run


@register_backend
def wrong_tanh(gm, example_inputs):
    """1.5x wrong in any graph that computes tanh."""
    return _scaled(gm) if _has(gm, TANH) else gm


@register_backend
def raising_tanh(gm, example_inputs):
    if _has(gm, TANH):
        raise RuntimeError("no kernel for tanh in this test backend")
    return gm


@register_backend
def wrong_inductor(gm, example_inputs):
    """Inductor, then 1.5x: a broken wrapper around a sound compiler."""
    from torch._inductor.compile_fx import compile_fx

    return _scaled(compile_fx(gm, example_inputs))


@register_backend
def wrong_fused(gm, example_inputs):
    """Wrong only where relu and tanh meet in one graph: a fusion bug."""
    both = _has(gm, TANH) and _has(gm, (torch.relu, "relu", torch.nn.functional.relu))
    return _scaled(gm) if both else gm


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)
        self.act = torch.nn.Tanh()

    def forward(self, x):
        return self.act(self.fc(x))


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), Block(), torch.nn.Linear(16, 4)
    )


NOISE = torch.Generator().manual_seed(1)


class Noisy(torch.nn.Module):
    """Eager differs from itself: noise from a generator that no seed resets (small beside
    the 1.5x that wrong_tanh plants, so the check fails)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return torch.tanh(self.fc(x)) + 0.01 * torch.rand(x.shape[0], 4, generator=NOISE)
'''

TESTS = """
import pytest, torch
from planted import net, Noisy
from pytest_torchcompile import TensorSpec, compile_equivalent, compile_faster

X = dict(inputs=[TensorSpec("batch", 8)], dims={"batch": (2, 16)}, examples=3)


@compile_equivalent(backend="wrong_tanh", **X)
def test_ladder():
    return net()


def test_fixture(torchcompile):
    torchcompile.assert_equivalent(net(), [torch.randn(3, 8)], backend="wrong_tanh")


@compile_equivalent(backend="wrong_inductor", **X)
def test_wraps_inductor():
    return net()


@compile_equivalent(backend="raising_tanh", **X)
def test_raises():
    return net()


@compile_equivalent(backend="wrong_fused", **X)
def test_fused():
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Tanh())


@compile_equivalent(backend="wrong_tanh", **X)
def test_noisy():
    return Noisy()


@compile_equivalent(backend="wrong_tanh", diagnose="off", **X)
def test_marker_off():
    return net()


@pytest.mark.xfail(reason="known")
@compile_equivalent(backend="wrong_tanh", **X)
def test_xfail():
    return net()


@pytest.mark.xfail(reason="known")
@compile_faster(min_speedup=100, max_time=0.5, inputs=[TensorSpec(4, 8)])
def test_xfail_faster():
    return net()


@compile_equivalent(backend="wrong_tanh", **X)
def test_dropout():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Dropout(0.2), torch.nn.Tanh()
    ).train()
"""


def _records(path: Path) -> dict[str, dict]:
    report = json.loads(path.read_text())
    return {r["test_id"].split("::")[-1]: r for r in report["records"]}


def test_diagnosis_names_stage_module_and_writes_a_repro(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(planted=PLANTED, test_diag=TESTS)
    # The default level (auto), with marker overrides: only --compile-diagnose beats those.
    result = run(pytester, "--compile-diagnose-time=120", "--compile-report=r.json")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 8
    # An expected failure is not diagnosed, and a speed check takes no diagnose= at all.
    assert outcomes.get("xfailed", 0) + outcomes.get("skipped", 0) == 2
    assert "unknown @compile_faster argument" not in result.stdout.str()
    out = result.stdout.str()
    sections = dict(
        re.findall(r"_{3,} (test_\w+)(?:\[\w+\])? _{3,}\n(.*?)(?=\n_{3,} |\n=+ )", out, re.S)
    )

    ladder = sections["test_ladder"]
    assert "diverges at: wrong_tanh; matches through: aot_eager_decomp_partition" in ladder
    assert (
        "ladder: eager matches, aot_eager matches, aot_eager_decomp_partition matches, "
        "wrong_tanh differs"
    ) in ladder
    assert "first diverging module: 2.act (Tanh): out: " in ladder
    assert "repro (no pytest run): python " in ladder

    assert (
        "diverges at: wrong_inductor; matches through: aot_eager_decomp_partition"
        in sections["test_wraps_inductor"]
    )

    # The fixture's errors carry the same diagnosis.
    assert "first diverging module: 2.act (Tanh)" in sections["test_fixture"]

    raises = sections["test_raises"]
    assert "raises at: raising_tanh; matches through: aot_eager_decomp_partition" in raises
    assert "(aot_eager_decomp_partition compiles; raising_tanh raises: report it there)" in raises
    assert "first diverging module: 2.act (Tanh): RuntimeError: no kernel for tanh" in raises

    fused = sections["test_fused"]
    assert (
        "first diverging module: none alone; every submodule of the model (Sequential) "
        "matches compiled alone" in fused
    )
    assert "divergence lies between modules" in fused

    # Eager's noise (0.01) is far below compiled's error (1.5x): noted, and not an excuse.
    noisy = sections["test_noisy"]
    assert "eager differs from itself on this example: out: " in noisy
    assert "the check's failure goes beyond that" in noisy
    assert "diverges at: wrong_tanh" in noisy

    # Dropout decomposes to other random draws: that rung is not judged, not blamed.
    dropout = sections["test_dropout"]
    assert "aot_eager_decomp_partition not judged" in dropout
    assert "diverges at: wrong_tanh; matches through: aot_eager" in dropout

    assert "diagnosis" not in sections["test_marker_off"]

    records = _records(pytester.path / "r.json")
    found = records["test_ladder[default]"]["diagnosis"]
    assert found["diverging_stage"] == "wrong_tanh"
    assert found["matching_stage"] == "aot_eager_decomp_partition"
    assert found["module"]["path"] == "2.act" and found["module"]["class"] == "Tanh"
    assert records["test_noisy[default]"]["diagnosis"]["eager_deterministic"] is False
    assert records["test_noisy[default]"]["diagnosis"]["diverging_stage"] == "wrong_tanh"
    assert records["test_marker_off[default]"]["diagnosis"] is None
    assert records["test_xfail[default]"]["diagnosis"] is None  # expected failures: not run

    # The repro runs with python alone: the test's factory (test_ladder takes no
    # arguments) or the pickled model (the fixture test), and fails while the bug is there.
    for name in ("test_ladder", "test_fixture"):
        folder = Path(records[f"{name}[default]"]["diagnosis"]["repro_dir"])
        assert folder.is_relative_to(pytester.path / ".pytest_cache")
        assert {"repro.py", "inputs.pt", "state.pt", "settings.json"} <= {
            p.name for p in folder.iterdir()
        }
        proc = subprocess.run(
            [sys.executable, str(folder / "repro.py")],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "compiled differs from eager in 1 leaves" in proc.stdout
        assert "pytest" not in proc.stderr
        factory = json.loads((folder / "settings.json").read_text())["factory"]
        assert (factory is not None) == (name == "test_ladder")


NESTED = """
import torch


class Gate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)

    def forward(self, x):
        return torch.relu(self.fc(x)) * 0.5 + x  # the model's only relu


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(16)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.norm(x))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Linear(8, 16)
        self.blocks = torch.nn.Sequential(torch.nn.Tanh(), Block())
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.blocks(self.embed(x)))
"""


def test_deep_finds_inductors_planted_relu_bug(pytester: pytest.Pytester) -> None:
    """Real inductor with its own planted codegen bug (relu outputs off by one): the ladder
    blames inductor, the module search the submodule whose forward holds the relu, and the
    compiler bisector the relu lowering."""
    pytester.makepyfile(nested=NESTED)
    pytester.makepyfile(
        test_deep="""
        from nested import Net
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec("batch", 8)], dims={"batch": (2, 16)},
                            examples=3,
                            options={"cpp.inject_relu_bug_TESTING_ONLY": "accuracy"})
        def test_inductor_bug():
            return Net()
        """
    )
    result = run(pytester, "--compile-diagnose=deep", "--compile-repro-dir=repros")
    if result.parseoutcomes().get("passed"):  # the bug is planted in one C++ codegen path
        pytest.skip(f"inductor's planted relu bug does not reach this model on {torch_version()}")
    result.assert_outcomes(failed=1)
    (folder,) = (pytester.path / "repros").glob("test_deep.py-test_inductor_bug-default-*")
    for script, says in (("repro.py", "compiled differs from eager"), ("graph_repro.py", "")):
        proc = subprocess.run(
            [sys.executable, script], cwd=folder, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode != 0, proc.stdout + proc.stderr
        assert says in proc.stdout
    assert "AccuracyError" in proc.stderr  # the minifier's script: torch's own verdict
    result.stdout.fnmatch_lines(
        [
            "*diverges at: inductor (mode=default); matches through: aot_eager_decomp_partition",
            "*first diverging module: blocks.1.gate (Gate): out: *",
            "*each child of blocks.1.gate matches compiled alone: the divergence is in "
            "Gate.forward's own code*",
            "*bisection: lowerings #*: relu",
            "*the one FX graph, standalone (PyTorch's minifier): python *repros/test_deep.py-"
            "test_inductor_bug-default-*/graph_repro.py",
            "*repro (no pytest run): python *repros/test_deep.py-test_inductor_bug-"
            "default-*/repro.py",
        ]
    )


def test_budget_reports_what_was_not_reached(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(planted=PLANTED, test_diag=TESTS)
    result = run(
        pytester, "-k", "test_ladder", "--compile-diagnose=auto", "--compile-diagnose-time=0.001"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*not reached in the 0.001 s budget (--compile-diagnose-time): *module search*"]
    )


def test_bad_diagnose_values_are_usage_and_collection_errors(pytester: pytest.Pytester) -> None:
    with pytest.raises(SettingsError, match="diagnose must be one of off, auto, deep"):
        CompileSettings(diagnose="sometimes")
    with pytest.raises(SettingsError, match="diagnose_time"):
        CompileSettings(diagnose_time=0)
    pytester.makepyfile(planted=PLANTED, test_diag=TESTS)
    result = run(pytester, "--compile-diagnose=always")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--compile-diagnose: invalid choice: 'always'*"])
    pytester.makepyfile(
        test_marker="""
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec(4)], diagnose="always")
        def test_x():
            return lambda x: x
        """
    )
    result = run(pytester, "test_marker.py")
    result.stdout.fnmatch_lines(["*diagnose must be one of off, auto, deep, got 'always'*"])


def torch_version() -> str:
    import torch

    return f"torch {torch.__version__}"


def test_repro_folder_names_are_safe_and_distinct() -> None:
    name = folder_name("tests/test_x.py::test_mlp[8-default]", "default")
    assert re.fullmatch(r"test_x\.py-test_mlp-8-default-[0-9a-f]{8}", name)
    ids = [
        "tests/test_x.py::test_mlp[8-default]",
        "tests/test_x.py::test_mlp[16-default]",  # parametrized: not one folder
        "other/test_x.py::test_mlp[8-default]",  # same file name elsewhere
        "a/b.py::TestC::test_d[p/q-default]",  # odd characters
    ]
    names = [folder_name(i, "default") for i in ids]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", n) for n in names)


def test_eager_noise_excuses_compiled_only_when_comparable() -> None:
    """Eager's own difference excuses compiled's within 10x, never a compile error."""
    import torch

    from pytest_torchcompile.compare import compare
    from pytest_torchcompile.diagnose import excused_by_eager

    base = torch.linspace(-1, 1, 64)
    eager_noise = compare(base, base + 0.01)
    assert excused_by_eager(eager_noise, compare(base, base + 0.05)) is True
    assert excused_by_eager(eager_noise, compare(base, base * 1.5 + 0.5)) is False
    assert excused_by_eager(eager_noise, None) is None


def test_safe_compile_reason_carries_the_diagnosis(pytester: pytest.Pytester) -> None:
    """A pipeline's fallback reason says where compile went wrong, as a test's failure does."""
    pytester.makepyfile(planted=PLANTED)
    pytester.makepyfile(
        test_pipeline="""
        import warnings
        import torch
        from planted import net
        from pytest_torchcompile import safe_compile

        def test_fallback_reason():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = safe_compile(net(), [torch.randn(3, 8)], backend="wrong_tanh")
            assert result.fallback_used
            assert "diverges at: wrong_tanh; matches through: aot_eager_decomp_partition" in (
                result.reason
            )
            assert "first diverging module: 2.act (Tanh)" in result.reason
        """
    )
    run(pytester).assert_outcomes(passed=1)
