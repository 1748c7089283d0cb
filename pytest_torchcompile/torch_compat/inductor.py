"""Inductor's tools: the compiler bisector, portable compile-cache artifacts, and the
minifier's standalone graph repro."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._base import _first
from .dynamo import inductor_option_names

# -- inductor's compiler bisector (diagnose="deep") ----------------------------------------


def compiler_bisector() -> Any:
    """``CompilerBisector`` (torch>=2.6), or None where this torch has none."""
    try:
        from torch._inductor.compiler_bisector import CompilerBisector
    except ImportError:
        return None
    return CompilerBisector if hasattr(CompilerBisector, "do_bisect") else None


def run_bisector(bisector: Any, good: Callable[[], bool | None]) -> str | None:
    """Bisect inductor with ``good`` (True while the result is right, None once out of
    time); the culprit in a line, ``lowerings #2: relu``, or None if time ran out. The
    rungs below inductor are taken as good (the stage ladder has judged them).

    ``good`` never raises through ``do_bisect``: torch's own cleanup of the bisector's
    process-wide state (left on, it would swap the backend of every later
    ``torch.compile``) runs as ``do_bisect`` returns, and a second cleanup would delete
    the bisect folder of the user's inductor cache."""
    out_of_time = False

    def inductor_good() -> bool:
        nonlocal out_of_time
        if out_of_time or bisector.get_backend() != "inductor":
            return True  # once out of time: finish at once, the result discarded
        verdict = good()
        out_of_time = verdict is None
        return verdict is not False

    enabled = bisector.bisection_enabled
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = bisector.do_bisect(inductor_good)
    finally:
        if bisector.in_process_cache:  # torch's cleanup did not run: do it
            with contextlib.redirect_stdout(io.StringIO()):
                bisector.delete_bisect_status()
            bisector.in_process_cache = None
        bisector.bisection_enabled = enabled
    if out_of_time:
        return None
    if result is None:
        return "no stage fails under the bisector (the failure did not reproduce)"
    if not result.subsystem:
        return f"in {result.backend}, but no single subsystem was identified"
    if result.bisect_number is None or result.subsystem == result.debug_info:
        return f"{result.backend}: {result.subsystem} (a config switch)"
    info = f": {result.debug_info}" if result.debug_info else ""
    return f"{result.subsystem} #{result.bisect_number}{info}"


# -- portable compile-cache artifacts ("mega-cache") -----------------------------------------


def load_cache_artifacts(payload: bytes) -> dict[str, int]:
    """Write serialized artifacts into inductor's, AOTAutograd's... on-disk caches; how many
    of each kind were written. Raises ``ValueError`` where torch cannot read the payload."""
    load = _first("portable compile-cache artifacts", "torch.compiler:load_cache_artifacts")
    info = _quietly(load, payload)
    if info is None:
        raise ValueError("torch could not read these compile-cache artifacts")
    return {kind: len(keys) for kind, keys in info.artifacts.items() if keys}


def save_cache_artifacts() -> bytes | None:
    """Every compile-cache artifact this process wrote or hit, serialized; None if none."""
    save = _first("portable compile-cache artifacts", "torch.compiler:save_cache_artifacts")
    saved = save()
    return saved[0] if saved else None


def merge_cache_artifacts(payloads: Iterable[bytes]) -> tuple[bytes, dict[str, int]] | None:
    """One serialized payload holding every distinct artifact of ``payloads`` (and how many
    of each kind), or None if they hold none. torch serializes the artifacts of one process
    only; this reads several (a loaded file, each xdist worker's) and writes them as torch
    would, without touching any cache on disk. Raises ``ValueError`` on an unreadable one."""
    manager = _first(
        "torch's cache-artifact manager",
        "torch.compiler._cache:CacheArtifactManager",
    )
    write_one = _first(
        "torch's cache-artifact serializer",
        "torch.compiler._cache:_serialize_single_cache",
    )
    serializer = _first(
        "torch's appending byte serializer",
        "torch.utils._appending_byte_serializer:AppendingByteSerializer",
    )
    merged: dict[str, list[Any]] = {}
    seen: set[tuple[str, str, bytes]] = set()
    for payload in payloads:
        artifacts = _quietly(manager.deserialize, payload)
        if artifacts is None:
            raise ValueError("torch could not read these compile-cache artifacts")
        for kind, items in artifacts.items():
            for artifact in items:
                identity = (kind, artifact.key, artifact.content)
                if identity not in seen:
                    seen.add(identity)
                    merged.setdefault(kind, []).append(artifact)
    if not merged:
        return None
    writer = serializer(serialize_fn=write_one)
    writer.extend(merged.items())
    return writer.to_bytes(), {kind: len(items) for kind, items in merged.items()}


def _quietly(function: Callable[[bytes], Any], payload: bytes) -> Any:
    """torch logs a traceback at WARNING for an unreadable payload; the caller says it in
    one line instead."""
    log = logging.getLogger("torch.compiler._cache")
    previous = log.disabled
    log.disabled = True
    try:
        return function(payload)
    finally:
        log.disabled = previous


# -- the minifier's standalone graph repro -------------------------------------------------


def dynamo_graphs(model: Any, args: tuple, kwargs: dict, dynamic: bool | None) -> list[Any]:
    """The FX graphs Dynamo captures from one call, each with its example inputs."""
    graphs: list[tuple[Any, list[Any]]] = []

    def capture(gm: Any, example_inputs: list[Any]) -> Any:
        graphs.append((gm, list(example_inputs)))
        return gm.forward

    torch._dynamo.reset()
    try:
        torch.compile(model, backend=capture, dynamic=dynamic)(*args, **kwargs)
    finally:
        torch._dynamo.reset()
    return graphs


def graph_repro(
    graph: tuple[Any, list[Any]], backend: str, options: dict[str, Any], save_dir: str
) -> str:
    """The script PyTorch's minifier writes for one Dynamo graph (``after_dynamo``): it
    loads the graph's inputs from ``save_dir`` and checks ``backend`` against eager with
    ``same()``. Inductor's options are in its config dump, so the script compiles alike."""
    from torch._dynamo.repro.after_dynamo import generate_dynamo_fx_repro_string
    from torch._inductor import config as inductor_config

    gm, example_inputs = graph
    known = {k: v for k, v in options.items() if k in inductor_option_names()}
    with inductor_config.patch(known):
        return generate_dynamo_fx_repro_string(
            gm, example_inputs, backend, check_accuracy=True, save_dir=save_dir
        )
