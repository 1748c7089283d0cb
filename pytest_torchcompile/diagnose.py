"""Where a failed check goes wrong, found on its one shrunk example.

Cheapest questions first, within a time budget: does eager agree with itself; which stage
of the compiler stack first diverges (Dynamo capture, AOTAutograd, decompositions and the
partitioner, then the check's own backend); which submodule, compiled alone on the inputs
it saw in the failing run, diverges while its children match; and, at level ``deep``,
which inductor pass, lowering or config switch torch's compiler bisector blames. Every
compiled run is judged exactly as the check judges (``EquivalenceCheck.check_example``).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from . import torch_compat as compat
from .compiling import CompileSession, compile_kwargs
from .devices import seed_generators
from .equivalence import EquivalenceCheck, ExampleMismatch, compare_runs
from .errors import CompileCheckError, CompileFailedError, NotCompiledError
from .findings import STAGES, Diagnosis, ModuleFinding, Rung, Verdict
from .inputs import Example
from .running import RNG_SEED, copy_to, observe_eager, restore, snapshot
from .settings import DEFAULT_BACKEND, DEFAULT_MODE, CompileSettings

DIAGNOSE_TIME = {"auto": 120.0, "deep": 600.0}  # default budgets, seconds


def diagnose_budget(settings: CompileSettings) -> float:
    """``diagnose_time`` where given, else the level's default: ``deep`` bisects, and
    the bisector compiles the model tens of times."""
    if settings.diagnose_time is not None:
        return float(settings.diagnose_time)
    return DIAGNOSE_TIME.get(settings.diagnose, DIAGNOSE_TIME["auto"])


@dataclasses.dataclass(frozen=True)
class _Call:
    """A submodule's first call in the failing run: its inputs and its state then."""

    example: Example
    state: dict[str, torch.Tensor]


class _OutOfTime(Exception):
    pass


