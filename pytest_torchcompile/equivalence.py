"""Check a compiled model against eager over examples that Hypothesis draws and shrinks.

The model is compiled once per check and reused for every example, shrinking included.
Eager and compiled run on copies restored to the same state before each example, with
the RNG seeded identically (``running.py``), so dropout and BatchNorm compare like for
like. The search returns a structured result: the shrunk mismatch (example and
comparison), the greatest error seen, and the output leaves that could not have failed.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable
from typing import Any

import hypothesis
import torch
from hypothesis import HealthCheck, Phase, Verbosity, given

from .compare import Comparison, LeafResult, compare
from .compiling import CheckSession, CompileStats
from .errors import CompileCheckError
from .inputs import Example, InputPlan
from .running import copy_to, in_float64, observe, observe_eager, restore, snapshot
from .settings import CompileSettings

# Parts of a run whose leaves can show a compiler's error. Buffers are left out: a buffer
# the forward does not touch (BatchNorm's statistics in eval mode) is constant by design.
_JUDGED_PARTS = ("out", "grad[", "input_grad[")


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """Compiled differs from eager on this (shrunk) example."""

    example: Example
    comparison: Comparison

    def describe(self, headline: str = "compiled output differs from eager") -> str:
        lines = [headline, f"smallest failing example: {self.example.describe()}"]
        lines.append(self.comparison.describe())
        hint = self.example.rebuild_hint()
        if hint:
            lines.append(hint)
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class EquivalenceResult:
    examples: int
    stats: CompileStats
    worst: LeafResult | None
    mismatch: Mismatch | None = None
    vacuous: tuple[LeafResult, ...] = ()  # judged leaves constant in eager on every example
    informative: bool = True  # some judged leaf could have shown a wrong result

    @property
    def passed(self) -> bool:
        return self.mismatch is None and self.informative

    @property
    def message(self) -> str | None:
        if self.mismatch is not None:
            return self.mismatch.describe()
        if not self.informative:
            return cannot_fail_message(self.vacuous)
        return None

    def warnings(self) -> list[str]:
        """Vacuous leaves beside informative ones: the check passed, but not on these."""
        if not self.informative or not self.vacuous:
            return []
        return [
            f"{leaf.path} is {leaf.vacuous} on every example, so it cannot show a wrong "
            "result (other outputs were compared)"
            for leaf in self.vacuous
            if leaf.path.startswith("out")  # a zero gradient is common and harmless
        ]


def cannot_fail_message(vacuous: tuple[LeafResult, ...]) -> str:
    names = "; ".join(f"{leaf.path} is {leaf.vacuous}" for leaf in vacuous[:5])
    more = f" (and {len(vacuous) - 5} more)" if len(vacuous) > 5 else ""
    what = f"{names}{more}, on every example" if names else "no output holds a non-empty tensor"
    return (
        f"this check cannot detect a wrong result: {what}. "
        "A compiler that scaled or zeroed these outputs would pass. Give the model "
        "non-trivial weights (a zero-initialised head, or fresh BatchNorm statistics that "
        "shrink activations, make outputs vanish), or return an inner output to check"
    )


def judged(comparison: Comparison) -> list[LeafResult]:
    """The leaves that can show a compiler's error: outputs and gradients."""
    return [leaf for leaf in comparison.leaves if leaf.path.startswith(_JUDGED_PARTS)]


def cannot_fail(comparison: Comparison) -> str | None:
    """Why this one comparison could not have shown a wrong result, if it could not (the
    speed check's single example; the search asks the same across all its examples)."""
    leaves = judged(comparison)
    if any(leaf.informative for leaf in leaves):
        return None
    return cannot_fail_message(tuple(leaf for leaf in leaves if leaf.vacuous))


def compare_runs(
    eager: dict,
    other: dict,
    settings: CompileSettings,
    fp64: Callable[[str], Any] | None = None,
) -> Comparison:
    """Every part of two ``observe`` runs, leaf by leaf, under the check's tolerances;
    ``fp64(part)`` gives the float64 reference where the judgement needs it."""
    leaves: list[LeafResult] = []
    for part in eager:
        result = compare(
            eager[part],
            other.get(part),
            path=part,
            rtol=settings.rtol,
            atol=settings.atol,
            reference=functools.partial(fp64, part) if fp64 else None,
        )
        leaves.extend(result.leaves)
    return Comparison(tuple(leaves))


class _Abort(BaseException):
    """Leaves Hypothesis at once (it catches ``Exception`` only): a compile error or the
    model's own error is not a property of the example to shrink, and Hypothesis would
    otherwise print its example dump."""

    def __init__(self, error: CompileCheckError) -> None:
        super().__init__(str(error))
        self.error = error


# -- the check -------------------------------------------------------------------------------


