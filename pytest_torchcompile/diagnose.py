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
from .compare import Comparison
from .compiling import CompileSession, compile_kwargs
from .devices import seed_generators
from .equivalence import EquivalenceCheck, ExampleMismatch, compare_runs
from .errors import CompileCheckError, CompileFailedError, NotCompiledError
from .findings import EXCUSE_FACTOR, STAGES, Diagnosis, ModuleFinding, Rung, Verdict
from .inputs import Example
from .running import RNG_SEED, copy_to, first_line, observe_eager, restore, snapshot
from .settings import DEFAULT_BACKEND, DEFAULT_MODE, CompileSettings

DIAGNOSE_TIME = {"auto": 120.0, "deep": 600.0}  # default budgets, seconds


def diagnose_budget(settings: CompileSettings) -> float:
    """``diagnose_time`` where given, else the level's default: ``deep`` bisects, and
    the bisector compiles the model tens of times."""
    if settings.diagnose_time is not None:
        return float(settings.diagnose_time)
    return DIAGNOSE_TIME.get(settings.diagnose, DIAGNOSE_TIME["auto"])


def excused_by_eager(eager: Comparison, compiled: Comparison | None) -> bool | None:
    """Whether eager's own run-to-run difference accounts for compiled's: within
    ``EXCUSE_FACTOR`` of it on the leaves where compiled failed. None where there is no
    comparison (a compile error is never noise)."""
    if compiled is None:
        return None
    failing = {leaf.path: leaf.max_abs for leaf in compiled.failures}
    if not failing:
        return True
    own = {leaf.path: leaf.max_abs for leaf in eager.leaves}
    return all(diff <= EXCUSE_FACTOR * own.get(path, 0.0) for path, diff in failing.items())


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
        comparison: Comparison | None = None,
        fallback_random: bool = True,
        compile_seconds: float = 0.0,
        cache_dir: str | None = None,
        write_repro: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``comparison`` is the check's failing one (None for a compile error);
        ``fallback_random`` and ``cache_dir`` as the check compiled; ``compile_seconds``
        what one compile took it, so no compile starts that the budget cannot hold."""
        self.model = model
        self.state = state
        self.example = example
        self.settings = settings
        self.comparison = comparison
        self.fallback_random = fallback_random
        self.compile_seconds = compile_seconds
        self.cache_dir = cache_dir
        self.write_repro = write_repro
        self.budget = diagnose_budget(settings)
        self.deadline = time.monotonic() + self.budget
        self._found: dict[str, Any] = {}
        self._notes: list[str] = []
        self._partly: list[str] = []
        self._random = False  # eager draws random numbers (decompositions draw others)

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
                self._partly.append(name)
            except Exception as error:  # a diagnosis must never replace the failure it explains
                self._notes.append(f"{name}: could not run ({type(error).__name__}: {error})")
        return Diagnosis(
            level=self.settings.diagnose,
            not_reached=tuple(not_reached + [f"{name} (partly)" for name in self._partly]),
            notes=tuple(self._notes),
            seconds=time.monotonic() - start,
            budget=self.budget,
            **self._found,
        )

    # -- the steps: each returns True when nothing after it applies -------------------------

    def _eager_twice(self) -> bool:
        """Eager twice with the same seed (must agree), then with another (differs where
        the model draws random numbers: a decomposition then draws others, rightly)."""
        settings, device = self.settings, self.settings.device
        model = copy_to(self.model, device)
        runs = []
        for seed in (RNG_SEED, RNG_SEED, RNG_SEED + 1):
            restore(model, self.state)
            runs.append(
                observe_eager(
                    model, model, self.example, grad=settings.grad, device=device, seed=seed
                )
            )
        comparison = compare_runs(runs[0], runs[1], settings)
        self._found["eager_deterministic"] = comparison.passed
        if comparison.passed:
            self._random = not compare_runs(runs[0], runs[2], settings).passed
            return False
        self._found["eager_difference"] = _first_failure(comparison.describe())
        beyond = excused_by_eager(comparison, self.comparison) is not True
        self._found["compiled_beyond_eager"] = beyond
        return not beyond

    def _ladder(self) -> bool:
        rungs = []
        for stage, settings in self._rungs():
            self._check_time()
            verdict = self._judge(self.model, self.state, self.example, settings)
            if self._random and stage == "aot_eager_decomp_partition" and verdict.diverges:
                verdict = Verdict(
                    "not judged",
                    "the model draws random numbers, which decompositions draw differently "
                    "from eager (inductor is judged with eager's draws)",
                )
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
        settings = self.settings
        if not folder or not self._inductor_alone_diverges():
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
        settings = self.settings
        calls = _capture_calls(
            copy_to(model, settings.device),
            self.state,
            self.example,
            settings.device,
            settings.grad,
        )
        found = self._localise("", model, own, calls)
        self._found["module"] = found
        if found.stopped:
            self._partly.append("module search")
        return False

    def _bisect(self) -> bool:
        if self.settings.backend != DEFAULT_BACKEND:
            self._notes.append(
                f"bisection: not run (torch's compiler bisector bisects inductor; the backend "
                f"is {self.settings.backend!r})"
            )
            return False
        if not self._inductor_alone_diverges():
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

        def good() -> bool | None:
            if not self._time_for_a_compile():
                return None
            verdict = self._judge(self.model, self.state, self.example, self.settings)
            return not verdict.diverges

        found = compat.run_bisector(bisector, good)
        if found is None:
            self._partly.append("bisection")
        self._found["bisection"] = found
        return False

    # -- the module search ------------------------------------------------------------------

    def _localise(
        self, path: str, module: torch.nn.Module, verdict: Verdict, calls: dict[str, _Call]
    ) -> ModuleFinding:
        matched, unjudged = 0, []
        for child_path, child in _children(path, module, calls):
            if not self._time_for_a_compile():
                return ModuleFinding(path, type(module).__name__, verdict, stopped=True)
            call = calls[child_path]
            child_verdict = self._judge(child, call.state, call.example, self.settings)
            if child_verdict.diverges:
                return self._localise(child_path, child, child_verdict, calls)
            if child_verdict.outcome == "matches":
                matched += 1
            else:
                unjudged.append(f"{child_path}: {child_verdict.outcome} ({child_verdict.detail})")
        return ModuleFinding(path, type(module).__name__, verdict, matched, tuple(unjudged))

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
        session = CompileSession(
            settings, fallback_random=self.fallback_random, cache_dir=self.cache_dir
        )
        try:
            with session:
                check = EquivalenceCheck(model, None, settings, session)
                comparison = check.check_example(example)
        except ExampleMismatch as mismatch:
            return Verdict("differs", _first_failure(mismatch.comparison.describe()))
        except NotCompiledError as error:
            return Verdict("not compiled", first_line(str(error)))
        except CompileFailedError as error:
            return Verdict("raises", _error_line(str(error)))
        except CompileCheckError as error:
            return Verdict("not judged", first_line(str(error)))
        except Exception as error:  # a diagnosis reports what it could not do, never raises
            return Verdict("not judged", f"{type(error).__name__}: {first_line(str(error))}")
        worst = comparison.worst
        return Verdict("matches", f"greatest difference {worst.max_abs:.3g}" if worst else "")

    def _inductor_alone_diverges(self) -> bool:
        """The ladder climbed every rung and only inductor, the last, diverged: what the
        bisector and the minifier's graph repro are for."""
        ladder: tuple[Rung, ...] = self._found.get("ladder", ())
        return (
            self.settings.backend == DEFAULT_BACKEND
            and len(ladder) == len(STAGES) + 1
            and ladder[-1].verdict.diverges
        )

    def _time_for_a_compile(self) -> bool:
        return time.monotonic() + self.compile_seconds <= self.deadline

    def _check_time(self) -> None:
        if not self._time_for_a_compile():
            raise _OutOfTime


