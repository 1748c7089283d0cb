"""Compile health gates, the table, the JSON report, baselines, JUnit XML and xdist."""

import json

import pytest

from conftest import GRAPH_BREAK_LINE, run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SUITE = """
from models import MLP, GraphBreaker, ShapeBranch
from pytest_torchcompile import TensorSpec, compile_equivalent

@compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"batch": (2, 6)}, examples=3)
def test_mlp():
    return MLP().eval()

@compile_equivalent(inputs=[TensorSpec("batch", 16)], dims={"batch": (2, 6)}, examples=3,
                    max_graph_breaks=BREAKS)
def test_graph_breaker():
    return GraphBreaker().eval()

@compile_equivalent(inputs=[TensorSpec("batch", 8)], dims={"batch": (2, 5)}, examples=12,
                    dynamic=False, max_recompiles=RECOMPILES, seed=3)
def test_shape_branch():
    return ShapeBranch().eval()
"""


def test_gates_list_reasons_and_locations(suite):
    suite.makepyfile(test_health=SUITE.replace("BREAKS", "0").replace("RECOMPILES", "1"))
    result = run(suite, "-v")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "1 graph break(s), max_graph_breaks=0:",
            # torch 2.13 says "Unsupported Tensor.item() call with capture_scalar_outputs=
            # False: ...", torch 2.6 "Unsupported: Tensor.item"
            f"  *models.py:{GRAPH_BREAK_LINE}: Unsupported*Tensor.item*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "* recompile(s), max_recompiles=1:",
            "  forward (*models.py:*): *size mismatch at index 0*",
        ]
    )
    # -v: the table plus each break's reason
    result.stdout.fnmatch_lines(
        [
            "3 compile checks: 1 passed, 2 failed",
            "test * mode * check * outcome * compile s * graphs * breaks*",
            f"*graph break: *models.py:{GRAPH_BREAK_LINE}: Unsupported*Tensor.item*",
        ]
    )
    quiet = run(suite, "-q", "-k", "mlp")
    quiet.stdout.fnmatch_lines(["1 compile checks: 1 passed"])
    assert "graph break:" not in quiet.stdout.str()


def test_report_baseline_round_trip_and_junit(suite, tmp_path):
    """Save a report with loose limits; a run that breaks more graphs is a regression."""
    base = tmp_path / "base.json"
    suite.makepyfile(test_health=SUITE.replace("BREAKS", "5").replace("RECOMPILES", "20"))
    first = run(suite, f"--compile-report={base}", f"--junitxml={tmp_path / 'j.xml'}")
    first.assert_outcomes(passed=3)
    report = json.loads(base.read_text())
    assert report["format"] == "pytest-torchcompile-report" and report["version"] == 1
    assert report["environment"]["torch"].startswith("2.")
    records = {r["test_id"].split("::")[-1]: r for r in report["records"]}
    assert set(records) == {
        "test_mlp[default]",
        "test_graph_breaker[default]",
        "test_shape_branch[default]",
    }
    assert len(records["test_graph_breaker[default]"]["graph_breaks"]) == 1
    assert records["test_mlp[default]"]["compile_seconds"] > 0
    assert 'name="torchcompile"' in (tmp_path / "j.xml").read_text()

    # Compile time is not what this test is about: on a loaded machine a warm compile can
    # take 30% longer run to run (the tolerance rule has its own tests with planted times).
    loose = "--compile-baseline-tolerance=10"
    same = run(suite, f"--compile-baseline={base}", loose)
    same.assert_outcomes(passed=3)
    same.stdout.fnmatch_lines(["no regressions against the baseline"])
    assert same.ret == 0

    # The user's model gains a second graph break: the session fails with one line.
    suite.makepyfile(
        models=(suite.path / "models.py")
        .read_text()
        .replace(
            "        return self.b(h / (scale + 1.0))",
            "        h = self.b(h / (scale + 1.0))\n"
            "        print('debug', h.shape)\n"
            "        return h",
        )
    )
    worse = run(suite, f"--compile-baseline={base}", loose)
    worse.assert_outcomes(passed=3)
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.stdout.fnmatch_lines(
        [
            "REGRESSION *test_graph_breaker[[]default[]] [[]default, "
            "equivalent[]]: graph breaks grew from 1 to 2"
        ]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read compile report *"),
        ("{not json", "cannot read compile report *"),
        ('{"hello": 1}', "*is not a pytest-torchcompile report*"),
        (
            '{"format": "pytest-torchcompile-report", "version": 0, "records": []}',
            "*is report version 0; this plugin reads version 1: regenerate the baseline",
        ),
    ],
    ids=["missing", "unreadable", "not-a-report", "other-version"],
)
def test_a_bad_baseline_is_a_usage_error_before_any_test(suite, tmp_path, content, message):
    baseline = tmp_path / "baseline.json"
    if content is not None:
        baseline.write_text(content)
    suite.makepyfile("def test_plain(): raise SystemExit('a test ran')")
    result = run(suite, f"--compile-baseline={baseline}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "a test ran" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("tolerance", ["-1", "1e9"])
def test_an_absurd_baseline_tolerance_is_a_usage_error(pytester, tolerance):
    result = run(pytester, f"--compile-baseline-tolerance={tolerance}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --compile-baseline-tolerance must be a fraction *"])


