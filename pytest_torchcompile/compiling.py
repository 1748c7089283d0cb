"""Compile under one mode, in isolation, and account for what Dynamo did.

A ``CompileSession`` starts from a clean Dynamo state, makes the recompile-limit fallback
raise instead of silently running eager, and reads graph breaks, recompiles and compile
time from Dynamo's own per-frame compilation metrics and graph-break log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch._dynamo
from torch._dynamo.utils import clear_compilation_metrics, counters, get_compilation_metrics

from .errors import CompileFailedError, NotCompiledError
from .settings import DEFAULT_MODE, CompileSettings


@dataclasses.dataclass(frozen=True)
class GraphBreak:
    reason: str
    location: str | None

    def describe(self) -> str:
        return f"{self.location or 'unknown location'}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Recompile:
    function: str
    reason: str

    def describe(self) -> str:
        return f"{self.function}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class CompileStats:
    """What compiling cost and produced, over every call a check made."""

    graphs: int = 0
    graph_breaks: tuple[GraphBreak, ...] = ()
    recompiles: tuple[Recompile, ...] = ()
    compile_seconds: float = 0.0  # the first call's frames: what a user waits for once


def compile_kwargs(settings: CompileSettings) -> dict[str, Any]:
    """``torch.compile`` arguments; a mode's options merge with the user's ``options``.

    torch refuses ``mode`` and ``options`` together, so a mode is expanded into the options
    it stands for (as ``torch.compile`` does itself), with the user's options on top.
    """
    kwargs: dict[str, Any] = {
        "backend": settings.backend,
        "dynamic": settings.dynamic,
        "fullgraph": settings.fullgraph,
    }
    if settings.backend == "inductor":
        from torch._inductor import list_mode_options

        options = {}
        if settings.mode != DEFAULT_MODE:
            options.update(list_mode_options(settings.mode, settings.dynamic))
        options.update(settings.options or {})
        if options:
            kwargs["options"] = options
    elif settings.options:
        kwargs["options"] = dict(settings.options)
    return kwargs


class CompileSession:
    """One isolated compile check. Use as a context manager around every compiled call."""

    def __init__(
        self,
        settings: CompileSettings,
        *,
        fallback_random: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        self.settings = settings
        self.fallback_random = fallback_random
        self.cache_dir = cache_dir
        self._stack = contextlib.ExitStack()
        self._breaks: dict[tuple[str, str | None], GraphBreak] = {}
        self._first_frames: int | None = None
        self._graphs_before = 0

    def __enter__(self) -> CompileSession:
        torch.compiler.reset()
        clear_compilation_metrics()
        stack = self._stack
        if self.cache_dir is not None:
            stack.enter_context(_environ("TORCHINDUCTOR_CACHE_DIR", self.cache_dir))
        stack.enter_context(torch._dynamo.config.patch(fail_on_recompile_limit_hit=True))
        if self.fallback_random and self.settings.backend == "inductor":
            from torch._inductor import config as inductor_config

            stack.enter_context(inductor_config.patch(fallback_random=True))
        stack.enter_context(_capture_graph_breaks(self._on_graph_break))
        stack.enter_context(_quiet_structured_trace())
        self._graphs_before = counters["stats"]["unique_graphs"]
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def compile(self, model: Callable[..., Any]) -> Callable[..., Any]:
        return torch.compile(model, **compile_kwargs(self.settings))

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run compiled code; turn Dynamo's failures into check errors users can act on."""
        try:
            result = fn()
        except torch._dynamo.exc.FailOnRecompileLimitHit as error:
            raise NotCompiledError(self._limit_message()) from error
        except Exception as error:
            raise CompileFailedError(describe_compile_error(error, self.settings)) from error
        if self._first_frames is None:
            self._first_frames = len(get_compilation_metrics())
            if self.graphs == 0:
                raise NotCompiledError(
                    "Dynamo captured no graph: the model ran entirely in eager, so there is "
                    "nothing compiled to check"
                    + "".join(f"\n  graph break at {b.describe()}" for b in self._breaks.values())
                )
        return result

    @property
    def graphs(self) -> int:
        return counters["stats"]["unique_graphs"] - self._graphs_before

    def stats(self) -> CompileStats:
        metrics = list(get_compilation_metrics())
        seconds = [m.entire_frame_compile_time_s or 0.0 for m in metrics]
        first = self._first_frames if self._first_frames is not None else len(metrics)
        recompiles = []
        function = "?"
        for m in metrics:
            if m.co_name is not None:  # the entry that hit the limit names no function
                function = f"{m.co_name} ({m.co_filename}:{m.co_firstlineno})"
            reason = getattr(m, "recompile_reason", None)
            if reason:
                recompiles.append(Recompile(function, reason))
        return CompileStats(
            graphs=self.graphs,
            graph_breaks=tuple(self._breaks.values()),
            recompiles=tuple(recompiles),
            compile_seconds=sum(seconds[:first]),
        )

    def _on_graph_break(self, brk: GraphBreak) -> None:
        self._breaks.setdefault((brk.reason, brk.location), brk)

    def _limit_message(self) -> str:
        limit = torch._dynamo.config.recompile_limit
        lines = [
            f"Dynamo hit its recompile limit ({limit}) and would have fallen back to eager; "
            f"the remaining calls would not run compiled. Recompiles:",
        ]
        lines += [f"  {r.describe()}" for r in self.stats().recompiles]
        lines.append(
            "Mark the varying dims dynamic (dynamic=True or torch._dynamo.mark_dynamic), or "
            "narrow dims= to the shapes the model really sees"
        )
        return "\n".join(lines)


