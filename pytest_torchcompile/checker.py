"""The engine's one face: compile, check equivalence, check speed, gate health, record.

The markers, the ``torchcompile`` fixture and ``safe_compile`` all call a
``CompileChecker``; none of them compares, times or counts on its own. Both checks share
one skeleton (``_run``): prepare settings and inputs, open an isolated compile session,
run the check's body, apply the health gates, build one record, raise one error.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .compare import Comparison, LeafResult
from .compiling import CheckSession, CompileSession, CompileStats, compile_kwargs
from .deploying import BACKENDS, DeploymentSession, export_sizes, open_deployment
from .devices import device_available
from .diagnose import Diagnoser, Diagnosis
from .equivalence import EquivalenceCheck, ExampleMismatch, Mismatch, cannot_fail
from .errors import CheckSkipped, CompileCheckError, CompileFailedError, SettingsError
from .gates import health_failures, health_notes, memory_failures
from .inputs import Example, InputPlan
from .markers import parse_marker
from .records import CheckRecord
from .repro import ReproTarget, write_repro
from .running import runner
from .settings import CompileSettings, is_target
from .timing import Timing, measure, torch_threads


class VacuousCheckWarning(UserWarning):
    """A check passed, but some outputs it compared could not have shown a wrong result
    (constant or all zeros in eager). ``-W error::pytest_torchcompile.VacuousCheckWarning``
    turns it into a failure."""


@dataclasses.dataclass
class _Outcome:
    """What a check's body found, before the gates and the record."""

    failures: list[str] = dataclasses.field(default_factory=list)
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    compiled: Callable[..., Any] | None = None
    timing: Timing | None = None
    skipped: str | None = None  # why the check could not decide (a contended machine)
    error: CompileCheckError | None = None  # raised by the body; re-raised with the record
    diagnose: Callable[[], Diagnosis] | None = None  # where it went wrong, run if it failed


