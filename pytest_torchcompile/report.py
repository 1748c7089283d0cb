"""Render records: the terminal table, the JSON report, and the baseline comparison.

Torch is imported only to describe the environment when a report is written.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import SettingsError
from .records import CheckRecord

REPORT_FORMAT = "pytest-torchcompile-report"
REPORT_VERSION = 1
COMPILE_TIME_FLOOR = 0.2  # seconds of growth always tolerated: timer noise on quick compiles


# -- terminal table --------------------------------------------------------------------------


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _speed(record: CheckRecord) -> str:
    if record.speedup is None:
        return "-"
    return f"{record.speedup:.2f}x [{record.speedup_low:.2f}, {record.speedup_high:.2f}]"


COLUMNS = (
    "test",
    "mode",
    "check",
    "outcome",
    "compile s",
    "graphs",
    "breaks",
    "recompiles",
    "examples",
    "max error",
    "speedup [95% CI]",
)


def table_rows(records: Iterable[CheckRecord]) -> list[tuple[str, ...]]:
    return [
        (
            r.test_id,
            r.mode,
            r.check,
            r.outcome,
            _num(r.compile_seconds, ".2f"),
            _num(r.graphs, "d"),
            str(len(r.graph_breaks)),
            str(len(r.recompiles)),
            _num(r.examples, "d"),
            _num(r.max_error, ".2g"),
            _speed(r),
        )
        for r in records
    ]


def render_table(records: Sequence[CheckRecord], verbosity: int = 0) -> list[str]:
    """One row per check; ``-q`` keeps only a count and failed rows, ``-v`` adds details."""
    outcomes = ("passed", "failed", "xfailed", "skipped")
    counts = {o: sum(r.outcome == o for r in records) for o in outcomes}
    summary = f"{len(records)} compile checks: " + ", ".join(
        f"{n} {o}" for o, n in counts.items() if n
    )
    shown = [r for r in records if r.outcome == "failed"] if verbosity < 0 else list(records)
    lines = [summary]
    if not shown:
        return lines
    rows = [COLUMNS, *table_rows(shown)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if verbosity > 0:
        lines += [line for r in shown for line in _details(r)]
    return lines


def _details(r: CheckRecord) -> list[str]:
    lines = []
    for brk in r.graph_breaks:
        lines.append(f"  graph break: {brk.get('location') or '?'}: {brk.get('reason')}")
    lines += [f"  recompile: {reason}" for reason in r.recompiles]
    if r.eager_median is not None:
        lines.append(
            f"  medians: eager {r.eager_median * 1e3:.3f} ms, compiled "
            f"{r.compiled_median * 1e3:.3f} ms over {r.rounds} rounds"  # type: ignore[operator]
        )
    if r.check == "faster":
        memory = (
            "not measured (CUDA only)"
            if r.eager_peak_memory is None
            else f"eager {r.eager_peak_memory} B, compiled {r.compiled_peak_memory} B"
        )
        lines.append(f"  peak memory: {memory}")
    if r.max_error is not None:
        lines.append(
            f"  greatest error {r.max_error:.3g} at {r.max_error_path} "
            f"(atol {r.atol}, rtol {r.rtol})"
        )
    return [f"{r.label}:", *lines] if lines else []


# -- JSON report -----------------------------------------------------------------------------


def environment(modes: Sequence[str], backend: str) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "devices": ["cpu"]
        + [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count() if cuda else 0)],
        "torch_threads": torch.get_num_threads(),
        "modes": list(modes),
        "backend": backend,
    }


def write_report(path: str | Path, records: Sequence[CheckRecord], env: dict[str, Any]) -> None:
    data = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
        "records": [r.to_dict() for r in records],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_report(path: str | Path) -> list[CheckRecord]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SettingsError(f"cannot read compile report {str(path)!r}: {error}") from error
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise SettingsError(
            f"{str(path)!r} is not a pytest-torchcompile report (written by --compile-report)"
        )
    if data.get("version") != REPORT_VERSION:
        raise SettingsError(
            f"{str(path)!r} is report version {data.get('version')}; this "
            f"plugin reads version {REPORT_VERSION}: regenerate the baseline"
        )
    return [CheckRecord.from_dict(r) for r in data["records"]]


# -- baseline --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BaselineComparison:
    regressions: tuple[str, ...]
    improvements: tuple[str, ...]
    unmatched: int
    notes: tuple[str, ...] = ()  # what could not be compared (e.g. cold against warm)


def compare_to_baseline(
    current: Sequence[CheckRecord], baseline: Sequence[CheckRecord], tolerance: float
) -> BaselineComparison:
    """Match by test id, check and mode; worse is a regression, better is only reported.
    Compile times are compared only between records of the same cache state (a warm
    baseline against a cold run is noted as not comparable, never a regression)."""
    base = {r.key: r for r in baseline}
    worse: list[str] = []
    better: list[str] = []
    notes: list[str] = []
    unmatched = 0
    for now in current:
        was = base.get(now.key)
        if was is None:
            unmatched += 1
            continue
        name = now.label
        if was.outcome == "passed" and now.outcome == "failed":
            worse.append(f"{name}: passed in the baseline, fails now")
        elif was.outcome == "failed" and now.outcome == "passed":
            better.append(f"{name}: failed in the baseline, passes now")
        for label, a, b in (
            ("graph breaks", len(was.graph_breaks), len(now.graph_breaks)),
            ("recompiles", len(was.recompiles), len(now.recompiles)),
        ):
            if b > a:
                worse.append(f"{name}: {label} grew from {a} to {b}")
            elif b < a:
                better.append(f"{name}: {label} fell from {a} to {b}")
        if was.compile_cache != now.compile_cache and now.compile_seconds is not None:
            notes.append(
                f"{name}: compile time not comparable: the baseline compiled "
                f"{was.compile_cache or 'without a cache'}, this run "
                f"{now.compile_cache or 'without a cache'}"
            )
        elif was.compile_seconds and now.compile_seconds is not None:
            grown = now.compile_seconds - was.compile_seconds
            if now.compile_seconds > was.compile_seconds * (1 + tolerance) and (
                grown > COMPILE_TIME_FLOOR
            ):
                worse.append(
                    f"{name}: compile time grew from {was.compile_seconds:.2f} s to "
                    f"{now.compile_seconds:.2f} s (more than {tolerance:.0%})"
                )
            elif now.compile_seconds < was.compile_seconds * (1 - tolerance):
                better.append(
                    f"{name}: compile time fell from {was.compile_seconds:.2f} s "
                    f"to {now.compile_seconds:.2f} s"
                )
        decided = {"passed", "failed"}  # a skipped (inconclusive) timing compares with nothing
        if (
            now.outcome in decided
            and was.outcome in decided
            and now.speedup is not None
            and was.speedup_low is not None
            and was.speedup_high is not None
        ):
            if now.speedup < was.speedup_low:
                worse.append(
                    f"{name}: speedup {now.speedup:.2f}x is below the baseline's interval "
                    f"[{was.speedup_low:.2f}, {was.speedup_high:.2f}]"
                )
            elif now.speedup > was.speedup_high:
                better.append(
                    f"{name}: speedup {now.speedup:.2f}x is above the baseline's "
                    f"interval [{was.speedup_low:.2f}, {was.speedup_high:.2f}]"
                )
    return BaselineComparison(tuple(worse), tuple(better), unmatched, tuple(notes))