# -- graph-break log capture ------------------------------------------------------------------

_LOCATION = re.compile(r"in user code at (\S+?:\d+)")
_END_OF_REASON = re.compile(
    r"\n\s*(?:Hint:|Developer debug context:|For more details|User code traceback:)"
)
_LINK = re.compile(r"For more details about this graph break, please visit: (\S+)")


def parse_graph_break(message: str) -> GraphBreak:
    """'file:line' and 'headline: explanation (see link)' from Dynamo's graph-break log."""
    location = _LOCATION.search(message)
    block = message.split("Graph Break Reason:", 1)[-1]
    lines = [line.strip() for line in _END_OF_REASON.split(block)[0].splitlines() if line.strip()]
    explanation = next(
        (ln.removeprefix("Explanation:").strip() for ln in lines if ln.startswith("Explanation:")),
        None,
    )
    headlines = [ln for ln in lines if not ln.startswith("Explanation:")]
    reason = headlines[-1] if headlines else "unknown reason"
    if explanation:
        reason = f"{reason}: {explanation}"
    link = _LINK.search(message)
    if link:
        reason = f"{reason} (see {link.group(1)})"
    return GraphBreak(reason, location.group(1) if location else None)


@contextlib.contextmanager
def _capture_graph_breaks(sink: Callable[[GraphBreak], None]) -> Iterator[None]:
    """Listen to Dynamo's ``graph_breaks`` log without printing it (unless the user did)."""
    from torch._logging._internal import log_registry

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sink(parse_graph_break(record.getMessage()))

    handler = Handler(logging.DEBUG)
    saved = []
    for name in log_registry.artifact_log_qnames:
        if not name.endswith(".__graph_breaks"):
            continue
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        user_enabled = logger.isEnabledFor(logging.DEBUG) and logger.propagate
        logger.setLevel(logging.DEBUG)
        logger.propagate = user_enabled
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


@contextlib.contextmanager
def _quiet_structured_trace() -> Iterator[None]:
    """Keep torch's structured-trace records (empty DEBUG lines) out of pytest's captured
    logs, where they bury the failure message; untouched when TORCH_TRACE asks for them."""
    if os.environ.get("TORCH_TRACE"):
        yield
        return
    trace_log = logging.getLogger("torch.__trace")

    def drop(record: logging.LogRecord) -> bool:
        return False

    trace_log.addFilter(drop)
    try:
        yield
    finally:
        trace_log.removeFilter(drop)


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# -- compile errors --------------------------------------------------------------------------

_INTERNAL = (
    os.path.dirname(torch.__file__),
    os.path.dirname(__file__),
    f"{os.sep}hypothesis{os.sep}",
    f"{os.sep}_pytest{os.sep}",
    f"{os.sep}pluggy{os.sep}",
)


def describe_compile_error(error: BaseException, settings: CompileSettings) -> str:
    """Exception type, its first lines, and the user-code frame it points at."""
    text = str(error).strip()
    noise = ("Set TORCHDYNAMO_VERBOSE", "For even more developer context")
    lines_ = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    head = "\n".join(lines_[:3])
    lines = [
        f"compiling with mode={settings.mode}, backend={settings.backend} raised "
        f"{type(error).__module__}.{type(error).__name__}:",
        "  " + head.replace("\n", "\n  "),
    ]
    user_frame = _user_frame(text, error)
    if user_frame:
        lines.append(f"  in user code: {user_frame}")
    return "\n".join(lines)


def _user_frame(text: str, error: BaseException) -> str | None:
    marker = "from user code:"
    if marker in text:
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', text.split(marker)[1])
        if frames:
            path, line, func, code = frames[-1]
            return f"{path}:{line} in {func}: {code.strip()}"
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not any(part in frame.filename for part in _INTERNAL):
            return f"{frame.filename}:{frame.lineno} in {frame.name}: {frame.line}"
    return None