class Diagnoser:
    """Diagnoses one failed check. ``model`` is the user's model as the check received it
    and ``state`` its parameters and buffers then; neither is changed."""

    def __init__(
        self,
        model: Any,
        state: dict[str, torch.Tensor],
        example: Example,
        settings: CompileSettings,
        *,
        cache_dir: str | None = None,
        write_repro: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.model = model
        self.state = state
        self.example = example
        self.settings = settings
        self.cache_dir = cache_dir
        self.write_repro = write_repro
        self.budget = diagnose_budget(settings)
        self.deadline = time.monotonic() + self.budget
        self._found: dict[str, Any] = {}
        self._notes: list[str] = []

    def run(self) -> Diagnosis:
        start = time.monotonic()
        try:
            self._found["repro_dir"] = self.write_repro()
        except Exception as error:  # a repro is a help, never a reason to lose the diagnosis
            self._notes.append(f"repro not written: {type(error).__name__}: {error}")
        steps: list[tuple[str, Callable[[], bool]]] = [
            ("eager against itself", self._eager_twice),
            ("stage ladder", self._ladder),
            ("graph repro", self._graph_repro),
            ("module search", self._modules),
        ]
        if self.settings.diagnose == "deep":
            steps.append(("bisection", self._bisect))
        not_reached = []
        for name, step in steps:
            if time.monotonic() > self.deadline:
                not_reached.append(name)
                continue
            try:
                if step():  # the step found the answer: nothing after it applies
                    break
            except _OutOfTime:
                not_reached.append(f"{name} (partly)")
            except Exception as error:  # a diagnosis must never replace the failure it explains
                self._notes.append(f"{name}: could not run ({type(error).__name__}: {error})")
        return Diagnosis(
            level=self.settings.diagnose,
            not_reached=tuple(not_reached),
            notes=tuple(self._notes),
            seconds=time.monotonic() - start,
            budget=self.budget,
            **self._found,
        )

    # -- the steps: each returns True when nothing after it applies -------------------------

    def _eager_twice(self) -> bool:
        settings, device = self.settings, self.settings.device
        model = copy_to(self.model, device)
        runs = []
        for _ in range(2):
            restore(model, self.state)
            runs.append(
                observe_eager(model, model, self.example, grad=settings.grad, device=device)
            )
        comparison = compare_runs(runs[0], runs[1], settings)
        self._found["eager_deterministic"] = comparison.passed
        if comparison.passed:
            return False
        self._found["eager_difference"] = _first_failure(comparison.describe())
        return True

    def _ladder(self) -> bool:
        rungs = []
        for stage, settings in self._rungs():
            self._check_time()
            verdict = self._judge(self.model, self.state, self.example, settings)
            rungs.append(Rung(stage, verdict))
            self._found["ladder"] = tuple(rungs)
            if verdict.diverges:
                break
        return False

    def _graph_repro(self) -> bool:
        """Beside repro.py, where inductor alone diverges on a model Dynamo captures as one
        graph: the standalone graph script of PyTorch's minifier, the file its bug reports
        ask for."""
        folder = self._found.get("repro_dir")
        ladder: tuple[Rung, ...] = self._found.get("ladder", ())
        settings = self.settings
        if not folder or settings.backend != DEFAULT_BACKEND or len(ladder) != len(STAGES) + 1:
            return False
        if not ladder[-1].verdict.diverges:
            return False
        model = copy_to(self.model, settings.device)
        restore(model, self.state)
        args, kwargs = _copy_inputs((self.example.args, self.example.kwargs))
        with torch.set_grad_enabled(settings.grad):
            graphs = compat.dynamo_graphs(model, args, kwargs, settings.dynamic)
        if len(graphs) != 1:
            self._notes.append(
                f"graph repro: not written (Dynamo captured {len(graphs)} graphs; the "
                "minifier's standalone repro covers one)"
            )
            return False
        options = dict(compile_kwargs(settings).get("options") or {})
        script = compat.graph_repro(graphs[0], "inductor", options, f"{folder}/graph_inputs")
        with open(f"{folder}/graph_repro.py", "w") as file:
            file.write(script)
        self._found["graph_repro"] = f"{folder}/graph_repro.py"
        return False

    def _modules(self) -> bool:
        model = self.model
        if not isinstance(model, torch.nn.Module) or not any(True for _ in model.children()):
            return False
        ladder: tuple[Rung, ...] = self._found.get("ladder", ())
        own = ladder[-1].verdict if ladder else Verdict("differs")
        if ladder and not own.diverges:  # the failure did not reproduce whole: no search
            return False
        calls = _capture_calls(
            copy_to(model, self.settings.device), self.state, self.example, self.settings.device
        )
        self._found["module"] = self._localise("", model, own, calls)
        return False

    def _bisect(self) -> bool:
        if self.settings.backend != DEFAULT_BACKEND:
            self._notes.append(
                f"bisection: not run (torch's compiler bisector bisects inductor; the backend "
                f"is {self.settings.backend!r})"
            )
            return False
        ladder: tuple[Rung, ...] = self._found.get("ladder", ())
        if not ladder or not ladder[-1].verdict.diverges or len(ladder) < len(STAGES) + 1:
            self._notes.append(
                "bisection: not run (it bisects inductor, and the stage ladder did not show "
                "inductor alone diverging)"
            )
            return False
        bisector = compat.compiler_bisector()
        if bisector is None:
            self._notes.append(
                f"bisection: this torch ({torch.__version__}) has no compiler bisector "
                "(torch._inductor.compiler_bisector, torch>=2.6)"
            )
            return False

        def good() -> bool:
            self._check_time()
            verdict = self._judge(self.model, self.state, self.example, self.settings)
            return not verdict.diverges

        self._found["bisection"] = compat.run_bisector(bisector, good)
        return False

    # -- the module search ------------------------------------------------------------------

    def _localise(
        self, path: str, module: torch.nn.Module, verdict: Verdict, calls: dict[str, _Call]
    ) -> ModuleFinding:
        judged = 0
        for child_path, child in _children(path, module, calls):
            if time.monotonic() > self.deadline:
                return ModuleFinding(path, type(module).__name__, verdict, stopped=True)
            call = calls[child_path]
            child_verdict = self._judge(child, call.state, call.example, self.settings)
            if child_verdict.diverges:
                return self._localise(child_path, child, child_verdict, calls)
            judged += child_verdict.outcome == "matches"
        return ModuleFinding(path, type(module).__name__, verdict, children_match=judged > 0)

    # -- one judged compiled run -------------------------------------------------------------

    def _rungs(self) -> Iterator[tuple[str, CompileSettings]]:
        own = self.settings
        for stage in STAGES:
            if stage == own.backend:
                break
            yield stage, own.replace(backend=stage, mode=DEFAULT_MODE, options=None)
        label = own.backend
        if own.backend == DEFAULT_BACKEND:
            label += f" (mode={own.mode})"
        yield label, own

    def _judge(
        self,
        model: Any,
        state: dict[str, torch.Tensor],
        example: Example,
        settings: CompileSettings,
    ) -> Verdict:
        model = copy.deepcopy(model)
        restore(model, state)
        session = CompileSession(settings, cache_dir=self.cache_dir)
        try:
            with session:
                check = EquivalenceCheck(model, None, settings, session)
                comparison = check.check_example(example)
        except ExampleMismatch as mismatch:
            return Verdict("differs", _first_failure(mismatch.comparison.describe()))
        except NotCompiledError as error:
            return Verdict("not compiled", _first_line(str(error)))
        except CompileFailedError as error:
            return Verdict("raises", _error_line(str(error)))
        except CompileCheckError as error:
            return Verdict("not judged", _first_line(str(error)))
        except Exception as error:  # a diagnosis reports what it could not do, never raises
            return Verdict("not judged", f"{type(error).__name__}: {_first_line(str(error))}")
        worst = comparison.worst
        return Verdict("matches", f"greatest difference {worst.max_abs:.3g}" if worst else "")

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _OutOfTime


def _capture_calls(
    model: torch.nn.Module, state: dict[str, torch.Tensor], example: Example, device: str
) -> dict[str, _Call]:
    """Run eager once with hooks that keep each submodule's first inputs and state."""
    restore(model, state)
    calls: dict[str, _Call] = {}
    handles = []

    def keep(path: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            if path not in calls:
                kept_args, kept_kwargs = _copy_inputs((args, kwargs))
                calls[path] = _Call(Example(kept_args, kept_kwargs, example.dims), snapshot(module))

        return hook

    for path, sub in model.named_modules():
        if path:
            handles.append(sub.register_forward_pre_hook(keep(path), with_kwargs=True))
    try:
        seed_generators(device, RNG_SEED)
        with torch.no_grad():
            model(*_copy_inputs(example.args), **_copy_inputs(example.kwargs))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _children(
    path: str, module: torch.nn.Module, calls: dict[str, _Call]
) -> list[tuple[str, torch.nn.Module]]:
    """The children that ran, in the order they first ran. A container that is never
    called itself (``ModuleList``, ``ModuleDict``) stands aside for its children."""
    order = {p: i for i, p in enumerate(calls)}
    found: list[tuple[str, torch.nn.Module]] = []
    pending = [(f"{path}.{n}" if path else n, child) for n, child in module.named_children()]
    while pending:
        name, child = pending.pop(0)
        if name in order:
            found.append((name, child))
        else:
            pending += [(f"{name}.{n}", c) for n, c in child.named_children()]
    return sorted(found, key=lambda c: order[c[0]])


def _copy_inputs(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:  # an input that will not copy (a handle, a generator): share it
        return value


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def _error_line(text: str) -> str:
    """The error itself (``RuntimeError: ...``) from a described compile error, whose
    first line only says which compile raised."""
    for line in text.splitlines()[1:]:
        if re.match(r"\s*[\w.]+(Error|Exception|Failed|Unsupported)\b.*?: ", line):
            return line.strip()
    return _first_line(text)


def _first_failure(described: str) -> str:
    """A comparison's first failing leaf, on one line, and how many more failed."""
    lines = described.splitlines()
    leaves = [ln for ln in lines if ln and not ln.startswith(" ")]
    text = " ".join(ln.strip() for ln in lines[:2]) if lines else ""
    if len(leaves) > 1:
        text += f" (and {len(leaves) - 1} more leaves)"
    return text
