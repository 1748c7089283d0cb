"""What a diagnosis found: the verdict of each compiled run, the stage ladder, the first
diverging module, and how they read in a failure message and in a record. Plain data:
``diagnose.py`` finds it."""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

# Eager's own run-to-run difference excuses compiled's only up to this factor.
EXCUSE_FACTOR = 10.0

# The ladder PyTorch's own triage climbs: each rung adds one layer of the stack.
STAGES = {
    "eager": "Dynamo capture",
    "aot_eager": "AOTAutograd",
    "aot_eager_decomp_partition": "decompositions and partitioner",
}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One compiled run of one example, judged as the check judges."""

    outcome: str  # "matches", "differs", "raises", "not compiled" or "not judged"
    detail: str = ""

    @property
    def diverges(self) -> bool:
        return self.outcome in ("differs", "raises")


@dataclasses.dataclass(frozen=True)
class Rung:
    stage: str  # a backend name; the check's own rung reads "inductor (mode=max-autotune)"
    verdict: Verdict


@dataclasses.dataclass(frozen=True)
class ModuleFinding:
    """The deepest submodule whose compiled output diverges while its children match."""

    path: str  # "" for the whole model
    class_name: str
    verdict: Verdict
    matched: int = 0  # children that matched compiled alone (each judged on its first call)
    unjudged: tuple[str, ...] = ()  # children that could not be judged alone, and why
    stopped: bool = False  # the time budget ran out before its children were all judged

    @property
    def children_match(self) -> bool:
        """Each child that ran was judged alone, and matched."""
        return self.matched > 0 and not self.unjudged

    def describe(self) -> str:
        name = self.path or "the model"
        if self.stopped:
            text = f"first diverging module: search stopped at {name} (time budget spent)"
            if self.path:
                text += f"; deepest diverging so far: {self.path} ({self.class_name})"
            return text
        if not self.path and not self.matched:
            text = "first diverging module: not found (no submodule could be judged alone)"
        elif not self.path:
            text = (
                f"first diverging module: none alone; {self._children_text('of the model')} "
                f"({self.class_name}) {self._verb()} compiled alone on the inputs they saw, so the "
                f"divergence lies between modules: in {self.class_name}.forward's own code "
                "or in fusion across its children"
            )
        else:
            text = f"first diverging module: {self.path} ({self.class_name}): {self.verdict.detail}"
            if self.matched:
                text += (
                    f"\n    {self._children_text(f'of {self.path}')} {self._verb()} compiled "
                    "alone: the "
                    f"divergence is in {self.class_name}.forward's own code or in fusion "
                    "across its children"
                )
        if self.unjudged:
            text += "\n    not judged alone: " + "; ".join(self.unjudged[:3])
        return text

    def _children_text(self, of: str) -> str:
        if self.unjudged:
            return f"{self.matched} of {self.matched + len(self.unjudged)} submodules {of}"
        return f"every submodule {of}" if not self.path else f"each child {of}"

    def _verb(self) -> str:
        return "match" if self.unjudged else "matches"


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    level: str
    eager_deterministic: bool | None = None
    eager_difference: str | None = None
    compiled_beyond_eager: bool = False  # eager varies, but compiled differs far more
    ladder: tuple[Rung, ...] = ()
    module: ModuleFinding | None = None
    bisection: str | None = None
    repro_dir: str | None = None
    graph_repro: str | None = None  # the minifier's one-graph script, where one was written
    not_reached: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    budget: float = 0.0

    @property
    def diverging_stage(self) -> str | None:
        return next((r.stage for r in self.ladder if r.verdict.diverges), None)

    @property
    def matching_stage(self) -> str | None:
        """The last rung that matches below the first that diverges."""
        last = None
        for rung in self.ladder:
            if rung.verdict.diverges:
                return last
            if rung.verdict.outcome == "matches":
                last = rung.stage
        return last

    def describe(self) -> str:
        lines = [f"diagnosis ({self.seconds:.0f} s):"]
        if self.eager_deterministic is False and self.compiled_beyond_eager:
            lines.append(
                f"  eager differs from itself on this example: {self.eager_difference}\n"
                "  the check's failure goes beyond that (compiled raised, or differs over "
                f"{EXCUSE_FACTOR:g}x eager's own difference): the diagnosis goes on, but "
                "the model is nondeterministic, so read what follows with care"
            )
        elif self.eager_deterministic is False:
            lines.append(
                f"  eager differs from itself on this example: {self.eager_difference}\n"
                "  compile is not to blame for this difference: the model is nondeterministic "
                "(a nondeterministic op, a private torch.Generator, uninitialised memory). "
                "Make it deterministic (eval mode, torch.use_deterministic_algorithms) to "
                "check it"
            )
        if self.ladder:
            lines.append(f"  {self._stage_line()}")
            lines.append(
                "  ladder: " + ", ".join(f"{r.stage} {r.verdict.outcome}" for r in self.ladder)
            )
        if self.module is not None:
            lines.append(f"  {self.module.describe()}")
        if self.bisection is not None:
            lines.append(f"  bisection: {self.bisection}")
        lines += [f"  {note}" for note in self.notes]
        if self.not_reached:
            lines.append(
                f"  not reached in the {self.budget:g} s budget (--compile-diagnose-time): "
                + ", ".join(self.not_reached)
            )
        if self.graph_repro:
            script = shlex.quote(self.graph_repro)
            lines.append(f"  the one FX graph, standalone (PyTorch's minifier): python {script}")
        if self.repro_dir:
            script = shlex.quote(f"{self.repro_dir}/repro.py")
            lines.append(f"  repro (no pytest run): python {script}")
        return "\n".join(lines)

    def _stage_line(self) -> str:
        diverging = next((r for r in self.ladder if r.verdict.diverges), None)
        if diverging is None:
            last = self.ladder[-1]
            if last.verdict.outcome != "matches":
                return f"{last.stage} could not be judged alone: {last.verdict.detail}"
            return (
                f"did not reproduce: {last.stage} {last.verdict.outcome} on a fresh compile of "
                "this example (the failure may depend on state left by earlier examples, "
                "such as recompiles)"
            )
        matching = self.matching_stage
        verb = "raises" if diverging.verdict.outcome == "raises" else "diverges"
        text = f"{verb} at: {diverging.stage}"
        what = STAGES.get(diverging.stage)
        if what:
            text += f" ({what})"
        text += f"; matches through: {matching or 'nothing (the first stage already fails)'}"
        if diverging.verdict.outcome == "raises" and matching:
            text += f"\n  ({matching} compiles; {diverging.stage} raises: report it there)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The record's ``diagnosis``: flat enough for CI to group failures by stage."""
        return {
            "level": self.level,
            "eager_deterministic": self.eager_deterministic,
            "eager_difference": self.eager_difference,
            "diverging_stage": self.diverging_stage,
            "matching_stage": self.matching_stage,
            "ladder": {r.stage: r.verdict.outcome for r in self.ladder},
            "module": None
            if self.module is None
            else {
                "path": self.module.path,
                "class": self.module.class_name,
                "detail": self.module.verdict.detail,
                "children_match": self.module.children_match,
                "stopped": self.module.stopped,
            },
            "bisection": self.bisection,
            "repro_dir": self.repro_dir,
            "graph_repro": self.graph_repro,
            "not_reached": list(self.not_reached),
            "notes": list(self.notes),
            "seconds": round(self.seconds, 2),
        }
