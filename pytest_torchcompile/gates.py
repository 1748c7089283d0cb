"""Gates over what a check measured: compile health (graph breaks, recompiles, compile
time, CUDA graph skips) and peak memory. Each failure lists its evidence; a gate that could
not apply is a note, never a silent pass."""

from __future__ import annotations

import warnings

from .compiling import CompileStats, cudagraphs_unused
from .settings import CompileSettings
from .timing import Timing


def health_failures(stats: CompileStats, settings: CompileSettings) -> list[str]:
    """Graph-break, recompile and compile-time gates; each failure lists the evidence."""
    failures = []
    if stats.target is None and (
        settings.max_graph_breaks is not None
        and len(stats.graph_breaks) > settings.max_graph_breaks
    ):
        failures.append(
            f"{len(stats.graph_breaks)} graph break(s), max_graph_breaks="
            f"{settings.max_graph_breaks}:"
            + "".join(f"\n  {b.describe()}" for b in stats.graph_breaks)
        )
    recompiles = settings.max_recompiles
    if stats.target is None and recompiles is not None and len(stats.recompiles) > recompiles:
        failures.append(
            f"{len(stats.recompiles)} recompile(s), max_recompiles={settings.max_recompiles}:"
            + "".join(f"\n  {r.describe()}" for r in stats.recompiles)
        )
    limit = settings.max_compile_time
    if limit is not None and stats.compile_seconds > limit:
        failures.append(
            f"first compile took {stats.compile_seconds:.2f} s, max_compile_time={limit:g} s"
        )
    skips = settings.max_cudagraph_skips
    if skips is not None and stats.cudagraphs and len(stats.cudagraph_skips) > skips:
        failures.append(
            f"{len(stats.cudagraph_skips)} CUDA graph skip(s), max_cudagraph_skips={skips}: "
            "these graphs run without CUDA graphs, torch says why:"
            + "".join(f"\n  {s.describe()}" for s in stats.cudagraph_skips)
        )
    return failures


def health_notes(stats: CompileStats, settings: CompileSettings) -> list[str]:
    """Gates that could not apply to this check: said in the record and warned, never
    passed in silence (a skip would hide the check's own verdict)."""
    notes = list(stats.notes)
    if stats.target is not None:
        for name in ("max_graph_breaks", "max_recompiles"):
            if getattr(settings, name) is not None:
                notes.append(
                    f"{name}={getattr(settings, name)} does not apply to the {stats.target} "
                    "target: export traces one whole graph, or fails"
                )
    skips = settings.max_cudagraph_skips
    if skips is None or stats.cudagraphs:
        return notes
    why = cudagraphs_unused(settings) or "CUDA graphs were not in play"
    return [*notes, f"max_cudagraph_skips={skips} was not checked: {why}"]


def memory_failures(timing: Timing, settings: CompileSettings) -> list[str]:
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
