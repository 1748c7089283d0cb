"""Check a compiled model against eager over examples that Hypothesis draws and shrinks.

The model is compiled once per check and reused for every example, shrinking included.
Eager and compiled run on deep copies restored to the same state before each example,
with the RNG seeded identically, so dropout and BatchNorm compare like for like.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import hypothesis
import torch
from hypothesis import HealthCheck, Phase, given

from .compare import Comparison, LeafResult, compare, flatten
from .compiling import CompileSession, CompileStats
from .devices import seed_generators
from .errors import CompileCheckError
from .inputs import Example, InputPlan
from .settings import CompileSettings

_RNG_SEED = 20240601


@dataclasses.dataclass(frozen=True)
class EquivalenceResult:
    passed: bool
    examples: int
    stats: CompileStats
    worst: LeafResult | None
    message: str | None = None


class ExampleMismatch(Exception):
    def __init__(self, example: Example, comparison: Comparison) -> None:
        super().__init__(comparison.describe())
        self.example = example
        self.comparison = comparison


# -- running a model on one example ----------------------------------------------------------


def snapshot(module: Any) -> dict[str, torch.Tensor]:
    if not isinstance(module, torch.nn.Module):
        return {}
    state: dict[str, torch.Tensor] = dict(module.named_parameters())
    state.update(module.named_buffers())
    return {name: t.detach().clone() for name, t in state.items()}


def restore(module: Any, state: dict[str, torch.Tensor]) -> None:
    """Reset parameters and buffers in place, so compiled code's guards stay valid."""
    if not state:
        return
    live: dict[str, torch.Tensor] = dict(module.named_parameters())
    live.update(module.named_buffers())
    with torch.no_grad():
        for name, value in state.items():
            live[name].copy_(value)
    for param in module.parameters():
        param.grad = None


def observe(
    fn: Callable[..., Any], module: Any, example: Example, *, grad: bool, device: str = "cpu"
) -> dict:
    """Everything a run produces that must match: output, gradients, buffers."""
    args = tuple(_fresh(v, grad) for v in example.args)
    kwargs = {k: _fresh(v, grad) for k, v in example.kwargs.items()}
    seed_generators(device, _RNG_SEED)
    with torch.set_grad_enabled(grad):
        out = fn(*args, **kwargs)
    observed: dict[str, Any] = {"out": out}  # compare() detaches what it reads
    if grad:
        backward_of_sum(out)
        if isinstance(module, torch.nn.Module):
            observed["grad"] = {
                n: p.grad.detach().clone()
                for n, p in module.named_parameters()
                if p.grad is not None
            }
        named = [(f"arg{i}", v) for i, v in enumerate(args)] + list(kwargs.items())
        observed["input_grad"] = {
            n: v.grad for n, v in named if isinstance(v, torch.Tensor) and v.grad is not None
        }
    if isinstance(module, torch.nn.Module):
        observed["buffers"] = {n: b.detach().clone() for n, b in module.named_buffers()}
    return observed


def runner(fn: Callable[..., Any], example: Example, *, grad: bool) -> Callable[[], None]:
    """The work ``observe`` does, minus the bookkeeping: what a speed check times."""
    if not grad:

        def forward() -> None:
            with torch.no_grad():
                fn(*example.args, **example.kwargs)

        return forward

    def forward_backward() -> None:
        args = tuple(_fresh(v, grad) for v in example.args)
        kwargs = {k: _fresh(v, grad) for k, v in example.kwargs.items()}
        backward_of_sum(fn(*args, **kwargs))

    return forward_backward


def backward_of_sum(out: Any) -> None:
    """Backward of the sum of every floating output, added in float64 so outputs of mixed
    precision add up (the gradient of a sum is exactly 1 in any dtype)."""
    losses = [t.real.sum().double() for t in _tensors(out) if t.requires_grad]
    if not losses:
        raise CompileCheckError(
            "grad=True, but no floating output requires grad: nothing to differentiate"
        )
    sum(losses[1:], losses[0]).backward()


def _fresh(value: Any, grad: bool) -> Any:
    if not isinstance(value, torch.Tensor):
        return copy.deepcopy(value)
    fresh = value.detach().clone()
    if grad and (fresh.is_floating_point() or fresh.is_complex()) or value.requires_grad:
        fresh.requires_grad_(True)
    return fresh


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [
        v
        for v in flatten(tree, "")[0].values()
        if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())
    ]


