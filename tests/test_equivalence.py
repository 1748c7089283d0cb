"""compile_equivalent end to end with the real inductor backend, and the failure paths."""

import pytest

from conftest import run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PERTURBING_BACKEND = """
import hypothesis
import torch
from torch._dynamo.backends.registry import register_backend


@register_backend
def perturb_from_7(gm, example_inputs):
    '''Plugin-logic test double: eager, but wrong whenever the batch is 7 or more.'''
    def run(*args):
        out = gm(*args)
        if out[0].shape[0] >= 7:
            return type(out)(o + 0.01 for o in out)
        return out
    return run


@register_backend
def broken_backend(gm, example_inputs):
    raise RuntimeError("codegen exploded: unsupported op in this test backend")
"""


def test_real_models_pass_under_inductor_in_two_modes(suite):
    """MLP, conv+BatchNorm with grad, dict outputs, token ids: the examples suite."""
    suite.makepyfile(
        test_models="""
        import pytest, torch
        from models import MLP, ConvNet, TinyLM, TwoHeads
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"batch": (1, 32)},
                            examples=6)
        def test_mlp():
            return MLP().eval()

        @compile_equivalent(inputs=[TensorSpec("batch", 3, 8, 8)], dims={"batch": (2, 4)},
                            grad=True, examples=3, modes=("default",))
        def test_convnet_train_mode_with_grad():
            return ConvNet().train()

        @compile_equivalent(inputs=[TensorSpec("batch", 24)], dims={"batch": (2, 9)},
                            examples=4, modes=("default",))
        def test_dict_outputs():
            return TwoHeads().eval()

        @pytest.mark.compile_equivalent(
            inputs={"input_ids": TensorSpec("batch", "seq", dtype=torch.long, high=100)},
            dims={"batch": (1, 3), "seq": (2, 16)}, examples=4, dynamic=True,
            modes=("default",))
        def test_token_ids(vocab):
            return TinyLM(vocab).train()  # dropout on: fallback_random makes it comparable

        @pytest.fixture
        def vocab():
            return 100
    """
    )
    result = run(suite, "--compile-modes=default,max-autotune-no-cudagraphs", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*test_mlp[[]default[]] PASSED*",
            "*test_mlp[[]max-autotune-no-cudagraphs[]] PASSED*",
            "*test_convnet_train_mode_with_grad[[]default[]] PASSED*",
            "*test_token_ids[[]default[]] PASSED*",
            "*= torch.compile checks =*",
            "5 compile checks: 5 passed",
        ]
    )


def test_a_wrong_compiled_result_is_caught_and_shrunk(suite):
    """A custom backend is wrong for batch >= 7: the failure names batch=7 exactly."""
    suite.makepyfile(
        # This test is about the example database, which Hypothesis's "ci" profile (loaded
        # when CI=true) turns off: load the default profile, as a user would to keep it.
        conftest=PERTURBING_BACKEND + "\nhypothesis.settings.load_profile('default')\n",
        test_wrong="""
        from models import MLP
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"batch": (1, 64)},
                            backend="perturb_from_7", examples=30)
        def test_mlp():
            return MLP().eval()
    """,
    )
    result = run(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "compile_equivalent failed [[]mode=default, backend=perturb_from_7, device=cpu[]]",
            "compiled output differs from eager",
            "smallest failing example: batch=7; inputs arg0: float32[[]7, 128[]]",
            "out: 70 of 70 elements differ (100%)",
            "  greatest absolute difference 0.01 at index *",
            "  fp64 judgement: RMSE(compiled, fp64)=0.01 exceeds 3 x RMSE(eager, fp64)=* "
            "(fewer than 1000 elements) + tol/10 *",
            "rebuild these inputs: InputPlan(inputs, dims).materialize({'batch': 7}, seed=*",
        ]
    )
    # By default the examples derive from the test id: no database, the same run again.
    assert not (suite.path / ".hypothesis" / "examples").exists()
    # Exploring draws afresh and saves the shrunk example under this test's key: the rerun
    # replays it.
    explored = run(suite, "--compile-explore")
    explored.stdout.fnmatch_lines(["smallest failing example: batch=7; *"])
    assert list((suite.path / ".hypothesis" / "examples").iterdir())
    again = run(suite, "--compile-explore")
    again.stdout.fnmatch_lines(["smallest failing example: batch=7; *"])


def test_past_the_recompile_limit_the_check_fails(suite):
    """Plugin logic (detecting the eager fallback), so the eager backend: static shapes and
    a dim drawn from 12 sizes make Dynamo recompile until it would give up."""
    suite.makepyfile("""
        from models import MLP
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"batch": (1, 12)},
                            dynamic=False, examples=40, seed=0)
        def test_static_shapes():
            return MLP().eval()
    """)
    result = run(suite, "--compile-backend=eager")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "Dynamo hit its recompile limit (8) and would have fallen back to eager; *",
            "  forward (*models.py:*): 0/*: tensor '*x*' size mismatch at index 0*",  # 2.6: L['x']
            "Mark the varying dims dynamic *",
            "first seen on example *",
        ]
    )


def test_a_compile_error_is_short_and_points_at_the_cause(suite):
    suite.makepyfile(
        conftest=PERTURBING_BACKEND,
        test_broken="""
        from models import MLP
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec(2, 128)], backend="broken_backend")
        def test_mlp():
            return MLP().eval()
    """,
    )
    result = run(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "compiling with mode=default, backend=broken_backend raised "
            "torch._dynamo.exc.BackendCompilerFailed:",
            "*codegen exploded: unsupported op in this test backend*",
            "(full traceback with --tb=long)",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    long = run(suite, "--tb=long")
    assert "Traceback" in long.stdout.str() or "raise RuntimeError" in long.stdout.str()


def test_no_graph_means_no_pass(suite):
    """A model with no tensor ops gives Dynamo nothing to compile: never a silent pass."""
    suite.makepyfile("""
        from pytest_torchcompile import compile_equivalent

        def identity(x):
            return x

        @compile_equivalent(inputs=[3])
        def test_nothing_to_compile():
            return identity
    """)
    result = run(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["Dynamo captured no graph: the model ran entirely in eager*"])
