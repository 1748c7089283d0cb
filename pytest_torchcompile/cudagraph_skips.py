"""The graphs a compile session's model ran without CUDA graphs, and torch's reasons.

A skip is silent otherwise: one WARNING line torch logs (and counts), a count alone (a
graph with no CUDA kernel), or nothing at all under graph partition; each costs the launch
overhead the mode was chosen to remove. Every private torch API it touches lives in
``torch_compat``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable

from . import torch_compat as compat
from .listening import listening


@dataclasses.dataclass(frozen=True)
class CudagraphSkip:
    """A compiled graph that runs without CUDA graphs, and torch's reason."""

    reason: str
    location: str | None = None  # the user's line torch blamed, where it named one

    def describe(self) -> str:
        return f"{self.location}: {self.reason}" if self.location else self.reason


# torch counts a skip without logging it for a graph with no CUDA kernel in it.
UNSTATED_SKIP = CudagraphSkip(
    "torch counted a CUDA graph skip without stating a reason (a graph with no CUDA "
    "kernel, e.g. one that computes only on the CPU)"
)


def parse_cudagraph_skip(message: str) -> CudagraphSkip | None:
    """A skip from torch's log message; None for the logger's other messages."""
    parsed = compat.parse_cudagraph_skip(message)
    return CudagraphSkip(*parsed) if parsed is not None else None


def capture_cudagraph_skips(
    sink: Callable[[CudagraphSkip], None],
) -> contextlib.AbstractContextManager[None]:
    """Listen to the WARNINGs torch logs for each CUDA graph skip. They still print as
    torch prints them, unless the user silenced the logger: then they are heard, not shown."""

    def hear(record: logging.LogRecord) -> None:
        skip = parse_cudagraph_skip(record.getMessage())
        if skip is not None:
            sink(skip)

    return listening(compat.cudagraph_skip_loggers(), logging.WARNING, hear)


class CudagraphSkips:
    """The skips of one session: those torch stated (logged and counted), one unstated
    entry per skip it only counted, and those it made in silence."""

    def __init__(self) -> None:
        self._stated: list[CudagraphSkip] = []  # torch logged them (and counted them)
        self._silent: list[CudagraphSkip] = []  # torch neither logged nor counted them
        self._counted_before = 0

    def listen(self, stack: contextlib.ExitStack) -> None:
        """Hear skips until ``stack`` closes."""
        stack.enter_context(capture_cudagraph_skips(self._stated.append))
        stack.enter_context(compat.hear_silent_cudagraph_skips(self._on_silent_skip))
        # a session marks a step at each call; the model handed back must not stay in
        # marked-step mode, where it records anew instead of replaying
        stack.enter_context(compat.cudagraph_steps_kept())
        self._counted_before = compat.cudagraph_skip_count()

    def skips(self) -> tuple[CudagraphSkip, ...]:
        counted = compat.cudagraph_skip_count() - self._counted_before
        unstated = [UNSTATED_SKIP] * max(counted - len(self._stated), 0)
        return (*self._stated, *unstated, *self._silent)

    def expect_replay(self, state: str | None, calls: int) -> None:
        """After ``calls`` calls on one input, CUDA graphs replay. Where the last call did
        not (``state`` is the CUDA graph tree's) and no skip was heard, torch skipped in a
        way this session cannot hear: a backstop to the skips torch states and to the
        silent ones of graph partition (``compat.hear_silent_cudagraph_skips``). A replay
        shows that some graph replayed, not that every kernel did: graph partition runs
        the kernels it splits out (CPU ones, dynamic-shape ones under
        ``cudagraph_skip_dynamic_graphs``) outside CUDA graphs by design."""
        if state != "execution" and not self.skips():
            self._silent.append(
                CudagraphSkip(
                    f"no CUDA graph replayed in {calls} calls on one input (the CUDA graph "
                    f"tree's state: {state or 'none made'}), and torch stated no reason"
                )
            )

    def _on_silent_skip(self, reason: str, location: str | None) -> None:
        self._silent.append(CudagraphSkip(reason, location))
