"""What lives for the whole run: the plugin's state, and the controller that gathers every
check's record, prints the one table and writes the one report (never in xdist workers)."""

from __future__ import annotations

import dataclasses
import tempfile
from typing import Any

import pytest

from .records import PROPERTY_NAME, CheckRecord
from .settings import CompileSettings


@dataclasses.dataclass
class PluginState:
    modes: tuple[str, ...]
    settings: CompileSettings
    examples_override: int | None
    cold_root: str | None
    threads_override: int | None = None
    baseline: list[CheckRecord] | None = None  # read and validated at start-up
    records: list[CheckRecord] = dataclasses.field(default_factory=list)
    regressions: tuple[str, ...] = ()
    improvements: tuple[str, ...] = ()
    unmatched: int = 0  # checks that have no record in the baseline
    baseline_notes: tuple[str, ...] = ()
    report_error: str | None = None

    def cache_dir(self) -> str | None:
        return tempfile.mkdtemp(dir=self.cold_root) if self.cold_root else None


class Controller:
    """Lives in the controlling process only (not in xdist workers): collects every record
    from the test reports, prints the one table, writes the one report."""

    def __init__(self, config: pytest.Config, state: PluginState) -> None:
        self.config = config
        self.state = state
        self._seen: set[str] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        expected = hasattr(report, "wasxfail")  # the test says this check should fail
        for name, value in report.user_properties:
            if name == PROPERTY_NAME and isinstance(value, str) and value not in self._seen:
                self._seen.add(value)
                record = CheckRecord.from_json(value)
                if expected and record.outcome == "failed":
                    record = dataclasses.replace(record, outcome="xfailed")
                self.state.records.append(record)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from . import report

        config, state = self.config, self.state
        path = config.getoption("compile_report")
        if path:
            env = report.environment(state.modes, state.settings.backend)
            try:
                report.write_report(path, state.records, env)
            except OSError as error:
                state.report_error = f"cannot write --compile-report {path!r}: {error}"
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if state.baseline is None:
            return
        tolerance = config.getoption("compile_baseline_tolerance")
        result = report.compare_to_baseline(state.records, state.baseline, tolerance)
        state.regressions, state.improvements = result.regressions, result.improvements
        state.unmatched, state.baseline_notes = result.unmatched, result.notes
        if state.regressions and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from .report import render_table

        config, state, tr = self.config, self.state, terminalreporter
        if state.records:
            tr.write_sep("=", "torch.compile checks")
            for line in render_table(state.records, config.getoption("verbose")):
                tr.write_line(line)
        if config.getoption("compile_baseline"):
            tr.write_sep("=", "torch.compile baseline")
            for line in state.regressions:
                tr.write_line(f"REGRESSION {line}", red=True)
            for line in state.improvements:
                tr.write_line(f"improved   {line}", green=True)
            for line in state.baseline_notes:
                tr.write_line(f"note       {line}")
            if not state.regressions:
                tr.write_line("no regressions against the baseline")
            if state.unmatched:
                tr.write_line(f"{state.unmatched} check(s) have no record in the baseline")
        if state.report_error:
            tr.write_line(f"ERROR {state.report_error}", red=True)
        elif config.getoption("compile_report"):
            tr.write_line(f"compile report written to {config.getoption('compile_report')}")
