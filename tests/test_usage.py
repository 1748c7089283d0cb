"""What a user sees when setting the plugin up: options, markers, ids, and early errors.

These tests are about plugin logic; where one compiles, it says which backend and why.
"""

import pytest

from conftest import run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MLP_TEST = """
    from models import MLP
    from pytest_torchcompile import TensorSpec, compile_equivalent

    @compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"batch": (1, 8)}, examples=3)
    def test_mlp():
        return MLP().eval()
"""


def test_help_lists_options_in_one_group(pytester):
    result = pytester.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(
        [
            "torch.compile checks (pytest-torchcompile):",
            "*--compile-modes=MODES*",
            "*--compile-backend=NAME*",
            "*--compile-report=PATH*",
            "*--compile-baseline=PATH*",
            "*--compile-cold*",
        ]
    )


def test_markers_are_documented(pytester):
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.compile_equivalent(inputs=*",
            "@pytest.mark.compile_faster(min_speedup=*",
        ]
    )


def test_plugin_import_does_not_import_torch(pytester):
    pytester.makepyfile("""
        import sys
        def test_no_torch():
            assert "torch" not in sys.modules
    """)
    result = run(pytester)
    result.assert_outcomes(passed=1)


def test_runs_without_pytests_cache_provider(pytester, monkeypatch):
    """Inductor's cache then stays wherever torch puts it; nothing breaks."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    pytester.makepyfile("def test_x(): pass")
    result = run(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_unknown_mode_is_a_usage_error_listing_valid_modes(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = run(pytester, "--compile-modes=default,fastest")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown compile mode 'fastest'; valid modes: default, *"])


def test_unknown_backend_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = run(pytester, "--compile-backend=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown compile backend 'nope' (not installed or not regi*"])


def test_unknown_or_bad_marker_arguments_fail_collection_naming_them(suite):
    suite.makepyfile(
        test_typo="""
            from models import MLP
            from pytest_torchcompile import TensorSpec, compile_equivalent

            @compile_equivalent(inputs=[TensorSpec(4, 128)], exmaples=3)
            def test_typo():
                return MLP()
        """,
        test_negative="""
            from models import MLP
            from pytest_torchcompile import TensorSpec, compile_equivalent

            @compile_equivalent(inputs=[TensorSpec(4, 128)], rtol=-1, atol=0)
            def test_negative():
                return MLP()
        """,
    )
    result = run(suite)
    result.stdout.fnmatch_lines(
        [
            "test_negative.py::test_negative: rtol must be >= 0, got -1",
            "test_typo.py::test_typo: unknown @compile_equivalent argument 'exmaples'; "
            "allowed: *examples*",
        ]
    )
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the run


def test_a_test_that_returns_no_model_fails_saying_so(suite):
    suite.makepyfile("""
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec(4)])
        def test_forgot_return():
            pass

        @compile_equivalent()
        def test_no_inputs():
            return lambda x: x + 1
    """)
    result = run(suite)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*must return the model under test (an nn.Module or any callable) or (model, inputs); "
            "it returned None*",
            "*no inputs: give inputs=* (TensorSpecs or values), or return (model, inputs) from "
            "the test",
        ]
    )


def test_mode_matrix_ids_and_marker_restriction(suite):
    """Collection only: ids join the test's own ids; modes= intersects --compile-modes."""
    suite.makepyfile("""
        import pytest
        from models import MLP
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @pytest.mark.parametrize("width", [8, 16])
        @compile_equivalent(inputs=[TensorSpec(2, 128)])
        def test_matrix(width):
            return MLP()

        @compile_equivalent(inputs=[TensorSpec(2, 128)], modes=("max-autotune",))
        def test_only_autotune():
            return MLP()

        @compile_equivalent(inputs=[TensorSpec(2, 128)], modes=("reduce-overhead",))
        def test_disjoint():
            return MLP()
    """)
    result = run(suite, "--compile-modes=default,max-autotune", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "test_mode_matrix_ids_and_marker_restriction.py::test_matrix[default-8]",
            "test_mode_matrix_ids_and_marker_restriction.py::test_matrix[default-16]",
            "test_mode_matrix_ids_and_marker_restriction.py::test_matrix[max-autotune-8]",
            "test_mode_matrix_ids_and_marker_restriction.py::test_matrix[max-autotune-16]",
            "test_mode_matrix_ids_and_marker_restriction.py::test_only_autotune[max-autotune]",
            "test_mode_matrix_ids_and_marker_restriction.py::test_disjoint[no-mode]",
        ]
    )
    result = run(suite, "--compile-modes=default,max-autotune", "-k", "disjoint", "-rs")
    result.assert_outcomes(skipped=1)
    assert (
        "marker modes ['reduce-overhead'] do not intersect --compile-modes "
        "['default', 'max-autotune']: nothing to run"
    ) in result.stdout.str()


