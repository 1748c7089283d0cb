"""Compile under one mode, in isolation, and account for what Dynamo did.

A ``CompileSession`` starts from a clean Dynamo state, makes the recompile-limit fallback
raise instead of silently running eager, and reads graph breaks, recompiles and compile
time from Dynamo's own per-frame compilation metrics (every entry, kept for the whole
check) and graph-break log. Where CUDA graphs are in play (a CUDA device under
``reduce-overhead``, ``max-autotune`` or ``triton.cudagraphs``), it also collects each graph
torch ran without them, with torch's stated reason (``cudagraph_skips``). Every private
torch API it touches lives in ``torch_compat``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch

from . import torch_compat as compat
from .cudagraph_skips import CudagraphSkip, CudagraphSkips
from .errors import CompileFailedError, NotCompiledError
from .listening import listening
from .settings import DEFAULT_MODE, CompileSettings, is_target
from .torch_compat import FrameMetrics
from .tracebacks import describe_compile_error


@dataclasses.dataclass(frozen=True)
class GraphBreak:
    reason: str
    location: str | None

    def describe(self) -> str:
        return f"{self.location or 'unknown location'}: {self.reason}"


SIZE_SPECIALISATION_HINT = (
    "Dynamo specialises dims of size 0 and 1, so a size-1 example compiles a graph of its "
    'own: start dims at 2, e.g. dims={"batch": (2, 32)}'
)
DUCK_SIZING_HINT = (
    "the first example drew equal sizes for two dims, which Dynamo then assumes stay equal "
    '(duck sizing): give the dims different lower bounds, e.g. dims={"batch": (2, 8), '
    '"seq": (3, 64)}'
)
_HINTS = {"size 0/1": SIZE_SPECIALISATION_HINT, "duck sizing": DUCK_SIZING_HINT}


@dataclasses.dataclass(frozen=True)
class Recompile:
    function: str
    reason: str
    hint: str | None = None  # how to avoid it, where the cause is known

    def describe(self) -> str:
        text = f"{self.function}: {self.reason}"
        return f"{text} ({self.hint})" if self.hint else text


@dataclasses.dataclass(frozen=True)
class CompileStats:
    """What compiling cost and produced, over every call a check made."""

    graphs: int = 0
    graph_breaks: tuple[GraphBreak, ...] = ()
    recompiles: tuple[Recompile, ...] = ()
    compile_seconds: float = 0.0  # the first call's frames: what a user waits for once
    compile_seconds_total: float = 0.0  # every frame, recompiles and backward graphs included
    frames: int = 0  # frames (and backward graphs) compiled, recompiles included
    cache: dict[str, int] = dataclasses.field(default_factory=dict)  # cache hits and misses
    cudagraphs: bool = False  # CUDA graphs were in play, so skips were counted
    cudagraph_skips: tuple[CudagraphSkip, ...] = ()  # one per graph skipped, as torch counts
    target: str | None = None  # a deployment target ("export", "aoti"), not torch.compile
    package_bytes: int | None = None  # the AOTInductor package's size
    package_cached: bool | None = None  # the package came from the cache (not rebuilt)
    notes: tuple[str, ...] = ()  # what the target could not check, and why

    @property
    def cache_state(self) -> str | None:
        """ "warm" (every compile-cache lookup hit), "cold" (every one missed), "mixed", or
        None where nothing was looked up (a backend without inductor's caches)."""
        if self.package_cached is not None:
            return "warm" if self.package_cached else "cold"
        hits = self.cache.get("fxgraph_hit", 0) + self.cache.get("autograd_hit", 0)
        misses = self.cache.get("fxgraph_miss", 0) + self.cache.get("autograd_miss", 0)
        if not hits and not misses:
            return None
        return "warm" if not misses else "cold" if not hits else "mixed"


def compile_stats(
    frames: Sequence[FrameMetrics],
    *,
    graphs: int = 0,
    graph_breaks: Sequence[GraphBreak] = (),
    first_call_frames: int | None = None,
    compiled_as: str | None = None,
) -> CompileStats:
    """Stats from Dynamo's metrics, oldest first. ``first_call_frames``: how many entries
    the first call produced (None: all). ``compiled_as``: the label of the compiled model,
    for frames that torch's own wrappers compiled on its behalf."""
    first = len(frames) if first_call_frames is None else first_call_frames
    recompiles = []
    function = compiled_as or "?"
    for frame in frames:
        if frame.function is not None:  # backward graphs name no function: keep the last
            function = frame_owner(frame, compiled_as)
        if frame.recompile_reason:
            hint = _HINTS.get(compat.recompile_cause(frame.recompile_reason) or "")
            recompiles.append(Recompile(function, frame.recompile_reason, hint))
    return CompileStats(
        graphs=graphs,
        graph_breaks=tuple(graph_breaks),
        recompiles=tuple(recompiles),
        compile_seconds=sum(f.seconds for f in frames[:first]),
        compile_seconds_total=sum(f.seconds for f in frames),
        frames=len(frames),
    )


def frame_owner(frame: FrameMetrics, compiled_as: str | None) -> str:
    """``name (file:line)`` of the user function a compiled frame belongs to.

    ``torch.compile(module)`` on a module whose ``forward`` torch itself defines (an
    ``nn.Sequential``, a subclass that inherits ``forward``) compiles torch's wrapper frame
    (``inner`` in ``torch/_dynamo/external_utils.py``), not the user's: such frames are
    attributed to the model that was compiled.
    """
    if compiled_as is not None and compat.in_torch(frame.filename):
        return compiled_as
    return frame.where


def callable_label(model: Any) -> str | None:
    """``name (file:line)`` for a compiled model: its ``forward`` (or the function itself);
    where torch defines that ``forward``, the user's class that inherits it."""
    target = model.forward if isinstance(model, torch.nn.Module) else model
    function = inspect.unwrap(getattr(target, "__func__", target))
    code = getattr(function, "__code__", None)
    if code is not None and not compat.in_torch(code.co_filename):
        return f"{code.co_name} ({code.co_filename}:{code.co_firstlineno})"
    cls = type(model) if isinstance(model, torch.nn.Module) else None
    name = f"{cls.__qualname__}.forward" if cls else getattr(function, "__qualname__", None)
    if name is None:
        return None
    try:
        source = cls if cls is not None and not compat.in_torch(inspect.getfile(cls)) else function
        return f"{name} ({inspect.getsourcefile(source)}:{inspect.getsourcelines(source)[1]})"
    except (TypeError, OSError):
        return name


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
        options = {}
        if settings.mode != DEFAULT_MODE:
            options.update(compat.inductor_mode_options(settings.mode, settings.dynamic))
        options.update(settings.options or {})
        if options:
            kwargs["options"] = options
    elif settings.options:
        kwargs["options"] = dict(settings.options)
    return kwargs


def cudagraphs_unused(settings: CompileSettings) -> str | None:
    """Why CUDA graphs are not in play under ``settings``; None where they are."""
    if is_target(settings.mode):
        return f"the {settings.mode} target does not run under torch.compile's CUDA graphs"
    if torch.device(settings.device).type != "cuda":
        return f"CUDA graphs exist on CUDA devices only, and this check ran on {settings.device!r}"
    if settings.backend == "cudagraphs":  # Dynamo's own CUDA graphs backend
        return None
    if settings.backend != "inductor":
        return f"backend {settings.backend!r} does not make CUDA graphs"
    options = compile_kwargs(settings).get("options", {})
    if options.get("triton.cudagraphs", compat.inductor_cudagraphs_default()):
        return None
    return (
        f"mode {settings.mode!r} does not use CUDA graphs (reduce-overhead and max-autotune "
        "do, or options={'triton.cudagraphs': True})"
    )


class CheckSession(Protocol):
    """The compiled side of a check, as the search, comparison and timing see it:
    ``CompileSession`` (torch.compile) and ``DeploymentSession`` (export, AOTInductor)."""

    settings: CompileSettings
    fallback_random: bool
    cudagraphs: bool
    ends: bool  # the search always runs the range's ends (a deployed program serves them)
    diagnosable: bool  # a failure can be diagnosed by climbing torch.compile's stages
    unobserved: tuple[str, ...]  # parts of a run (e.g. "buffers") the compiled side hides

    def compile(self, model: Callable[..., Any]) -> Callable[..., Any]: ...

    def call(self, fn: Callable[[], Any]) -> Any: ...

    def before_example(self) -> None:
        """Called before each example, after the models' state is restored."""

    def after_search(self, compiled: Callable[..., Any]) -> list[str]:
        """Failures of what the target must do beyond matching eager in range."""

    def stats(self) -> CompileStats: ...

    def expect_replay(self, state: str | None, calls: int) -> None: ...


class CompileSession:
    """One isolated compile check. Use as a context manager around every compiled call."""

    ends = False  # Hypothesis leans to small sizes on its own
    diagnosable = True
    unobserved: tuple[str, ...] = ()

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
        self._cache_before: dict[str, int] = {}
        self._compiled_as: list[str] = []
        self._limit_error: type[BaseException] = compat.recompile_limit_error()
        self.cudagraphs = cudagraphs_unused(settings) is None
        self._skips = CudagraphSkips()

    def __enter__(self) -> CompileSession:
        try:
            return self._enter()
        except BaseException:  # undo whatever was already patched
            self._stack.close()
            raise

    def _enter(self) -> CompileSession:
        compat.reset()
        compat.clear_compilation_metrics()
        stack = self._stack
        stack.enter_context(compat.keep_all_compilation_metrics())
        stack.enter_context(compat.capture_recompile_reasons())
        if self.cache_dir is not None:
            stack.enter_context(environ("TORCHINDUCTOR_CACHE_DIR", self.cache_dir))
        stack.enter_context(compat.fail_on_recompile_limit())
        stack.enter_context(compat.compile_errors_raise())
        if self.fallback_random and self.settings.backend == "inductor":
            stack.enter_context(compat.inductor_fallback_random())
        stack.enter_context(_capture_graph_breaks(self._on_graph_break))
        stack.enter_context(compat.quiet_structured_trace())
        if self.cudagraphs:
            self._skips.listen(stack)
        self._graphs_before = compat.graph_count()
        self._cache_before = compat.cache_counts()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def compile(self, model: Callable[..., Any]) -> Callable[..., Any]:
        try:
            label = callable_label(model)
        except Exception:  # a label is a nicety: never let it stop a compile
            label = None
        if label is not None:
            self._compiled_as.append(label)
        return torch.compile(model, **compile_kwargs(self.settings))

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run compiled code; turn Dynamo's failures into check errors users can act on.

        Under CUDA graphs each call starts a new step: the outputs of the last one are
        dropped by then, and a replay may overwrite them (torch cannot always tell when an
        iteration begins, e.g. a forward run twice before a backward). Leaving the session
        puts torch's step tracking back as it was, so a model handed back steps as usual."""
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        try:
            result = fn()
        except self._limit_error as error:
            raise NotCompiledError(self._limit_message()) from error
        except Exception as error:
            raise CompileFailedError(describe_compile_error(error, self.settings)) from error
        if self._first_frames is None:
            frames = compat.compilation_metrics()
            self._first_frames = len(frames)
            if self.graphs == 0:
                compat.check_graph_counter(self.graphs, frames)
                raise NotCompiledError(
                    "Dynamo captured no graph: the model ran entirely in eager, so there is "
                    "nothing compiled to check"
                    + "".join(f"\n  graph break at {b.describe()}" for b in self._breaks.values())
                )
        return result

    @property
    def graphs(self) -> int:
        return compat.graph_count() - self._graphs_before

    def before_example(self) -> None:
        """Restoring parameters and buffers in place is all a compiled module needs."""

    def after_search(self, compiled: Callable[..., Any]) -> list[str]:
        return []

    def stats(self) -> CompileStats:
        # One model per session is the rule; with several, torch's wrapper frames cannot
        # be told apart, so they keep torch's name.
        compiled_as = self._compiled_as[0] if len(set(self._compiled_as)) == 1 else None
        now = compat.cache_counts()
        stats = compile_stats(
            compat.compilation_metrics(),
            graphs=self.graphs,
            graph_breaks=tuple(self._breaks.values()),
            first_call_frames=self._first_frames,
            compiled_as=compiled_as,
        )
        cache = {k: now[k] - self._cache_before.get(k, 0) for k in now}
        skips = self._skips.skips() if self.cudagraphs else ()
        return dataclasses.replace(
            stats, cache=cache, cudagraphs=self.cudagraphs, cudagraph_skips=skips
        )

    def expect_replay(self, state: str | None, calls: int) -> None:
        """After ``calls`` calls on one input, CUDA graphs replay: where the last call did
        not (``state`` is the CUDA graph tree's), see ``CudagraphSkips.expect_replay``."""
        if self.cudagraphs:
            self._skips.expect_replay(state, calls)

    def _on_graph_break(self, brk: GraphBreak) -> None:
        self._breaks.setdefault((brk.reason, brk.location), brk)

    def _limit_message(self) -> str:
        lines = [
            f"Dynamo hit its recompile limit ({compat.recompile_limit()}) and would have "
            f"fallen back to eager; the remaining calls would not run compiled. Recompiles:",
        ]
        lines += [f"  {r.describe()}" for r in self.stats().recompiles]
        lines.append(
            f"Mark the varying dims dynamic (dynamic=True or {compat.MARK_DYNAMIC}), or "
            "narrow dims= to the shapes the model really sees"
        )
        return "\n".join(lines)


# -- graph-break log capture ------------------------------------------------------------------


def parse_graph_break(message: str, error: BaseException | None = None) -> GraphBreak:
    """'file:line' and 'headline: explanation (see link)' from Dynamo's graph-break log."""
    reason, location = compat.parse_graph_break_log(message, error)
    return GraphBreak(reason, location)


def _capture_graph_breaks(
    sink: Callable[[GraphBreak], None],
) -> contextlib.AbstractContextManager[None]:
    """Listen to Dynamo's ``graph_breaks`` log without printing it (unless the user did)."""

    def hear(record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        sink(parse_graph_break(record.getMessage(), error))

    return listening(compat.graph_break_loggers(), logging.DEBUG, hear, pin_level=True)


@contextlib.contextmanager
def environ(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
