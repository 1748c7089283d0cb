"""The JSON report (written, read back, merged) and the baseline comparison: what a run's
records become once the run is over. ``tables`` renders them.

Torch-free: torch is imported only to describe the environment when a report is written, so
the ``torchcompile-report`` CLI and the plugin share these rules and both start fast.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import SettingsError
from .records import CheckRecord

REPORT_FORMAT = "pytest-torchcompile-report"
REPORT_VERSION = 1
COMPILE_TIME_FLOOR = 0.2  # seconds of growth always tolerated: timer noise on quick compiles
DEFAULT_TOLERANCE = 0.25  # compile-time growth tolerated against a baseline
MAX_TOLERANCE = 10.0  # 1000% growth: past that no compile-time gate is left
OUTCOMES = ("passed", "failed", "xfailed", "skipped")


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


def write_report(
    path: str | Path,
    records: Sequence[CheckRecord],
    env: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Atomically: a crashed run never leaves a truncated report for the next baseline."""
    data = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
        "records": [r.to_dict() for r in records],
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


@dataclasses.dataclass(frozen=True)
class Report:
    """A report read back: its records, and what merging and comparing say about the run."""

    path: str
    created: str | None
    environment: dict[str, Any]
    records: tuple[CheckRecord, ...]


def load_report(path: str | Path, role: str = "the baseline") -> Report:
    """Read and validate one report; ``role`` says what to regenerate if it is too old."""
    data = _read_json(path)
    _check_version(path, data, f"regenerate {role}")
    return _parse_report(path, data)


def load_reports(paths: Sequence[str | Path]) -> list[Report]:
    """Reports of one suite's shards: all of one format version, named when they are not."""
    found = [(path, _read_json(path)) for path in paths]
    versions = {repr(data.get("version")) for _, data in found}
    if len(versions) > 1:
        each = ", ".join(f"{str(path)!r} is version {data.get('version')}" for path, data in found)
        raise SettingsError(
            f"reports of mixed format versions ({each}): rerun the shards with one plugin version"
        )
    for path, data in found:
        _check_version(path, data, "rerun the shards with this plugin version")
    return [_parse_report(path, data) for path, data in found]


def read_report(path: str | Path) -> list[CheckRecord]:
    return list(load_report(path).records)