def test_an_unwritable_report_is_reported_not_crashed(suite, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    suite.makepyfile("def test_plain(): pass")
    result = run(suite, f"--compile-report={blocker}/r.json")
    result.stdout.fnmatch_lines(["ERROR cannot write --compile-report *a-file/r.json*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_xdist_records_reach_the_controller(suite, tmp_path):
    report = tmp_path / "r.json"
    suite.makepyfile(test_health=SUITE.replace("BREAKS", "5").replace("RECOMPILES", "20"))
    result = run(suite, "-n", "2", f"--compile-report={report}")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["3 compile checks: 3 passed"])
    assert len(json.loads(report.read_text())["records"]) == 3


def test_cache_dir_defaults_under_pytest_cache_and_cold_is_fresh(suite, monkeypatch):
    """Inductor's cache goes to .pytest_cache; --compile-cold compiles in a fresh one."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    suite.makepyfile("""
        import os
        from models import MLP
        from pytest_torchcompile import TensorSpec, compile_equivalent

        @compile_equivalent(inputs=[TensorSpec(2, 128)], examples=1)
        def test_mlp():
            return MLP().eval()

        def test_where():
            print("CACHE", os.environ["TORCHINDUCTOR_CACHE_DIR"])
    """)
    default = suite.path / ".pytest_cache" / "d" / "torchcompile-inductor"
    cold = run(suite, "-s", "--compile-cold")
    cold.assert_outcomes(passed=2)
    cold.stdout.fnmatch_lines([f"*CACHE {default}"])
    assert default.is_dir() and not any(default.iterdir())  # cold checks left it untouched
    warm = run(suite)
    warm.assert_outcomes(passed=2)
    assert any(default.rglob("*.py"))  # this run compiled into the default cache


def test_unchanged_code_gives_the_same_counts_run_to_run(suite, tmp_path):
    """The examples derive from the test id and mode, so recompile counts (which depend on
    the sequence of drawn shapes) are the same on every run, and a baseline sees no
    regression; the records say whether each compile was cold or warm."""
    unseeded = SUITE.replace(", seed=3", "")
    suite.makepyfile(test_health=unseeded.replace("BREAKS", "None").replace("RECOMPILES", "None"))
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    run(suite, "-k", "shape_branch", f"--compile-report={first}").assert_outcomes(passed=1)
    again = run(
        suite,
        "-k",
        "shape_branch",
        f"--compile-report={second}",
        f"--compile-baseline={first}",
        "--compile-baseline-tolerance=10",  # counts, not compile times, are at stake here
    )
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["no regressions against the baseline"])
    counts = [
        [
            (r["graphs"], len(r["recompiles"]), r["compile_cache"])
            for r in json.loads(path.read_text())["records"]
        ]
        for path in (first, second)
    ]
    assert counts[0][0][:2] == counts[1][0][:2]
    assert counts[1][0][2] in ("warm", "mixed", "cold")