@dataclasses.dataclass(frozen=True)
class Checked:
    """A passed check's record and the compiled callable it validated."""

    record: CheckRecord
    compiled: Callable[..., Any]


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
        timing_skip: Callable[[str], str | None] = lambda device: None,
        skip: Callable[[str], Any] | None = None,
        repro: Callable[[], ReproTarget | None] = lambda: None,
        package_dir: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``timing_skip`` says why timing cannot be trusted in this run (xdist workers,
        disabled benchmarks), if it cannot; ``skip`` turns a reason into the caller's
        skip (``pytest.skip``); by default a ``CheckSkipped`` is raised."""
        self.settings = settings
        self.timing_skip = timing_skip
        self.skip = skip or _raise_skipped
        self.test_id = test_id
        self.cache_dir = cache_dir
        self.on_record = on_record
        self.on_timing = on_timing
        self.fallback_random = fallback_random
        self.database = database  # keep failing examples in Hypothesis's database
        self.repro = repro  # where a failed check writes its repro folder, if anywhere
        self.package_dir = package_dir  # where AOTInductor packages are cached

    def compile(self, model: Callable[..., Any], **overrides: Any) -> Callable[..., Any]:
        """``torch.compile`` under this checker's mode and settings."""
        settings = self.settings.replace(**overrides)
        if is_target(settings.mode):
            reason = (
                f"compile() is torch.compile, and this test runs under the {settings.mode} "
                "target, which needs example inputs: use assert_equivalent(model, inputs)"
            )
            self.skip(reason)  # the plugin's skip raises; safe_compile never gets here
            raise CheckSkipped(reason)
        return torch.compile(model, **compile_kwargs(settings))

    def assert_equivalent(
        self, model: Any, inputs: Any = None, *, dims: Any = None, **overrides: Any
    ) -> CheckRecord:
        """Compiled matches eager on every drawn example; raises ``CompileCheckError``."""
        return self.check_equivalent(model, inputs, dims=dims, **overrides).record

    def assert_faster(
        self, model: Any, inputs: Any = None, *, dims: Any = None, **overrides: Any
    ) -> CheckRecord:
        """Compiled is at least ``min_speedup`` times faster, by a paired, interleaved
        measurement with a confidence interval; outputs are checked equal first."""
        return self.check_faster(model, inputs, dims=dims, **overrides).record

    def check_equivalent(
        self,
        model: Any,
        inputs: Any = None,
        *,
        dims: Any = None,
        in_place: bool = False,
        **overrides: Any,
    ) -> Checked:
        def body(settings: CompileSettings, plan: InputPlan, session: CheckSession) -> _Outcome:
            key = f"{self.test_id}::{settings.mode}" if self.database else None
            check = EquivalenceCheck(
                model, plan, settings, session, database_key=key, in_place=in_place
            )
            try:
                result = check.search()
            except CompileFailedError as error:  # the compiler raised on one example
                if error.example is None or not session.diagnosable:
                    raise
                return _Outcome(error=error, diagnose=self._diagnoser(check, error.example))
            fields = {"examples": result.examples, **_error_fields(result.worst, settings)}
            failures = [] if result.passed else [str(result.message)]
            if result.passed:
                failures += session.after_search(check.compiled)
            outcome = _Outcome(failures, fields, result.warnings(), check.compiled)
            if result.mismatch is not None:
                fields["example"] = result.mismatch.example.provenance()
                if session.diagnosable:
                    outcome.diagnose = self._diagnoser(
                        check, result.mismatch.example, result.mismatch.comparison
                    )
            return outcome

        return self._run("compile_equivalent", model, inputs, dims, overrides, body)

    def check_faster(
        self,
        model: Any,
        inputs: Any = None,
        *,
        dims: Any = None,
        in_place: bool = False,
        **overrides: Any,
    ) -> Checked:
        def body(settings: CompileSettings, plan: InputPlan, session: CheckSession) -> _Outcome:
            # The thread count is part of Dynamo's guards: compile under it, or timing
            # would recompile.
            with torch_threads(settings.threads):
                return timed_body(settings, plan, session)

        def timed_body(
            settings: CompileSettings, plan: InputPlan, session: CheckSession
        ) -> _Outcome:
            example = plan.largest(settings.seed or 0)
            check = EquivalenceCheck(model, plan, settings, session, in_place=in_place)
            try:
                comparison = check.check_example(example)
            except ExampleMismatch as mismatch:
                text = Mismatch(mismatch.example, mismatch.comparison).describe(
                    "compiled output differs from eager, so its speed is moot"
                )
                raise CompileCheckError(
                    text + "\n(speed checks compile with inductor's own RNG, as shipped: "
                    "random ops such as dropout draw differently from eager, so time the "
                    "model in eval mode)"
                ) from None
            vacuous = cannot_fail(comparison)
            if vacuous is not None:
                raise CompileCheckError(vacuous)
            compiled_run = runner(check.compiled, example, grad=settings.grad)
            try:
                timing = measure(
                    runner(check.eager, example, grad=settings.grad),
                    lambda: session.call(compiled_run),
                    min_speedup=settings.min_speedup,  # type: ignore[arg-type]
                    max_time=settings.max_time,
                    device=settings.device,
                    threads=settings.threads,
                    cudagraphs=session.cudagraphs,
                )
            finally:
                check.restore()
            session.expect_replay(timing.cudagraph_state, timing.warmup_calls)
            decision = timing.decision
            est = decision.estimate
            fields = {
                "examples": 1,
                **_error_fields(check.worst, settings),
                "speedup": est.speedup,
                "speedup_low": est.low,
                "speedup_high": est.high,
                "rounds": est.rounds,
                "eager_median": est.eager_median,
                "compiled_median": est.compiled_median,
                "eager_peak_memory": timing.eager_peak_memory,
                "compiled_peak_memory": timing.compiled_peak_memory,
                "threads": timing.threads,
            }
            if decision.inconclusive:  # not measured soundly: a skip, never a verdict
                # No speedup in the record: a contended figure must not reach a baseline.
                kept = {k: v for k, v in fields.items() if not k.startswith("speedup")}
                return _Outcome(fields=kept, compiled=check.compiled, skipped=decision.describe())
            failures = [] if decision.passed else [decision.describe()]
            failures += memory_failures(timing, settings)
            return _Outcome(failures, fields, [], check.compiled, timing)

        return self._run("compile_faster", model, inputs, dims, overrides, body)

    def _diagnoser(
        self, check: EquivalenceCheck, example: Example, comparison: Comparison | None = None
    ) -> Callable[[], Diagnosis]:
        """The diagnosis of a failed equivalence check, to run once its session is closed."""
        settings = check.settings
        compile_seconds = check.session.stats().compile_seconds or 0.0
        fallback_random = check.session.fallback_random

        def write() -> str | None:
            target = self.repro()
            if target is None:
                return None
            return write_repro(
                target, check.pristine, check.state, example, settings, comparison, fallback_random
            )

        def run() -> Diagnosis:
            return Diagnoser(
                check.pristine,
                check.state,
                example,
                settings,
                comparison=comparison,
                fallback_random=fallback_random,
                compile_seconds=compile_seconds,
                cache_dir=self.cache_dir(),
                write_repro=write,
            ).run()

        return run

    # -- the one skeleton ------------------------------------------------------------------

    def _run(
        self,
        marker: str,
        model: Any,
        inputs: Any,
        dims: Any,
        overrides: dict[str, Any],
        body: Callable[[CompileSettings, InputPlan, CheckSession], _Outcome],
    ) -> Checked:
        try:
            settings, plan = self._prepare(marker, inputs, dims, overrides)
            reason = self.timing_skip(settings.device) if marker == "compile_faster" else None
            if reason:
                raise CheckSkipped(reason)
        except CheckSkipped as skipped:
            self.skip(str(skipped))
            raise
        check = marker.removeprefix("compile_")
        compiler = (
            f"target={settings.mode}"
            if is_target(settings.mode)
            else f"mode={settings.mode}, backend={settings.backend}"
        )
        header = f"{marker} failed [{compiler}, device={settings.device}]\n"
        timed = marker == "compile_faster"
        with self._session(settings, plan, timed=timed) as session:
            try:
                outcome = body(settings, plan, session)
            except CompileCheckError as error:
                outcome = _Outcome(error=error)
            stats = session.stats()
        # After the check's own session: the diagnosis compiles in sessions of its own.
        diagnosis = outcome.diagnose() if outcome.diagnose and settings.diagnose != "off" else None
        found = {"diagnosis": diagnosis.to_dict()} if diagnosis else {}
        if outcome.error is not None:
            raised = outcome.error
            text = str(raised) + (f"\n{diagnosis.describe()}" if diagnosis else "")
            record = self._record(check, settings, stats, [text], found)
            failed = type(raised)(header + text, record)
            raise failed from raised.__cause__ or raised
        gated = health_failures(stats, settings)
        if outcome.skipped is not None and not gated:  # a gate's failure is no less sure
            fields = dict(outcome.fields, message=outcome.skipped)
            record = self._record(check, settings, stats, [], fields, outcome="skipped")
            self.skip(outcome.skipped)  # the plugin's pytest.skip raises; safe_compile's not
            assert outcome.compiled is not None
            return Checked(record, outcome.compiled)
        failures = outcome.failures + gated
        fields = dict(outcome.fields, **found)
        if diagnosis is not None:
            failures.append(diagnosis.describe())
        if outcome.timing is not None and not failures:
            fields["message"] = outcome.timing.decision.describe()
        notes = health_notes(stats, settings)
        record = self._record(check, settings, stats, failures, fields, outcome.warnings + notes)
        if outcome.timing is not None:
            self.on_timing(record, outcome.timing)
        if failures:
            extra = f"\n{outcome.timing.threads} torch thread(s)" if outcome.timing else ""
            raise CompileCheckError(header + "\n".join(failures) + extra, record)
        for text in outcome.warnings:
            warnings.warn(f"{record.label}: {text}", VacuousCheckWarning, stacklevel=4)
        for text in notes:
            warnings.warn(f"{record.label}: {text}", UserWarning, stacklevel=4)
        assert outcome.compiled is not None
        return Checked(record, outcome.compiled)

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
        plan = InputPlan(inputs, args.dims, settings.device)
        if is_target(settings.mode):
            _check_target(settings, plan)
        return settings, plan

    def _session(
        self, settings: CompileSettings, plan: InputPlan, *, timed: bool = False
    ) -> CompileSession | DeploymentSession:
        # Timing must measure the code users ship: inductor's own RNG, not eager's.
        fallback_random = self.fallback_random and not timed
        if is_target(settings.mode):
            return open_deployment(
                settings,
                plan,
                fallback_random=fallback_random,
                cache_dir=self.cache_dir(),
                package_dir=self.package_dir(),
                test_id=self.test_id,
            )
        return CompileSession(settings, fallback_random=fallback_random, cache_dir=self.cache_dir())

    def _record(
        self,
        check: str,
        settings: CompileSettings,
        stats: CompileStats,
        failures: list[str],
        fields: dict[str, Any],
        notes: Sequence[str] = (),
        outcome: str | None = None,
    ) -> CheckRecord:
        fields = dict(fields)
        fields.setdefault("message", "\n".join(failures) or None)
        record = CheckRecord(
            test_id=self.test_id,
            check=check,
            mode=settings.mode,
            backend=BACKENDS.get(settings.mode, settings.backend),
            device=settings.device,
            outcome=outcome or ("failed" if failures else "passed"),
            compile_seconds=stats.compile_seconds,
            compile_seconds_total=stats.compile_seconds_total,
            compile_cache=stats.cache_state,
            cache_counts=dict(stats.cache),
            graphs=stats.graphs,
            graph_breaks=tuple(dataclasses.asdict(b) for b in stats.graph_breaks),
            recompiles=tuple(r.describe() for r in stats.recompiles),
            cudagraph_skips=(
                tuple(s.describe() for s in stats.cudagraph_skips) if stats.cudagraphs else None
            ),
            warnings=tuple(notes),
            package_bytes=stats.package_bytes,
            package_cached=stats.package_cached,
            **fields,
        )
        self.on_record(record)
        return record