def _read_json(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SettingsError(f"cannot read compile report {str(path)!r}: {error}") from error
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise SettingsError(
            f"{str(path)!r} is not a pytest-torchcompile report (written by --compile-report)"
        )
    return data


def _check_version(path: str | Path, data: dict[str, Any], remedy: str) -> None:
    if data.get("version") != REPORT_VERSION:
        raise SettingsError(
            f"{str(path)!r} is report version {data.get('version')}; this "
            f"plugin reads version {REPORT_VERSION}: {remedy}"
        )


def _parse_report(path: str | Path, data: dict[str, Any]) -> Report:
    rows = data.get("records")
    if not isinstance(rows, list):
        raise SettingsError(f"{str(path)!r} has no list of records: is it a complete report?")
    records = []
    for n, row in enumerate(rows):
        try:
            if not isinstance(row, dict):
                raise TypeError(f"a {type(row).__name__}, not an object")
            records.append(CheckRecord.from_dict(row))
        except (TypeError, ValueError) as error:
            raise SettingsError(
                f"{str(path)!r}: record {n} is not a check record: {error}"
            ) from None
    env = data.get("environment")
    return Report(
        str(path),
        data.get("created"),
        env if isinstance(env, dict) else {},
        tuple(records),
    )


# -- merging shards --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MergedReport:
    """Shards' records as one report. The environment keeps what the shards agree on; a list
    (modes, devices) is their union, a differing value is null, and ``shards`` keeps each
    shard's own environment so nothing is lost."""

    records: tuple[CheckRecord, ...]
    environment: dict[str, Any]
    shards: tuple[dict[str, Any], ...]
    differing: tuple[str, ...]  # environment fields the shards disagree on (null when merged)

    def write(self, path: str | Path) -> None:
        write_report(path, self.records, self.environment, {"shards": list(self.shards)})


def merge_reports(reports: Sequence[Report]) -> MergedReport:
    """Refuses a check found in two shards (two shards ran the same test, or one file was
    given twice) and shards of different torch releases (a baseline mixing them compares
    unlike with unlike); a check twice in one shard is kept, as the plugin wrote it."""
    owner: dict[str, str] = {}
    clashes: list[str] = []
    for report in reports:
        for key in dict.fromkeys(r.key for r in report.records):
            if key in owner:
                clashes.append(f"{key} is in {owner[key]!r} and {report.path!r}")
            owner.setdefault(key, report.path)
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise SettingsError(
            f"duplicate check: {clashes[0]}{more}: each check must run in one shard only"
        )
    releases = {
        str(r.environment["torch"]).split("+")[0] for r in reports if r.environment.get("torch")
    }
    if len(releases) > 1:
        each = ", ".join(f"{r.path!r} ran torch {r.environment.get('torch')}" for r in reports)
        raise SettingsError(
            f"shards ran different torch releases ({each}): merge the shards of one torch"
        )
    env: dict[str, Any] = {}
    differing = []
    for field in dict.fromkeys(f for r in reports for f in r.environment):
        values: list[Any] = [r.environment.get(field) for r in reports]
        if all(isinstance(v, list) for v in values):
            env[field] = []
            for item in (item for v in values for item in v):
                if item not in env[field]:
                    env[field].append(item)
        elif all(v == values[0] for v in values):
            env[field] = values[0]
        else:
            env[field] = None
            differing.append(field)
    shards = tuple(
        {
            "path": r.path,
            "created": r.created,
            "records": len(r.records),
            "environment": r.environment,
        }
        for r in reports
    )
    records = tuple(record for r in reports for record in r.records)
    return MergedReport(records, env, shards, tuple(differing))


# -- baseline --------------------------------------------------------------------------------


def check_tolerance(tolerance: float, option: str) -> float:
    """One validation for ``--compile-baseline-tolerance`` and the CLI's ``--tolerance``."""
    if not 0 <= tolerance <= MAX_TOLERANCE:
        raise SettingsError(
            f"{option} must be a fraction between 0 and {MAX_TOLERANCE:g} "
            f"({DEFAULT_TOLERANCE:g} tolerates {DEFAULT_TOLERANCE:.0%} compile-time growth), "
            f"got {tolerance:g}"
        )
    return tolerance


@dataclasses.dataclass(frozen=True)
class Change:
    """One way a check differs from its baseline record, with both values as evidence."""

    kind: str  # "regression", "improvement" or "note" (could not be compared)
    label: str  # the check, as messages name it
    aspect: str  # "outcome", "graph breaks", "recompiles", "compile time", "speedup"
    baseline: str
    current: str
    detail: str  # what happened, in a sentence

    @property
    def message(self) -> str:
        return f"{self.label}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class BaselineComparison:
    changes: tuple[Change, ...]
    new: tuple[CheckRecord, ...] = ()  # checks with no record in the baseline
    missing: tuple[CheckRecord, ...] = ()  # baseline records that no check matched

    def _messages(self, kind: str) -> tuple[str, ...]:
        return tuple(c.message for c in self.changes if c.kind == kind)

    @property
    def regressions(self) -> tuple[str, ...]:
        return self._messages("regression")

    @property
    def improvements(self) -> tuple[str, ...]:
        return self._messages("improvement")

    @property
    def notes(self) -> tuple[str, ...]:
        return self._messages("note")  # what could not be compared (e.g. cold against warm)

    @property
    def unmatched(self) -> int:
        return len(self.new)


def compare_to_baseline(
    current: Sequence[CheckRecord], baseline: Sequence[CheckRecord], tolerance: float
) -> BaselineComparison:
    """Match by test id, check and mode; worse is a regression, better is only reported.
    Compile times are compared only between records of the same cache state (a warm
    baseline against a cold run is noted as not comparable, never a regression)."""
    base = {r.key: r for r in baseline}
    changes: list[Change] = []
    for now in current:
        was = base.get(now.key)
        if was is not None:
            changes += _changes(was, now, tolerance)
    seen = {r.key for r in current}
    return BaselineComparison(
        tuple(changes),
        tuple(r for r in current if r.key not in base),
        tuple(r for r in baseline if r.key not in seen),
    )


def _changes(was: CheckRecord, now: CheckRecord, tolerance: float) -> list[Change]:
    found: list[Change] = []

    def add(kind: str, aspect: str, before: object, after: object, detail: str) -> None:
        found.append(Change(kind, now.label, aspect, str(before), str(after), detail))

    if was.outcome == "passed" and now.outcome == "failed":
        add("regression", "outcome", was.outcome, now.outcome, "passed in the baseline, fails now")
    elif was.outcome == "failed" and now.outcome == "passed":
        add(
            "improvement", "outcome", was.outcome, now.outcome, "failed in the baseline, passes now"
        )
    for aspect, a, b in (
        ("graph breaks", len(was.graph_breaks), len(now.graph_breaks)),
        ("recompiles", len(was.recompiles), len(now.recompiles)),
    ):
        if b > a:
            add("regression", aspect, a, b, f"{aspect} grew from {a} to {b}")
        elif b < a:
            add("improvement", aspect, a, b, f"{aspect} fell from {a} to {b}")
    before, after = was.compile_seconds, now.compile_seconds
    if was.compile_cache != now.compile_cache and after is not None:
        add(
            "note",
            "compile time",
            f"{_seconds(before)}, {was.compile_cache or 'no cache'}",
            f"{_seconds(after)}, {now.compile_cache or 'no cache'}",
            f"compile time not comparable: the baseline compiled "
            f"{was.compile_cache or 'without a cache'}, this run "
            f"{now.compile_cache or 'without a cache'}",
        )
    elif before and after is not None:
        shown = (_seconds(before), _seconds(after))
        if after > before * (1 + tolerance) and after - before > COMPILE_TIME_FLOOR:
            add(
                "regression",
                "compile time",
                *shown,
                f"compile time grew from {shown[0]} to {shown[1]} (more than {tolerance:.0%})",
            )
        elif after < before * (1 - tolerance):
            add(
                "improvement",
                "compile time",
                *shown,
                f"compile time fell from {shown[0]} to {shown[1]}",
            )
    decided = {"passed", "failed"}  # a skipped (inconclusive) timing compares with nothing
    if (
        now.outcome in decided
        and was.outcome in decided
        and now.speedup is not None
        and was.speedup_low is not None
        and was.speedup_high is not None
    ):
        interval = f"[{was.speedup_low:.2f}, {was.speedup_high:.2f}]"
        speed = f"{now.speedup:.2f}x"
        if now.speedup < was.speedup_low:
            add(
                "regression",
                "speedup",
                interval,
                speed,
                f"speedup {speed} is below the baseline's interval {interval}",
            )
        elif now.speedup > was.speedup_high:
            add(
                "improvement",
                "speedup",
                interval,
                speed,
                f"speedup {speed} is above the baseline's interval {interval}",
            )
    return found


def _seconds(value: float | None) -> str:
    """A compile time as the evidence shows it; ``-`` where the record has none."""
    return "- s" if value is None else f"{value:.2f} s"