class EquivalenceCheck:
    """Compare a model compiled in ``session`` with eager, example by example.

    The user's model is never changed: eager and compiled run on deep copies, unless
    ``in_place`` (``safe_compile``), where the compiled side is the user's model itself,
    so the compiled model handed back shares its parameters, and its state is restored
    after every example.
    """

    def __init__(
        self,
        model: Any,
        plan: InputPlan | None,
        settings: CompileSettings,
        session: CheckSession,
        *,
        database_key: str | None = None,
        in_place: bool = False,
    ) -> None:
        self.plan = plan
        self.settings = settings
        self.session = session
        self.database_key = database_key
        self.pristine = model
        self.state = snapshot(model)
        self.eager = copy_to(model, settings.device)
        self.compiled_module = model if in_place else copy_to(model, settings.device)
        # The user's gradients (mid-accumulation, say) survive a check run on their model.
        self._grads = (
            {n: p.grad for n, p in model.named_parameters()}
            if in_place and isinstance(model, torch.nn.Module)
            else {}
        )
        self.compiled = session.compile(self.compiled_module)
        self.examples_run = 0
        self.worst: LeafResult | None = None
        self._vacuous: dict[str, LeafResult] | None = None  # vacuous on every example so far
        self._informative = False
        self._reference: Any = None

    def search(self) -> EquivalenceResult:
        """Run every example Hypothesis draws; shrink a failure to its smallest example."""
        try:
            mismatch = self._search()
        finally:
            self.restore()
        vacuous = tuple(self._vacuous.values()) if self._vacuous else ()
        return EquivalenceResult(
            self.examples_run,
            self.session.stats(),
            self.worst,
            mismatch,
            vacuous,
            self._informative or mismatch is not None,
        )

    def restore(self) -> None:
        """Put the compiled side's state back as it was (it may be the user's model)."""
        restore(self.compiled_module, self.state)
        for name, param in self.compiled_module.named_parameters() if self._grads else ():
            param.grad = self._grads[name]

    def check_example(self, example: Example) -> Comparison:
        """Run eager and compiled on one example; raise ``ExampleMismatch`` if they differ."""
        self.examples_run += 1
        restore(self.eager, self.state)
        restore(self.compiled_module, self.state)
        self.session.before_example()
        grad, device = self.settings.grad, self.settings.device
        eager = observe_eager(self.eager, self.eager, example, grad=grad, device=device)
        compiled = self.session.call(
            lambda: observe(self.compiled, self.compiled_module, example, grad=grad, device=device)
        )
        fp64_run: dict | None = None

        def fp64(part: str) -> Any:
            """The float64 run's value of ``part``, computed once and only if needed."""
            nonlocal fp64_run
            if fp64_run is None:
                fp64_run = self._fp64_run(example)
            return fp64_run.get(part)

        for part in self.session.unobserved:  # out of the compiled side's reach
            eager.pop(part, None)
            compiled.pop(part, None)
        comparison = compare_runs(eager, compiled, self.settings, fp64)
        worst = comparison.worst
        if worst is not None and (self.worst is None or worst.max_abs > self.worst.max_abs):
            self.worst = worst
        if not comparison.passed:
            raise ExampleMismatch(example, comparison)
        self._note_vacuous(comparison)
        return comparison

    def _note_vacuous(self, comparison: Comparison) -> None:
        leaves = judged(comparison)
        vacuous = {leaf.path: leaf for leaf in leaves if leaf.vacuous}
        if any(leaf.informative for leaf in leaves):
            self._informative = True
        if self._vacuous is None:
            self._vacuous = vacuous
        else:
            self._vacuous = {p: leaf for p, leaf in self._vacuous.items() if p in vacuous}

    def _fp64_run(self, example: Example) -> dict:
        try:  # a model too big to copy in float64 (or that cannot run in it): no reference
            if self._reference is None:
                model = copy_to(self.pristine, self.settings.device)
                if isinstance(model, torch.nn.Module):
                    model = model.double()
                self._reference = model
            model = self._reference
            restore(model, self.state)  # the state every run starts from, widened by copy_
            return observe(
                model,
                model,
                in_float64(example),
                grad=self.settings.grad,
                device=self.settings.device,
            )
        except Exception:  # the model cannot run in float64: judge on tolerance alone
            return {}

    def _search(self) -> Mismatch | None:
        """Run Hypothesis; return the mismatch on the shrunk example, if any."""

        mismatch_seen = False
        assert self.plan is not None, "a search draws from an input plan"

        def one_example(example: Example) -> None:
            nonlocal mismatch_seen
            try:
                self.check_example(example)
            except ExampleMismatch:
                mismatch_seen = True
                raise
            except CompileCheckError as error:
                if mismatch_seen:  # while shrinking a mismatch (e.g. past the recompile
                    hypothesis.reject()  # limit): keep the mismatch, drop this example
                located = type(error)(
                    f"{error}\nfirst seen on example {self.examples_run}: {example.describe()}",
                    example=example,
                )
                located.__cause__ = error.__cause__
                raise _Abort(located) from error.__cause__

        inner: Any = one_example
        for dims in self.plan.ends() if self.session.ends else ():
            inner = hypothesis.example(self.plan.materialize(dims, seed=0))(inner)
        test = given(self.plan.strategy())(inner)
        explore = self.settings.explore and self.settings.seed is None
        test = hypothesis.settings(
            max_examples=self.settings.examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
            print_blob=False,
            verbosity=Verbosity.quiet,  # our message names the example; no Hypothesis dump
            database=hypothesis.settings().database if self.database_key and explore else None,
        )(test)
        if not explore:  # reproducible run to run: a baseline compares like with like
            seed = self.settings.seed
            test = hypothesis.seed(seed if seed is not None else self._derived_seed())(test)
        elif self.database_key:
            inner = test.hypothesis.inner_test  # type: ignore[attr-defined]
            inner._hypothesis_internal_add_digest = self.database_key.encode()
        try:
            test()
        except ExampleMismatch as mismatch:
            return Mismatch(mismatch.example, mismatch.comparison)
        except _Abort as abort:
            raise abort.error from abort.error.__cause__
        return None

    def _derived_seed(self) -> int:
        return zlib.crc32((self.database_key or "pytest-torchcompile").encode())


class ExampleMismatch(Exception):
    """Raised inside the search so Hypothesis shrinks the example; becomes a ``Mismatch``."""

    def __init__(self, example: Example, comparison: Comparison) -> None:
        super().__init__(comparison.describe())
        self.example = example
        self.comparison = comparison