def _check_target(settings: CompileSettings, plan: InputPlan) -> None:
    """What a deployment target cannot check here: a visible skip, never a pass."""
    if plan.strategy_inputs is not None:
        raise CheckSkipped(
            f"the {settings.mode} target exports for the dims TensorSpecs declare; a Hypothesis "
            "strategy declares none: give TensorSpecs with dims= to check it"
        )
    export_sizes(plan.dims, plan.static_sizes())  # a range export cannot take: say so now
    if settings.mode == "aoti":
        from . import torch_compat as compat

        reason = compat.aoti_unavailable()
        if reason:
            raise CheckSkipped(f"aoti cannot run here: {reason}")
        if settings.grad:
            raise CheckSkipped(
                "AOTInductor packages run inference only (no autograd): grad=True is "
                "checked under the export target"
            )


def _raise_skipped(reason: str) -> None:
    raise CheckSkipped(reason)


def _error_fields(worst: LeafResult | None, settings: CompileSettings) -> dict[str, Any]:
    """The greatest error a check saw, where, and the tolerance it was judged by."""
    return {
        "max_error": worst.max_abs if worst else None,
        "max_error_path": worst.path if worst else None,
        "atol": worst.effective_atol if worst else settings.atol,
        "rtol": worst.rtol if worst else settings.rtol,
    }
