"""Optional glue to pytest-benchmark: eager and compiled each land as a benchmark entry.

Nothing here is needed for a speed check to run; with pytest-benchmark absent (or
replaced, e.g. by pytest-codspeed) the check still measures and decides on its own.
"""

from __future__ import annotations

import copy
from typing import Any

from .records import CheckRecord


def benchmark_session(config: Any) -> Any | None:
    """pytest-benchmark's session object, if that plugin (and not a look-alike) is active."""
    session = getattr(config, "_benchmarksession", None)
    if session is None or not type(session).__module__.startswith("pytest_benchmark."):
        return None
    return session


def speed_skip_reason(config: Any) -> str | None:
    """Why the user asked for no timing in this run, if they did. (Whether an xdist worker
    can time is ``session.xdist_timing_skip``'s call: pytest-benchmark disables itself under
    xdist, and a worker that owns a GPU still times, without pytest-benchmark entries.)"""
    session = benchmark_session(config)
    asked = config.getoption("benchmark_disable", False) and not config.getoption(
        "benchmark_enable", False
    )
    under_xdist = hasattr(config, "workerinput") or config.getoption("dist", "no") != "no"
    if session is not None and session.disabled and (asked or not under_xdist):
        return "speed not measured: benchmarks are disabled (--benchmark-disable)"
    if session is not None and session.skip:
        return "speed not measured: benchmarks are skipped (--benchmark-skip)"
    return None


def record_entries(fixture: Any, record: CheckRecord, timing: Any) -> None:
    """Add an eager and a compiled entry, grouped per test and mode, to pytest-benchmark."""
    if getattr(fixture, "disabled", False):  # under xdist: it keeps no entries
        fixture._mode = "pytest-torchcompile"
        return
    params = record.test_id.rpartition("[")[2]
    named = record.mode in params.rstrip("]").split("-")  # the id names the mode already
    group = record.test_id if named else f"{record.test_id} [{record.mode}]"
    info = {
        "mode": record.mode,
        "backend": record.backend,
        "device": record.device,
        "speedup": record.speedup,
        "speedup_interval": [record.speedup_low, record.speedup_high],
        "rounds": record.rounds,
        "calls_per_round": timing.calls_per_block,
        "torch_threads": timing.threads,
    }
    for side, times in (("eager", timing.eager_times), ("compiled", timing.compiled_times)):
        entry = copy.copy(fixture)
        entry.name = f"{fixture.name}[{side}]"
        entry.fullname = f"{fixture.fullname}[{side}]"
        entry.group = group
        entry.extra_info = dict(info, side=side)
        stats = entry._make_stats(timing.calls_per_block)
        for seconds in times:
            stats.update(seconds * timing.calls_per_block)  # it divides by iterations
    fixture._mode = "pytest-torchcompile"  # the fixture was used, by proxy: no warning