def _capture_calls(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    example: Example,
    device: str,
    grad: bool,
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
        # As the check ran: under no_grad some modules (eval-mode attention) take fused
        # fast paths that never call their submodules.
        with torch.set_grad_enabled(grad):
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
    """Inputs as they were at the call: tensors detached and cloned (an activation has a
    graph that will not deep-copy), containers rebuilt, anything else deep-copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_copy_inputs(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy_inputs(v) for k, v in value.items()}
    try:
        return copy.deepcopy(value)
    except Exception:  # an input that will not copy (a handle, a generator): share it
        return value


def _error_line(text: str) -> str:
    """The error itself (``RuntimeError: ...``) from a described compile error, whose
    first line only says which compile raised."""
    for line in text.splitlines()[1:]:
        if re.match(r"\s*[\w.]+(Error|Exception|Failed|Unsupported)\b.*?: ", line):
            return line.strip()
    return first_line(text)


def _first_failure(described: str) -> str:
    """A comparison's first failing leaf, on one line, and how many more failed."""
    lines = described.splitlines()
    leaves = [ln for ln in lines if ln and not ln.startswith(" ")]
    text = " ".join(ln.strip() for ln in lines[:2]) if lines else ""
    if len(leaves) > 1:
        text += f" (and {len(leaves) - 1} more leaves)"
    return text