def in_float64(example: Example) -> Example:
    def widen(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.detach().double()
        return v

    return Example(
        tuple(widen(v) for v in example.args),
        {k: widen(v) for k, v in example.kwargs.items()},
        example.dims,
    )


# -- the check -------------------------------------------------------------------------------


class EquivalenceCheck:
    """Compare a model compiled in ``session`` with eager, example by example."""

    def __init__(
        self,
        model: Any,
        plan: InputPlan,
        settings: CompileSettings,
        session: CompileSession,
        *,
        database_key: str | None = None,
    ) -> None:
        self.plan = plan
        self.settings = settings
        self.session = session
        self.database_key = database_key
        if isinstance(model, torch.nn.Module):
            model = model.to(settings.device)
        self.pristine = model
        self.state = snapshot(model)
        self.eager = copy.deepcopy(model)
        self.compiled_module = copy.deepcopy(model)
        self.compiled = session.compile(self.compiled_module)
        self.examples_run = 0
        self.worst: LeafResult | None = None
        self._reference: tuple[Any, dict[str, torch.Tensor]] | None = None

    def search(self) -> EquivalenceResult:
        """Run every example Hypothesis draws; shrink a failure to its smallest example."""
        failure = self._search()
        stats = self.session.stats()
        return EquivalenceResult(failure is None, self.examples_run, stats, self.worst, failure)

    def check_example(self, example: Example) -> None:
        self.examples_run += 1
        restore(self.eager, self.state)
        restore(self.compiled_module, self.state)
        grad, device = self.settings.grad, self.settings.device
        eager = observe(self.eager, self.eager, example, grad=grad, device=device)
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

        leaves: list[LeafResult] = []
        for part in eager:
            result = compare(
                eager[part],
                compiled.get(part),
                path=part,
                rtol=self.settings.rtol,
                atol=self.settings.atol,
                reference=functools.partial(fp64, part),
            )
            leaves.extend(result.leaves)
        comparison = Comparison(tuple(leaves))
        worst = comparison.worst
        if worst is not None and (self.worst is None or worst.max_abs > self.worst.max_abs):
            self.worst = worst
        if not comparison.passed:
            raise ExampleMismatch(example, comparison)

    def _fp64_run(self, example: Example) -> dict:
        if self._reference is None:
            model = copy.deepcopy(self.pristine)
            if isinstance(model, torch.nn.Module):
                model = model.double()
            self._reference = (model, snapshot(model))
        model, state = self._reference
        restore(model, state)
        try:
            return observe(
                model,
                model,
                in_float64(example),
                grad=self.settings.grad,
                device=self.settings.device,
            )
        except Exception:  # the model cannot run in float64: judge on tolerance alone
            return {}

    def _search(self) -> str | None:
        """Run Hypothesis; return the failure message for the shrunk example, if any."""
        fatal: list[BaseException] = []

        def one_example(example: Example) -> None:
            if fatal:  # compiling failed: fail every further example at once, compile nothing
                raise fatal[0]
            try:
                self.check_example(example)
            except CompileCheckError as error:
                located = type(error)(
                    f"{error}\nfirst seen on example {self.examples_run}: {example.describe()}"
                )
                fatal.append(located)
                raise located from error.__cause__

        test = given(self.plan.strategy())(one_example)
        test = hypothesis.settings(
            max_examples=self.settings.examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
            print_blob=False,
            database=hypothesis.settings().database if self.database_key else None,
        )(test)
        if self.settings.seed is not None:
            test = hypothesis.seed(self.settings.seed)(test)
        if self.database_key:
            inner = test.hypothesis.inner_test  # type: ignore[attr-defined]
            inner._hypothesis_internal_add_digest = self.database_key.encode()
        try:
            test()
        except ExampleMismatch as mismatch:
            return (
                "compiled output differs from eager\n"
                f"smallest failing example: {mismatch.example.describe()}\n"
                + mismatch.comparison.describe()
            )
        except CompileCheckError as error:
            original = fatal[0] if fatal else error
            raise original from original.__cause__
        return None
