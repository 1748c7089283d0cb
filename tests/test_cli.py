"""``torchcompile-report merge`` and ``compare`` on hand-built reports: what a CI step prints
and exits with, and that the command starts without torch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_torchcompile.cli import main
from pytest_torchcompile.report import load_report

ENV = {
    "python": "3.11.7",
    "platform": "Linux",
    "torch": "2.13.0+cpu",
    "cuda": None,
    "devices": ["cpu"],
    "torch_threads": 2,
    "modes": ["default"],
    "backend": "inductor",
}


def record(name: str, outcome: str = "passed", **fields) -> dict:
    return {
        "test_id": f"tests/test_m.py::{name}[default]",
        "check": "equivalent",
        "mode": "default",
        "backend": "inductor",
        "device": "cpu",
        "outcome": outcome,
        "compile_seconds": 2.0,
        "compile_cache": "warm",
        "graphs": 1,
        **fields,
    }


def write(path: Path, records: list[dict], version: int = 1, **env) -> str:
    data = {
        "format": "pytest-torchcompile-report",
        "version": version,
        "created": "2026-11-26T10:00:00+00:00",
        "environment": {**ENV, **env},
        "records": records,
    }
    path.write_text(json.dumps(data))
    return str(path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_merge_writes_one_report_and_counts_outcomes(tmp_path, capsys):
    a = write(tmp_path / "a.json", [record("test_a"), record("test_b", "failed")])
    b = write(
        tmp_path / "b.json",
        [record("test_c", "skipped"), record("test_d", "xfailed")],
        modes=["max-autotune"],
        torch_threads=4,
    )
    out_path = tmp_path / "out" / "merged.json"
    status, out, err = run(capsys, "merge", a, b, "-o", str(out_path))
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == (
        "2 reports merged: 4 compile checks: 1 passed, 1 failed, 1 xfailed, 1 skipped"
    )
    assert "environment differs between shards in: torch_threads" in out
    assert any(line.split() == ["total", "4", "1", "1", "1", "1"] for line in out.splitlines())
    merged = load_report(out_path)  # what --compile-baseline and compare read
    assert [r.test_id.split("::")[1] for r in merged.records] == [
        "test_a[default]",
        "test_b[default]",
        "test_c[default]",
        "test_d[default]",
    ]
    assert merged.environment["torch"] == "2.13.0+cpu"
    assert merged.environment["modes"] == ["default", "max-autotune"]  # a union
    assert merged.environment["torch_threads"] is None  # shards disagree: see "shards"
    shards = json.loads(out_path.read_text())["shards"]
    assert [(s["path"], s["records"], s["environment"]["torch_threads"]) for s in shards] == [
        (a, 2, 2),
        (b, 2, 4),
    ]


def test_merge_summary_in_markdown(tmp_path, capsys):
    a = write(tmp_path / "a.json", [record("test_a")])
    b = write(tmp_path / "b.json", [record("test_b", "failed")])
    status, out, _ = run(capsys, "merge", a, b, "-o", str(tmp_path / "m.json"), "--format=markdown")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "### 2 reports merged: 2 compile checks: 1 passed, 1 failed"
    assert "| report | checks | passed | failed | xfailed | skipped |" in lines
    assert f"| `{a}` | 1 | 1 | 0 | 0 | 0 |" in lines
    assert "| **total** | 2 | 1 | 1 | 0 | 0 |" in lines


def test_merge_refuses_a_check_in_two_shards(tmp_path, capsys):
    a = write(tmp_path / "a.json", [record("test_a"), record("test_b")])
    b = write(tmp_path / "b.json", [record("test_a"), record("test_b")])
    out_path = tmp_path / "m.json"
    status, out, err = run(capsys, "merge", a, b, "-o", str(out_path))
    assert status == 2 and out == "" and not out_path.exists()
    assert err == (
        f"torchcompile-report: error: duplicate check: tests/test_m.py::test_a[default]::"
        f"equivalent::default is in {a!r} and {b!r} (and 1 more): each check must run in one "
        "shard only\n"
    )
    # The same check twice in one shard is as the plugin wrote it (a fixture used twice).
    twice = write(tmp_path / "twice.json", [record("test_a"), record("test_a", "failed")])
    assert run(capsys, "merge", twice, "-o", str(out_path))[0] == 0


def test_merge_refuses_mixed_format_versions(tmp_path, capsys):
    a = write(tmp_path / "a.json", [record("test_a")])
    b = write(tmp_path / "b.json", [record("test_b")], version=2)
    status, out, err = run(capsys, "merge", a, b, "-o", str(tmp_path / "m.json"))
    assert status == 2 and out == ""
    assert err == (
        f"torchcompile-report: error: reports of mixed format versions ({a!r} is version 1, "
        f"{b!r} is version 2): rerun the shards with one plugin version\n"
    )
    old = [write(tmp_path / f"{n}.json", [], version=0) for n in "cd"]
    status, _, err = run(capsys, "merge", *old, "-o", str(tmp_path / "m.json"))
    assert status == 2
    assert "is report version 0; this plugin reads version 1: rerun the shards" in err


def test_merge_refuses_shards_of_different_torch_releases(tmp_path, capsys):
    a = write(tmp_path / "a.json", [record("test_a")])
    cuda = write(tmp_path / "cuda.json", [record("test_b")], torch="2.13.0+cu128")
    status, out, _ = run(capsys, "merge", a, cuda, "-o", str(tmp_path / "m.json"))
    assert status == 0  # one release, two builds (a CPU shard and a GPU shard)
    assert "environment differs between shards in: torch" in out
    newer = write(tmp_path / "newer.json", [record("test_c")], torch="2.14.1+cpu")
    status, _, err = run(capsys, "merge", a, newer, "-o", str(tmp_path / "m.json"))
    assert status == 2
    assert "shards ran different torch releases" in err and "2.14.1+cpu" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read compile report {path!r}: [Errno 2] No such file or directory"),
        ("{not json", "cannot read compile report {path!r}: Expecting property name"),
        ('{"hello": 1}', "{path!r} is not a pytest-torchcompile report"),
        (
            '{"format": "pytest-torchcompile-report", "version": 1, "records": [{"mode": "x"}]}',
            "{path!r}: record 0 is not a check record",
        ),
    ],
    ids=["missing", "bad-json", "not-a-report", "bad-record"],
)
def test_an_unusable_file_is_named_in_one_line(tmp_path, capsys, content, message):
    good = write(tmp_path / "good.json", [record("test_a")])
    path = tmp_path / "shard.json"
    if content is not None:
        path.write_text(content)
    for argv in (
        ["merge", good, str(path), "-o", str(tmp_path / "m.json")],
        ["compare", good, str(path)],
    ):
        status, out, err = run(capsys, *argv)
        assert status == 2 and out == ""
        assert err.startswith("torchcompile-report: error: " + message.format(path=str(path)))
        assert err.count("\n") == 1


def test_compare_a_regression_exits_1_with_a_markdown_table(tmp_path, capsys):
    base = write(tmp_path / "base.json", [record("test_a"), record("test_b")])
    now = write(
        tmp_path / "now.json",
        [
            record("test_a", graph_breaks=[{"reason": "r", "location": "m.py:3"}]),
            record("test_b", "failed", compile_seconds=3.0),
        ],
    )
    status, out, err = run(capsys, "compare", base, now, "--format=markdown")
    assert (status, err) == (1, "")
    lines = out.splitlines()
    assert lines[0] == (
        "### torch.compile: 3 regressions, 0 improvements, 0 new checks, 0 missing checks "
        "against the baseline"
    )
    assert lines[2:] == [
        "| change | check | what | baseline | now |",
        "|---|---|---|---|---|",
        "| regression | `tests/test_m.py::test_a[default] [default, equivalent]` | graph breaks "
        "| 0 | 1 |",
        "| regression | `tests/test_m.py::test_b[default] [default, equivalent]` | outcome "
        "| passed | failed |",
        "| regression | `tests/test_m.py::test_b[default] [default, equivalent]` | compile time "
        "| 2.00 s | 3.00 s |",
    ]
    # --tolerance mirrors --compile-baseline-tolerance: 60% growth tolerated, 50% grew.
    status, out, _ = run(capsys, "compare", base, now, "--tolerance=0.6")
    assert status == 1 and "compile time" not in out
    status, _, err = run(capsys, "compare", base, now, "--tolerance=11")
    assert status == 2
    assert err.startswith("torchcompile-report: error: --tolerance must be a fraction between")


def test_compare_an_improvement_exits_0(tmp_path, capsys):
    base = write(tmp_path / "base.json", [record("test_a", "failed", recompiles=["f: guard"])])
    now = write(tmp_path / "now.json", [record("test_a")])
    status, out, _ = run(capsys, "compare", base, now)
    assert status == 0
    rows = [line.split() for line in out.splitlines()[4:]]
    assert rows[0][0] == "improvement" and rows[0][-3:] == ["outcome", "failed", "passed"]
    assert rows[1][0] == "improvement" and rows[1][-3:] == ["recompiles", "1", "0"]
    assert out.splitlines()[0].startswith("0 regressions, 2 improvements,")


def test_compare_lists_new_and_missing_checks_and_notes(tmp_path, capsys):
    base = write(tmp_path / "base.json", [record("test_a"), record("test_gone", "failed")])
    now = write(
        tmp_path / "now.json",
        [record("test_a", compile_cache="cold", compile_seconds=9.0), record("test_new")],
        torch="2.14.1+cpu",
    )
    status, out, _ = run(capsys, "compare", base, now)
    assert status == 0  # neither a new nor a missing check is a regression
    lines = out.splitlines()
    assert lines[0] == (
        "0 regressions, 0 improvements, 1 new check, 1 missing check against the baseline"
    )
    assert lines[1] == "note: the baseline ran torch 2.13.0+cpu, this report torch 2.14.1+cpu"
    rows = {line.split()[0]: line for line in lines[5:]}
    assert "test_a[default]" in rows["note"] and "2.00 s, warm" in rows["note"]
    assert "test_new[default]" in rows["new"] and rows["new"].split()[-1] == "passed"
    assert "test_gone[default]" in rows["missing"] and "failed" in rows["missing"]


def test_compare_of_identical_reports_says_so(tmp_path, capsys):
    base = write(tmp_path / "base.json", [record("test_a")])
    status, out, _ = run(capsys, "compare", base, base)
    assert status == 0
    assert out.splitlines()[-1] == "every check matches its baseline record"


def test_usage_errors_exit_2(capsys):
    assert main(["merge", "a.json"]) == 2  # -o is required
    assert main(["compare", "a.json", "b.json", "--format=html"]) == 2
    assert main([]) == 2
    assert "usage: torchcompile-report" in capsys.readouterr().err


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


def test_the_cli_does_not_import_torch(tmp_path):
    base = write(tmp_path / "base.json", [record("test_a")])
    code = (
        "import sys\n"
        "import pytest_torchcompile.cli\n"
        "assert 'torch' not in sys.modules, 'import pytest_torchcompile.cli imported torch'\n"
        f"assert pytest_torchcompile.cli.main(['compare', {base!r}, {base!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'compare imported torch'\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr


def test_the_console_script_and_python_m_are_installed():
    bin_dir = os.path.dirname(sys.executable)
    script = shutil.which("torchcompile-report", path=bin_dir + os.pathsep + os.environ["PATH"])
    assert script, "torchcompile-report is not installed: run pip install -e ."
    for command in ([script, "--help"], [sys.executable, "-m", "pytest_torchcompile", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: torchcompile-report")
        assert "merge" in result.stdout and "compare" in result.stdout
