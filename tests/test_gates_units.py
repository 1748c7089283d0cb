"""The pure parts of the gates and reports, without compiling anything: each gate fails
when its limit is passed and names the evidence; baselines see every kind of regression;
the table renders every outcome."""

import dataclasses

from pytest_torchcompile.compiling import CompileStats, GraphBreak, Recompile
from pytest_torchcompile.gates import health_failures
from pytest_torchcompile.records import CheckRecord
from pytest_torchcompile.report import compare_to_baseline
from pytest_torchcompile.settings import CompileSettings
from pytest_torchcompile.tables import render_table

STATS = CompileStats(
    graphs=2,
    graph_breaks=(GraphBreak("Tensor.item() call", "models.py:91"),),
    recompiles=(Recompile("forward (models.py:11)", "size mismatch at index 0"),) * 2,
    compile_seconds=3.5,
)


def test_each_health_gate_fails_past_its_limit_only():
    assert health_failures(STATS, CompileSettings()) == []
    at_limit = CompileSettings(max_graph_breaks=1, max_recompiles=2, max_compile_time=3.5)
    assert health_failures(STATS, at_limit) == []
    over = CompileSettings(max_graph_breaks=0, max_recompiles=1, max_compile_time=3.0)
    breaks, recompiles, seconds = health_failures(STATS, over)
    assert breaks.startswith("1 graph break(s), max_graph_breaks=0:")
    assert "models.py:91: Tensor.item() call" in breaks
    assert recompiles.startswith("2 recompile(s), max_recompiles=1:")
    assert "forward (models.py:11): size mismatch at index 0" in recompiles
    assert seconds == "first compile took 3.50 s, max_compile_time=3 s"


def _record(**changes) -> CheckRecord:
    base = CheckRecord(
        "t.py::test_x[default]",
        "equivalent",
        "default",
        "inductor",
        "cpu",
        "passed",
        compile_seconds=2.0,
        graphs=1,
    )
    return dataclasses.replace(base, **changes)


def test_baseline_sees_each_regression_and_improvement():
    was = _record(speedup=2.0, speedup_low=1.8, speedup_high=2.2)
    same = compare_to_baseline([was], [was], 0.25)
    assert same.regressions == () and same.improvements == () and same.unmatched == 0
    worse = _record(
        outcome="failed",
        graph_breaks=({"reason": "r", "location": "f.py:1"},),
        recompiles=("forward: guard",),
        compile_seconds=3.0,
        speedup=1.5,
    )
    found = compare_to_baseline([worse], [was], 0.25).regressions
    assert [line.split(": ", 1)[1] for line in found] == [
        "passed in the baseline, fails now",
        "graph breaks grew from 0 to 1",
        "recompiles grew from 0 to 1",
        "compile time grew from 2.00 s to 3.00 s (more than 25%)",
        "speedup 1.50x is below the baseline's interval [1.80, 2.20]",
    ]
    better = compare_to_baseline([was], [worse], 0.25)
    assert any("fell from 1 to 0" in line for line in better.improvements)
    # Small absolute growth on quick compiles is timer noise, not a regression.
    quick = compare_to_baseline([_record(compile_seconds=0.15)], [_record(compile_seconds=0.1)], 0)
    assert quick.regressions == ()
    new = compare_to_baseline([_record(test_id="t.py::test_new[default]")], [was], 0.25)
    assert new.unmatched == 1


def test_table_shows_every_outcome_and_quiet_keeps_failures():
    records = [
        _record(max_error=1e-7, examples=3),
        _record(test_id="t.py::test_y[default]", outcome="failed", message="boom"),
        _record(test_id="t.py::test_z[default]", outcome="skipped"),
        _record(test_id="t.py::test_w[default]", outcome="xfailed"),
    ]
    lines = render_table(records)
    assert lines[0] == "4 compile checks: 1 passed, 1 failed, 1 xfailed, 1 skipped"
    assert lines[1].split()[:4] == ["test", "mode", "check", "outcome"]
    assert any("test_y" in line and "failed" in line for line in lines)
    quiet = render_table(records, verbosity=-1)
    assert len(quiet) == 4 and "test_y" in quiet[3] and "test_x" not in "".join(quiet)
    verbose = render_table([_record(graph_breaks=({"reason": "r", "location": "f.py:1"},))], 1)
    assert "  graph break: f.py:1: r" in verbose


def test_compile_time_is_compared_only_between_like_cache_states():
    warm = _record(compile_seconds=0.1, compile_cache="warm")
    cold = _record(compile_seconds=3.7, compile_cache="cold")
    found = compare_to_baseline([cold], [warm], 0.25)
    assert found.regressions == ()
    assert found.notes == (
        "t.py::test_x[default] [default, equivalent]: compile time not comparable: the "
        "baseline compiled warm, this run cold",
    )
    slower = compare_to_baseline(
        [_record(compile_seconds=3.7, compile_cache="cold")],
        [_record(compile_seconds=1.0, compile_cache="cold")],
        0.25,
    )
    assert "compile time grew from 1.00 s to 3.70 s" in slower.regressions[0]


def test_a_skipped_timing_is_compared_with_nothing():
    """An inconclusive (contended) speed check carries no speedup to regress against."""
    was = _record(check="faster", speedup=2.0, speedup_low=1.8, speedup_high=2.2)
    skipped = _record(check="faster", outcome="skipped", speedup=15.0)
    assert compare_to_baseline([skipped], [was], 0.25).regressions == ()
    assert compare_to_baseline([was], [skipped], 0.25).regressions == ()
