"""Rendering: the terminal table of a run's checks, and the merge and baseline summaries of
``torchcompile-report``, as aligned text or markdown.

Torch-free, like ``report``: pure functions from records and report objects to lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .records import CheckRecord
from .report import OUTCOMES, BaselineComparison, MergedReport, Report

FORMATS = ("text", "markdown")


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], fmt: str = "text"
) -> list[str]:
    """Aligned columns for a terminal, or a pipe table for a CI summary or PR comment."""
    if fmt == "markdown":
        lines = ["| " + " | ".join(_md(cell) for cell in header) + " |"]
        lines.append("|" + "---|" * len(header))
        return lines + ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    table = [tuple(header), *map(tuple, rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for n, row in enumerate(table):
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _md(cell: str) -> str:
    """A pipe ends a markdown cell, even inside code, unless escaped."""
    return cell.replace("|", "\\|")


def _code(text: str, fmt: str) -> str:
    """Test ids hold brackets, stars and underscores: markdown shows them as code."""
    if fmt != "markdown" or not text or text == "-":
        return text
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def outcome_summary(records: Sequence[CheckRecord]) -> str:
    counts = {o: sum(r.outcome == o for r in records) for o in OUTCOMES}
    return f"{len(records)} compile checks: " + ", ".join(
        f"{n} {o}" for o, n in counts.items() if n
    )


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
    shown = [r for r in records if r.outcome == "failed"] if verbosity < 0 else list(records)
    lines = [outcome_summary(records)]
    if not shown:
        return lines
    lines += format_table(COLUMNS, table_rows(shown))
    if verbosity > 0:
        lines += [line for r in shown for line in _details(r)]
    return lines


def _details(r: CheckRecord) -> list[str]:
    lines = []
    for brk in r.graph_breaks:
        lines.append(f"  graph break: {brk.get('location') or '?'}: {brk.get('reason')}")
    lines += [f"  recompile: {reason}" for reason in r.recompiles]
    if r.package_bytes is not None:
        source = "loaded from the cache" if r.package_cached else "built"
        lines.append(f"  package: {r.package_bytes} B, {source}")
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


# -- torchcompile-report summaries -----------------------------------------------------------


def render_merge(reports: Sequence[Report], merged: MergedReport, fmt: str = "text") -> list[str]:
    """A short summary: counts by outcome, for every shard and in total."""
    header = ("report", "checks", *OUTCOMES)

    def row(name: str, records: Sequence[CheckRecord]) -> tuple[str, ...]:
        counts = [str(sum(r.outcome == o for r in records)) for o in OUTCOMES]
        return (name, str(len(records)), *counts)

    rows = [row(_code(r.path, fmt), r.records) for r in reports]
    rows.append(row("**total**" if fmt == "markdown" else "total", merged.records))
    title = f"{len(reports)} reports merged: {outcome_summary(merged.records)}"
    lines = [f"### {title}" if fmt == "markdown" else title]
    if merged.differing:
        lines.append(
            "environment differs between shards in: "
            + ", ".join(merged.differing)
            + ' (null in the merged report; each shard\'s under "shards")'
        )
    return [*lines, "", *format_table(header, rows, fmt)]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render_comparison(
    result: BaselineComparison, fmt: str = "text", notes: Sequence[str] = ()
) -> list[str]:
    """A table of regressions, improvements, notes, and new or missing checks; ``notes`` are
    lines about the two runs as wholes (e.g. different torch releases)."""
    kinds = ("regression", "improvement", "note")
    count = {k: sum(c.kind == k for c in result.changes) for k in kinds}
    title = (
        f"{_plural(count['regression'], 'regression')}, "
        f"{_plural(count['improvement'], 'improvement')}, "
        f"{_plural(len(result.new), 'new check')}, "
        f"{_plural(len(result.missing), 'missing check')} against the baseline"
    )
    lines = [f"### torch.compile: {title}" if fmt == "markdown" else title, *notes]
    changes = sorted(result.changes, key=lambda c: kinds.index(c.kind))
    rows = [(c.kind, _code(c.label, fmt), c.aspect, c.baseline, c.current) for c in changes]
    rows += [("new", _code(r.label, fmt), "no baseline record", "-", r.outcome) for r in result.new]
    rows += [
        ("missing", _code(r.label, fmt), "not in this report", r.outcome, "-")
        for r in result.missing
    ]
    if not rows:
        return [*lines, "", "every check matches its baseline record"]
    return [*lines, "", *format_table(("change", "check", "what", "baseline", "now"), rows, fmt)]
