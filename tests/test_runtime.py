"""safe_compile: compile, validate, fall back; the same verdict as the markers."""

import logging
import subprocess
import sys
import textwrap

import pytest
import torch

from pytest_torchcompile import CompileCheckError, CompileSettings, SettingsError, safe_compile


def _script(body: str) -> str:
    """Run in a fresh interpreter: Dynamo's global state must not leak between checks."""
    code = textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_success_compiles_with_inductor_and_reports():
    out = _script("""
        import sys, torch; sys.path.insert(0, "examples")
        from models import MLP
        from pytest_torchcompile import safe_compile
        model = MLP().eval()
        result = safe_compile(model, (torch.randn(4, 128),))
        assert result.compiled and not result.fallback_used and result.validation_passed
        assert result.reason is None and result.compile_seconds > 0 and result.graph_breaks == 0
        assert result.model is not model and result.backend == "inductor"
        # The compiled model returned is the one validated: it wraps the user's own model
        # (shared parameters, nothing moved or copied) and runs without compiling again.
        assert result.model._orig_mod is model
        assert all(p.device.type == "cpu" for p in model.parameters())
        x = torch.randn(4, 128)
        before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        with torch.no_grad():  # as validated: a grad-mode call would compile for autograd
            assert torch.allclose(result.model(x), model(x), atol=1e-5)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == before
        print("ok", result.max_abs_error)
    """)
    assert out.startswith("ok")


def test_each_fallback_reason(caplog):
    """Plugin logic (the fallback paths): test backends that raise or are wrong."""
    out = _script("""
        import sys, warnings, torch; sys.path.insert(0, "examples")
        from torch._dynamo.backends.registry import register_backend
        from models import MLP, PointwiseChain
        from pytest_torchcompile import safe_compile

        @register_backend
        def off_by_one(gm, example_inputs):
            return lambda *a: tuple(o + 1 for o in gm(*a))

        model = MLP().eval()
        def relu_net(x):  # the test backend raises on torch.relu nodes
            return torch.relu(x) * 2
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            err = safe_compile(relu_net, [torch.randn(8)],
                               backend="relu_compile_error_TESTING_ONLY")
            wrong = safe_compile(model, [torch.randn(2, 128)], backend="off_by_one")
            slow = safe_compile(PointwiseChain(), [torch.randn(4096)], backend="eager",
                                benchmark=True, min_speedup=50.0)
        for r in (err, wrong, slow):
            assert r.fallback_used and not r.compiled and not r.validation_passed
            assert r.model in (model, relu_net) or r.model.__class__.__name__ == "PointwiseChain"
        assert "raised" in err.reason and "ReluCompileError" in err.reason
        assert "compiled output differs from eager" in wrong.reason
        assert wrong.max_abs_error is not None and wrong.max_abs_error >= 0.99
        assert "misses min_speedup=50" in slow.reason and slow.speedup is not None
        assert len([w for w in caught if "fell back to eager" in str(w.message)]) == 3
        print("ok")
    """)
    assert out.strip().endswith("ok")


def test_the_models_own_error_is_a_short_reason():
    """The model raises on the inputs it was given: no Hypothesis text, the user's line."""
    model = torch.nn.Linear(16, 4)
    with pytest.warns(RuntimeWarning, match="fell back to eager") as caught:
        result = safe_compile(model, [torch.randn(3, 17)], backend="eager")
    reason = result.reason or ""
    assert reason.startswith("compile_equivalent failed [mode=default, backend=eager")
    assert "eager raised RuntimeError: mat1 and mat2 shapes cannot be multiplied" in reason
    assert "example: inputs arg0: float32[3, 17]" in reason
    assert "Falsifying" not in reason and "Hypothesis" not in reason
    assert len(reason.splitlines()) <= 6, reason
    assert len(caught) == 1


def test_fallback_false_raises_with_the_result():
    with pytest.raises(CompileCheckError, match="safe_compile refused to compile") as info:
        safe_compile(
            lambda x: torch.relu(x) + 1,
            [torch.randn(3)],
            backend="relu_compile_error_TESTING_ONLY",
            fallback=False,
        )
    assert info.value.result.fallback_used is False and info.value.result.compiled is False


def test_settings_from_dict_and_bad_config():
    settings = CompileSettings.from_dict(
        {"backend": "eager", "fallback": False, "atol": 1e-4, "rtol": 1e-4}
    )
    result = safe_compile(lambda x: x.sin() * 2, [torch.randn(5)], settings=settings)
    assert result.compiled and result.backend == "eager"
    with pytest.raises(SettingsError, match="unknown settings key 'fallbak'"):
        CompileSettings.from_dict({"fallbak": True})
    with pytest.raises(SettingsError, match="not installed or not registered"):
        safe_compile(lambda x: x, [torch.randn(2)], backend="no_such_backend")


def test_fallback_logs_a_warning(caplog):
    with (
        caplog.at_level(logging.WARNING, logger="pytest_torchcompile"),
        pytest.warns(RuntimeWarning, match="fell back to eager"),
    ):
        safe_compile(
            lambda x: torch.relu(x).cos(),
            [torch.randn(3)],
            backend="relu_compile_error_TESTING_ONLY",
        )
    assert "fell back to eager" in caplog.text


def test_same_verdict_as_the_marker(suite):
    """One engine: a wrong backend fails the marker and makes safe_compile fall back."""
    suite.makepyfile(
        conftest="""
        from torch._dynamo.backends.registry import register_backend

        @register_backend
        def off_by_one(gm, example_inputs):
            return lambda *a: tuple(o + 1 for o in gm(*a))
    """,
        test_verdicts="""
        import torch
        from models import MLP
        from pytest_torchcompile import TensorSpec, compile_equivalent, safe_compile

        @compile_equivalent(inputs=[TensorSpec(2, 128)], backend="off_by_one")
        def test_marker_fails():
            return MLP().eval()

        @compile_equivalent(inputs=[TensorSpec(2, 128)], backend="inductor")
        def test_marker_passes():
            return MLP().eval()

        def test_library_agrees():
            x = torch.randn(2, 128)
            assert safe_compile(MLP().eval(), [x], backend="off_by_one").fallback_used
            assert safe_compile(MLP().eval(), [x], backend="inductor").validation_passed
    """,
    )
    from conftest import run

    result = run(suite)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED *test_marker_fails*"])
