"""The engine's one face: compile, check equivalence, check speed, gate health, record.

The markers, the ``torchcompile`` fixture and ``safe_compile`` all call a
``CompileChecker``; none of them compares, times or counts on its own.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import torch

from .compare import LeafResult
from .compiling import CompileSession, CompileStats, compile_kwargs
from .devices import device_available
from .equivalence import EquivalenceCheck, ExampleMismatch, runner
from .errors import CheckSkipped, CompileCheckError, SettingsError
from .inputs import InputPlan
from .records import CheckRecord
from .settings import CompileSettings, parse_marker
from .timing import Timing, measure


def health_failures(stats: CompileStats, settings: CompileSettings) -> list[str]:
    """Graph-break, recompile and compile-time gates; each failure lists the evidence."""
    failures = []
    if (
        settings.max_graph_breaks is not None
        and len(stats.graph_breaks) > settings.max_graph_breaks
    ):
        failures.append(
            f"{len(stats.graph_breaks)} graph break(s), max_graph_breaks="
            f"{settings.max_graph_breaks}:"
            + "".join(f"\n  {b.describe()}" for b in stats.graph_breaks)
        )
    if settings.max_recompiles is not None and len(stats.recompiles) > settings.max_recompiles:
        failures.append(
            f"{len(stats.recompiles)} recompile(s), max_recompiles={settings.max_recompiles}:"
            + "".join(f"\n  {r.describe()}" for r in stats.recompiles)
        )
    limit = settings.max_compile_time
    if limit is not None and stats.compile_seconds > limit:
        failures.append(
            f"first compile took {stats.compile_seconds:.2f} s, max_compile_time={limit:g} s"
        )
    return failures


class CompileChecker:
    """Runs checks under base settings (CLI, ini, or a settings object) plus overrides."""

    def __init__(
        self,
        settings: CompileSettings,
        *,
        test_id: str = "",
        cache_dir: Callable[[], str | None] = lambda: None,
        on_record: Callable[[CheckRecord], None] = lambda record: None,
        on_timing: Callable[[CheckRecord, Timing], None] = lambda record, timing: None,
        fallback_random: bool = True,
        database: bool = True,
    ) -> None:
        self.settings = settings
        self.test_id = test_id
        self.cache_dir = cache_dir
        self.on_record = on_record
        self.on_timing = on_timing
        self.fallback_random = fallback_random
        self.database = database  # keep failing examples in Hypothesis's database

    def compile(self, model: Callable[..., Any], **overrides: Any) -> Callable[..., Any]:
        """``torch.compile`` under this checker's mode and settings."""
        return torch.compile(model, **compile_kwargs(self.settings.replace(**overrides)))

    def _prepare(
        self, marker: str, inputs: Any, dims: Any, overrides: dict[str, Any]
    ) -> tuple[CompileSettings, InputPlan]:
        if inputs is None:
            raise SettingsError(
                "no inputs: give inputs=[...] (TensorSpecs or values), or return "
                "(model, inputs) from the test"
            )
        args = parse_marker(marker, (), {"inputs": inputs, "dims": dims, **overrides})
        if args.modes is not None:
            raise SettingsError("modes= belongs on the marker; the fixture is bound to one mode")
        settings = self.settings.replace(**args.overrides).validate_names()
        if not device_available(settings.device):
            raise CheckSkipped(f"device {settings.device!r} is not available on this machine")
        return settings, InputPlan(inputs, args.dims, settings.device)

    def _session(self, settings: CompileSettings, *, timed: bool = False) -> CompileSession:
        # Timing must measure the code users ship: inductor's own RNG, not eager's.
        fallback_random = self.fallback_random and not timed
        return CompileSession(settings, fallback_random=fallback_random, cache_dir=self.cache_dir())

    def assert_equivalent(
        self, model: Any, inputs: Any = None, *, dims: Any = None, **overrides: Any
    ) -> CheckRecord:
        """Compiled matches eager on every drawn example; raises ``CompileCheckError``."""
        settings, plan = self._prepare("compile_equivalent", inputs, dims, overrides)
        header = _header("compile_equivalent", settings)
        with self._session(settings) as session:
            try:
                key = f"{self.test_id}::{settings.mode}" if self.database else None
                check = EquivalenceCheck(model, plan, settings, session, database_key=key)
                result = check.search()
            except CompileCheckError as error:
                failed = self._failed("equivalent", settings, session.stats(), header, error)
                raise failed from error.__cause__ or error
        failures = ([] if result.passed else [result.message]) + health_failures(
            result.stats, settings
        )
        record = self._record(
            "equivalent",
            settings,
            result.stats,
            failures,
            examples=result.examples,
            **_error_fields(result.worst, settings),
        )
        if failures:
            raise CompileCheckError(header + "\n".join(map(str, failures)), record)
        return record

    def assert_faster(
        self, model: Any, inputs: Any = None, *, dims: Any = None, **overrides: Any
    ) -> CheckRecord:
        """Compiled is at least ``min_speedup`` times faster, by a paired, interleaved
        measurement with a confidence interval; outputs are checked equal first."""
        settings, plan = self._prepare("compile_faster", inputs, dims, overrides)
        header = _header("compile_faster", settings)
        example = plan.largest(settings.seed or 0)
        with self._session(settings, timed=True) as session:
            try:
                check = EquivalenceCheck(model, plan, settings, session)
                check.check_example(example)
                compiled_run = runner(check.compiled, example, grad=settings.grad)
                timing = measure(
                    runner(check.eager, example, grad=settings.grad),
                    lambda: session.call(compiled_run),
                    min_speedup=settings.min_speedup,  # type: ignore[arg-type]
                    max_time=settings.max_time,
                    device=settings.device,
                )
            except ExampleMismatch as mismatch:
                error = CompileCheckError(
                    "compiled output differs from eager, so its speed is moot\n"
                    f"example: {mismatch.example.describe()}\n{mismatch.comparison.describe()}\n"
                    "(speed checks compile with inductor's own RNG, as shipped: random ops such "
                    "as dropout draw differently from eager, so time the model in eval mode)"
                )
                failed = self._failed("faster", settings, session.stats(), header, error)
                raise failed from None  # the message says all; the mismatch is no traceback
            except CompileCheckError as error:
                failed = self._failed("faster", settings, session.stats(), header, error)
                raise failed from error.__cause__ or error
            stats = session.stats()
        decision = timing.decision
        failures = [] if decision.passed else [decision.describe()]
        failures += _memory_failures(timing, settings)
        failures += health_failures(stats, settings)
        est = decision.estimate
        record = self._record(
            "faster",
            settings,
            stats,
            failures,
            examples=1,
            **_error_fields(check.worst, settings),
            speedup=est.speedup,
            speedup_low=est.low,
            speedup_high=est.high,
            rounds=est.rounds,
            eager_median=est.eager_median,
            compiled_median=est.compiled_median,
            eager_peak_memory=timing.eager_peak_memory,
            compiled_peak_memory=timing.compiled_peak_memory,
            message="\n".join(failures) if failures else decision.describe(),
        )
        self.on_timing(record, timing)
        if failures:
            raise CompileCheckError(
                header + "\n".join(failures) + f"\n{timing.threads} torch thread(s)", record
            )
        return record

    def _record(
        self,
        check: str,
        settings: CompileSettings,
        stats: CompileStats,
        failures: list[Any],
        **fields: Any,
    ) -> CheckRecord:
        fields.setdefault("message", "\n".join(map(str, failures)) or None)
        record = CheckRecord(
            test_id=self.test_id,
            check=check,
            mode=settings.mode,
            backend=settings.backend,
            device=settings.device,
            outcome="failed" if failures else "passed",
            compile_seconds=stats.compile_seconds,
            graphs=stats.graphs,
            graph_breaks=tuple(dataclasses.asdict(b) for b in stats.graph_breaks),
            recompiles=tuple(r.describe() for r in stats.recompiles),
            **fields,
        )
        self.on_record(record)
        return record

    def _failed(
        self,
        check: str,
        settings: CompileSettings,
        stats: CompileStats,
        header: str,
        error: CompileCheckError,
    ) -> CompileCheckError:
        record = self._record(check, settings, stats, [str(error)])
        return type(error)(header + str(error), record)


