"""What lives for the whole run: the plugin's state; the controller that gathers every
check's record, prints the one table and writes the one report (never in xdist workers);
each worker's side (its own device, its cache artifacts handed to the controller)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest

from .records import PROPERTY_NAME, CheckRecord
from .settings import CompileSettings

if TYPE_CHECKING:  # both import torch: loaded only when their options are given
    from .artifacts import ArtifactStore
    from .devices import DevicePlan

ARTIFACTS_KEY = "torchcompile_cache_artifacts"  # a worker's artifacts, in its workeroutput
DEVICES_KEY = "torchcompile_devices"  # the controller's device list, in each workerinput


@dataclasses.dataclass
class PluginState:
    modes: tuple[str, ...]
    settings: CompileSettings
    examples_override: int | None
    cold_root: str | None
    threads_override: int | None = None
    diagnose_override: bool = False  # --compile-diagnose given: it beats markers' diagnose=
    baseline: list[CheckRecord] | None = None  # read and validated at start-up
    records: list[CheckRecord] = dataclasses.field(default_factory=list)
    regressions: tuple[str, ...] = ()
    improvements: tuple[str, ...] = ()
    unmatched: int = 0  # checks that have no record in the baseline
    baseline_notes: tuple[str, ...] = ()
    report_error: str | None = None
    worker: str | None = None  # this xdist worker's id ("gw0"); None outside workers
    devices: DevicePlan | None = None  # --compile-devices: which worker owns which device
    device: str | None = None  # the device this process owns under --compile-devices
    artifacts_path: str | None = None  # --compile-cache-artifacts
    artifacts: ArtifactStore | None = None  # opened at session start

    def cache_dir(self) -> str | None:
        return tempfile.mkdtemp(dir=self.cold_root) if self.cold_root else None


def setup_run(config: pytest.Config, state: PluginState) -> None:
    """Settle this process's device and the cache-artifacts path, before any test (in a
    worker, before it touches CUDA). Raises ``SettingsError`` for a bad device list."""
    workerinput = getattr(config, "workerinput", None)
    state.worker = workerinput["workerid"] if workerinput is not None else None
    path = config.getoption("compile_cache_artifacts") or config.getini("compile_cache_artifacts")
    state.artifacts_path = os.path.abspath(path) if path else None
    text = config.getoption("compile_devices") or config.getini("compile_devices")
    if not text:
        return
    from .devices import DevicePlan, parse_devices, use_device, worker_index

    if workerinput is not None and state.worker is not None:
        listed = workerinput.get(DEVICES_KEY)  # the controller's, resolved once
        devices = tuple(listed) if listed is not None else parse_devices(text)
        state.devices = DevicePlan(devices, int(workerinput.get("workercount", 1)))
        state.device = state.devices.device_of(worker_index(state.worker))
    else:
        state.devices = DevicePlan(parse_devices(text), xdist_workers(config))
        if state.devices.workers == 0:
            state.device = state.devices.device_of(0)
        elif state.devices.devices and not state.devices.exclusive:
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(
                    f"--compile-devices: {state.devices.workers} xdist workers share "
                    f"{len(state.devices.devices)} device(s) round robin, so speed checks "
                    f"skip; use -n {len(state.devices.devices)} (or -n auto) to time on them"
                ),
                stacklevel=2,
            )
    if state.device is not None:
        use_device(state.device)


def xdist_workers(config: pytest.Config) -> int:
    """How many xdist workers this run starts (0: none), as xdist counts its ``--tx``."""
    if config.getoption("dist", "no") == "no":
        return 0
    count = 0
    for spec in config.getoption("tx", None) or ():
        times, star, _ = str(spec).partition("*")
        count += int(times) if star and times.isdigit() else 1
    return count


XDIST_CPU_SKIP = (
    "speed not measured under pytest-xdist: workers compete for the same cores, so timings "
    "are not trustworthy; run speed tests without -n, or on GPUs with one per worker "
    "(--compile-devices)"
)


def xdist_timing_skip(state: PluginState, device: str) -> str | None:
    """Why a speed check on ``device`` cannot be timed in this xdist worker, if it cannot:
    only a worker that owns its GPU alone times, and only on that GPU."""
    if state.worker is None:
        return None
    kind, _, index = device.partition(":")
    plan = state.devices
    if kind != "cuda" or state.device is None or plan is None:
        return XDIST_CPU_SKIP
    if not plan.exclusive:
        return (
            f"speed not measured: {plan.workers} xdist workers share {len(plan.devices)} "
            f"GPU(s) (--compile-devices), so timings are not trustworthy; use -n "
            f"{len(plan.devices)} or fewer to time on them"
        )
    if index and device != state.device:
        return (
            f"speed not measured: {device} is another worker's device under "
            f"--compile-devices; device='cuda' times on this worker's own ({state.device})"
        )
    return None


def cache_summary(records: Iterable[CheckRecord]) -> str | None:
    """The session's compile-cache lookups, from every check's record (workers' too)."""
    totals: Counter[str] = Counter()
    for record in records:
        totals.update(record.cache_counts or {})
    hits = totals["fxgraph_hit"] + totals["autograd_hit"]
    looked = hits + totals["fxgraph_miss"] + totals["autograd_miss"]
    if not looked:
        return None
    return (
        f"compile cache: {hits} of {looked} lookups hit (FX graph {totals['fxgraph_hit']} "
        f"hit, {totals['fxgraph_miss']} missed; AOTAutograd {totals['autograd_hit']} hit, "
        f"{totals['autograd_miss']} missed)"
    )


def _open_artifacts(state: PluginState, loaded_by: str | None) -> None:
    if state.artifacts_path is None:
        return
    from .artifacts import ArtifactStore

    if state.cold_root:
        loaded_by = "not loaded: --compile-cold compiles every check in an empty cache"
    state.artifacts = ArtifactStore(state.artifacts_path)
    state.artifacts.open(loaded_by=loaded_by)


class Worker:
    """Lives in each xdist worker: loads the cache artifacts before its first test, and
    hands what it compiled or hit to the controller, which writes the one merged file."""

    def __init__(self, config: pytest.Config, state: PluginState) -> None:
        self.config = config
        self.state = state

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        _open_artifacts(self.state, None)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        store = self.state.artifacts
        if store is None:
            return
        output = getattr(self.config, "workeroutput", None)
        if output is not None:
            output[ARTIFACTS_KEY] = {"payload": store.this_run(), "notes": store.notes}


class Controller:
    """Lives in the controlling process only (not in xdist workers): collects every record
    from the test reports, prints the one table, writes the one report."""

    def __init__(self, config: pytest.Config, state: PluginState) -> None:
        self.config = config
        self.state = state
        self._seen: set[str] = set()
        self.distributing = xdist_workers(config) > 0

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return [self.state.devices.describe()] if self.state.devices is not None else []

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        _open_artifacts(self.state, "loaded by each xdist worker" if self.distributing else None)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Each worker gets the one device list resolved here (``auto`` counted once)."""
        if self.state.devices is not None:
            node.workerinput[DEVICES_KEY] = list(self.state.devices.devices)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        store = self.state.artifacts
        output = getattr(node, "workeroutput", None) or {}
        handed = output.get(ARTIFACTS_KEY)
        if store is None or not isinstance(handed, dict):
            return
        store.add(handed.get("payload"))
        for note in handed.get("notes", ()):
            if " ignored: " in note:  # a worker could not load what the controller read
                store.note(note)

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
        if state.artifacts is not None:
            if not self.distributing:
                state.artifacts.add(state.artifacts.this_run())
            state.artifacts.save()
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
        from .tables import render_table

        config, state, tr = self.config, self.state, terminalreporter
        if state.records:
            tr.write_sep("=", "torch.compile checks")
            for line in render_table(state.records, config.getoption("verbose")):
                tr.write_line(line)
        cache_lines = [line for line in [cache_summary(state.records)] if line]
        if state.artifacts is not None:
            cache_lines += [f"cache artifacts: {note}" for note in state.artifacts.notes]
        if cache_lines:
            tr.write_sep("=", "torch.compile cache")
            for line in cache_lines:
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
