"""``torchcompile-report``: merge the JSON reports of a sharded suite into one, and compare a
report with a baseline by the rules ``--compile-baseline`` applies, as text or markdown.

Torch-free (and pytest-free), so a CI step that only reads reports starts in milliseconds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import report, tables
from .errors import SettingsError

PROG = "torchcompile-report"
OK, REGRESSED, USAGE = 0, 1, 2  # exit statuses: 2 is argparse's own for usage errors


def build_parser() -> argparse.ArgumentParser:
    formats = argparse.ArgumentParser(add_help=False)
    formats.add_argument(
        "--format",
        choices=tables.FORMATS,
        default="text",
        help="text for a terminal, markdown for a CI job summary or a pull-request comment "
        "(default: text)",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Merge and compare the JSON reports written by pytest --compile-report.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    merge = commands.add_parser(
        "merge",
        parents=[formats],
        help="merge the reports of a suite's shards into one report",
        description="Merge the reports of a suite's shards into one report. Refuses reports "
        "of mixed format versions or torch releases, and a check found in two shards.",
    )
    merge.add_argument("reports", nargs="+", metavar="REPORT", help="a shard's report")
    merge.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="where to write the merged report"
    )
    compare = commands.add_parser(
        "compare",
        parents=[formats],
        help="compare a report with a baseline; exit 1 on a regression",
        description="Compare a report with a baseline by the rules of --compile-baseline: "
        "exit 1 on a regression (a pass that now fails, more graph breaks or recompiles, "
        "compile time grown past the tolerance, a speedup below the baseline's interval).",
    )
    compare.add_argument("baseline", metavar="BASELINE", help="the baseline's report")
    compare.add_argument("current", metavar="CURRENT", help="this run's report")
    compare.add_argument(
        "--tolerance",
        type=float,
        default=report.DEFAULT_TOLERANCE,
        metavar="FRACTION",
        help="compile-time growth tolerated, as --compile-baseline-tolerance "
        f"(default {report.DEFAULT_TOLERANCE:g})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """0: merged, or no regression; 1: a regression; 2: a usage error or an unusable report."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or argparse's own usage error
        return stop.code if isinstance(stop.code, int) else USAGE
    try:
        lines, status = _merge(args) if args.command == "merge" else _compare(args)
    except SettingsError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return USAGE
    print("\n".join(lines))
    return status


def _merge(args: argparse.Namespace) -> tuple[list[str], int]:
    shards = report.load_reports(args.reports)
    merged = report.merge_reports(shards)
    try:
        merged.write(args.output)
    except OSError as error:
        raise SettingsError(f"cannot write the merged report {args.output!r}: {error}") from None
    lines = tables.render_merge(shards, merged, args.format)
    return [*lines, "", f"merged report written to {args.output}"], OK


def _compare(args: argparse.Namespace) -> tuple[list[str], int]:
    tolerance = report.check_tolerance(args.tolerance, "--tolerance")
    baseline = report.load_report(args.baseline, "the baseline")
    current = report.load_report(args.current, "the report")
    result = report.compare_to_baseline(current.records, baseline.records, tolerance)
    was, now = baseline.environment.get("torch"), current.environment.get("torch")
    notes = [f"note: the baseline ran torch {was}, this report torch {now}"] if was != now else []
    lines = tables.render_comparison(result, args.format, notes)
    return lines, REGRESSED if result.regressions else OK