def _error_fields(worst: LeafResult | None, settings: CompileSettings) -> dict[str, Any]:
    """The greatest error a check saw, where, and the tolerance it was judged by."""
    return {
        "max_error": worst.max_abs if worst else None,
        "max_error_path": worst.path if worst else None,
        "atol": worst.atol if worst else settings.atol,
        "rtol": worst.rtol if worst else settings.rtol,
    }


def _header(marker: str, settings: CompileSettings) -> str:
    return (
        f"{marker} failed [mode={settings.mode}, backend={settings.backend}, "
        f"device={settings.device}]\n"
    )


def _memory_failures(timing: Timing, settings: CompileSettings) -> list[str]:
    ratio_limit = settings.max_memory_ratio
    if ratio_limit is None:
        return []
    eager, compiled = timing.eager_peak_memory, timing.compiled_peak_memory
    if eager is None or compiled is None:
        warnings.warn(
            f"max_memory_ratio={ratio_limit:g} was not checked: peak memory is measured on "
            f"CUDA only, and this check ran on {settings.device!r}",
            stacklevel=2,
        )
        return []
    ratio = compiled / max(eager, 1)
    if ratio <= ratio_limit:
        return []
    return [
        f"compiled peak memory {compiled / 2**20:.1f} MiB is {ratio:.2f}x eager's "
        f"{eager / 2**20:.1f} MiB, max_memory_ratio={ratio_limit:g}"
    ]