def test_missing_device_skips_with_reason(suite):
    suite.makepyfile("""
        from models import MLP
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec(2, 128)], device="cuda")
        def test_on_gpu():
            return MLP()
    """)
    result = run(suite, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*device 'cuda' is not available on this machine*"])


def test_fixture_and_compile_mode_parametrize_over_modes(suite):
    """Plugin logic (binding the fixture to the mode): the eager backend, no mode options."""
    suite.makepyfile("""
        import torch
        from hypothesis import strategies as st
        from models import TwoHeads
        from pytest_torchcompile import TensorSpec, compile_equivalent

        def test_mode_param(compile_mode):
            assert compile_mode == "default"

        def test_imperative(torchcompile):
            model = TwoHeads().eval()
            compiled = torchcompile.compile(model)
            x = torch.randn(3, 24)
            assert torch.allclose(compiled(x)["logits"], model(x)["logits"])
            record = torchcompile.assert_equivalent(model, [TensorSpec("b", 24)],
                                                    dims={"b": (2, 5)}, examples=4)
            assert record.outcome == "passed" and record.examples >= 1
            assert record.backend == "eager" and record.mode == "default"
            speed = torchcompile.assert_faster(model, [TensorSpec(64, 24)], min_speedup=0.1,
                                               threads=1, max_time=1.0)
            assert speed.check == "faster" and speed.speedup > 0.1 and speed.rounds >= 8

        drawn = []
        heads = TwoHeads().eval()

        @compile_equivalent(inputs=st.tuples(
            st.integers(1, 6).map(lambda n: torch.randn(n, 24)),
            st.sampled_from([0.5, 2.0])), examples=5)
        def test_strategy_inputs():
            def scaled(x, factor):
                drawn.append(x.shape[0])
                return heads(x)["logits"] * factor
            return scaled

        def test_strategy_drew_examples():
            assert len(drawn) >= 5 and set(drawn) <= set(range(1, 7))
    """)
    result = run(suite, "--compile-backend=eager", "-v", "-rs")
    if "inconclusive for min_speedup" in result.stdout.str():  # a busy machine: the timing
        result.assert_outcomes(passed=3, skipped=1)  # in test_imperative skipped, never passed
        return
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["*test_mode_param[[]default[]] PASSED*", "*test_imperative[[]default[]] PASSED*"]
    )


def test_examples_override_and_returned_inputs(suite):
    """(model, inputs) returned from the test; --compile-examples overrides examples=."""
    suite.makepyfile("""
        import pytest
        from models import MLP
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @pytest.fixture
        def features():
            return 128

        @compile_equivalent(dims={"batch": (1, 64)}, examples=50)
        def test_inputs_from_fixture(features):
            return MLP(features).eval(), [TensorSpec("batch", features)]
    """)
    result = run(suite, "--compile-examples=2", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_inputs_from_fixture*default*equivalent*passed*"])
    row = [line for line in result.stdout.lines if "equivalent  passed" in line][0]
    assert row.split()[8] in ("1", "2")  # the examples column: at most --compile-examples


def test_unknown_inductor_option_is_a_collection_error_with_a_suggestion(suite):
    suite.makepyfile(
        test_options="""
            from models import MLP
            from pytest_torchcompile import TensorSpec, compile_equivalent

            @compile_equivalent(inputs=[TensorSpec(2, 128)], options={"max_autotun": True})
            def test_typo():
                return MLP()
        """
    )
    result = run(suite)
    result.stdout.fnmatch_lines(
        [
            "test_options.py::test_typo: options: 'max_autotun' is not an inductor option; "
            "did you mean 'max_autotune'?"
        ]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_unknown_dims_name_is_a_collection_error(suite):
    suite.makepyfile(
        test_dims="""
            from models import MLP
            from pytest_torchcompile import TensorSpec, compile_equivalent

            @compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"btach": (1, 4)})
            def test_typo():
                return MLP()
        """
    )
    result = run(suite)
    result.stdout.fnmatch_lines(
        [
            "test_dims.py::test_typo: dims names 'btach' that no TensorSpec uses; "
            "symbolic dims in inputs: batch"
        ]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_an_inductor_mode_under_another_backend_is_a_skip_saying_the_fix(suite):
    """Plugin logic: the eager backend, which takes no inductor mode."""
    suite.makepyfile(
        test_backend="""
            from models import MLP
            from pytest_torchcompile import TensorSpec, compile_equivalent

            @compile_equivalent(inputs=[TensorSpec(2, 128)], backend="eager", examples=1)
            def test_eager_backend():
                return MLP().eval()
        """
    )
    result = run(suite, "--compile-modes=default,max-autotune", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED *mode 'max-autotune' configures inductor and cannot apply to backend "
            "'eager'; add modes=(\"default\",) to the marker to run it once"
        ]
    )


def test_a_plain_install_brings_pytest_benchmark():
    """Speed checks record through pytest-benchmark: a dependency, not an extra."""
    from importlib.metadata import requires

    needed = [r for r in requires("pytest-torchcompile") or [] if "extra ==" not in r]
    assert any(r.replace(" ", "").startswith("pytest-benchmark") for r in needed), needed
