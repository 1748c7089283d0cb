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
    """Why timing cannot be trusted in this run, if it cannot."""
    if hasattr(config, "workerinput"):
        return (
            "speed not measured under pytest-xdist: workers compete for the same cores, so "
            "timings are not trustworthy; run speed tests without -n"
        )
    session = benchmark_session(config)
    if session is not None and session.disabled:
        return "speed not measured: benchmarks are disabled (--benchmark-disable)"
    if session is not None and session.skip:
        return "speed not measured: benchmarks are skipped (--benchmark-skip)"
    return None


def record_entries(fixture: Any, record: CheckRecord, timing: Any) -> None:
    """Add an eager and a compiled entry, grouped per test and mode, to pytest-benchmark."""
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
