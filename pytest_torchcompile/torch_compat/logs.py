"""Dynamo's logs: the graph-break log's loggers and wording, guard-failure wording, and
torch's structured trace kept out of pytest's captured logs."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator

from ._base import _FILE_LINE, _artifact_loggers


def graph_break_loggers() -> list[logging.Logger]:
    """The loggers of Dynamo's ``graph_breaks`` log artifact (one per Dynamo module)."""
    return _artifact_loggers(
        "torch._dynamo",  # its modules register the artifact loggers
        lambda name: name.endswith(".__graph_breaks"),
        "the graph_breaks log",
        "loggers named *.__graph_breaks in torch._logging._internal.log_registry",
    )


@contextlib.contextmanager
def quiet_structured_trace() -> Iterator[None]:
    """Keep torch's structured-trace records (empty DEBUG lines on the ``torch.__trace``
    logger) out of pytest's captured logs, where they bury the failure message; untouched
    when ``TORCH_TRACE`` asks for them."""
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


# Dynamo's graph-break log, as worded by torch 2.4 to 2.13 (tests/test_compat.py has samples):
#   2.4-2.5   "Graph break in user code at F:L\nReason: Unsupported: Tensor.item\nUser code ..."
#   2.7       "...\nGraph Break Reason: <type>\n  Explanation: ...\n  Hint: ...\n\n  Developer
#             debug context: ...\n\nUser code traceback: ..."
#   later     the same with " For more details about this graph break, please visit: <link>"
#   2.13      "Graph Break Reason: Encountered graph break when attempting to trace <op>:\n\n"
#             (or "Failed to handle graph break gracefully...") before that block
#   2.7+      "Graph break (user stack suppressed due to duplicate graph break) in user code
#             at F:L\nGraph Break Reason: ..."
#   2.13      "Graph break: torch.compile cannot properly resume from this graph break, which
#             results in a skip. ..." (the reason is in the record's exc_info)
_LOCATION = re.compile(r"in user code at (.+:\d+)\s*$", re.MULTILINE)
_REASON = re.compile(r"^\s*(?:Graph Break )?Reason: ?", re.MULTILINE)
_END_OF_REASON = re.compile(
    r"^\s*(?:Hint:|Developer debug context:|For more details|User code traceback:|"
    r"Stack variable source attribution:|Traceback \(most recent call last\)|from user code:|"
    r"\*\*\* While handling)",
    re.MULTILINE,
)
_FRAMING = ("Encountered graph break when attempting to trace", "Failed to handle graph break")
_LINK = re.compile(r"For more details about this graph break, please visit: (\S+)")


def parse_graph_break_log(
    message: str, error: BaseException | None = None
) -> tuple[str, str | None]:
    """``(reason, "file:line")`` from one record of Dynamo's graph-break log.

    The reason is the graph break's type and its explanation's first line (with the link to
    its documentation, where torch gives one), or the old single-line reason. ``error`` is
    the record's exception, which carries the reason where the message does not. A message
    in no known format keeps its first line: never an empty or made-up reason.
    """
    location = _LOCATION.search(message)
    where = location.group(1) if location else _last_file_line(message)
    reason = _reason(message)
    if reason is None and error is not None:
        reason = _reason(f"Reason: {error}")
    if reason is None:
        lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
        reason = next((ln for ln in lines if not _LOCATION.search(ln)), lines[0] if lines else "")
    link = _LINK.search(message) or (_LINK.search(str(error)) if error is not None else None)
    if link and link.group(1) not in reason:
        reason = f"{reason} (see {link.group(1)})"
    return reason or "graph break with an empty message", where


def _reason(text: str) -> str | None:
    match = _REASON.search(text)
    if match is None:
        return None
    block = _END_OF_REASON.split(text[match.end() :], maxsplit=1)[0]
    lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
    explained = next((i for i, ln in enumerate(lines) if ln.startswith("Explanation:")), None)
    if explained is None:  # 2.4-2.5: the reason is one line
        return lines[0] if lines else None
    head = [ln for ln in lines[:explained] if not ln.startswith(_FRAMING)] or lines[:explained]
    explanation = lines[explained].removeprefix("Explanation:").strip()
    headline = head[-1].rstrip(":") if head else ""
    return ": ".join(part for part in (headline, explanation) if part) or None


def _last_file_line(text: str) -> str | None:
    frames = _FILE_LINE.findall(text)
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else None


# Guard failures that come from Dynamo's assumptions about the first example's sizes:
# - it specialises dims of size 0 and 1: a static compile for a size-1 example ("expected 1,
#   actual 5"), or a dynamic compile that assumed >= 2 ("2 <= x.size()[0] ... 0/1
#   specialization"), recompiles on the next size;
# - duck sizing: dims of equal size in the first example share one symbol, so an example
#   where they differ recompiles ("x.size()[1] == x.size()[0]  # duck sizing added ...").
_SIZE_MISMATCH = re.compile(r"size mismatch at index \d+\. expected (\d+), actual (\d+)")
_AT_LEAST_TWO = re.compile(r"(?:^|\s|: )2 <= \S+\.size\(\)\[\d+\]")
_EQUAL_SIZES = re.compile(r"\S+\.size\(\)\[\d+\] == \S+\.size\(\)\[\d+\]")


def recompile_cause(reason: str) -> str | None:
    """``"size 0/1"`` or ``"duck sizing"`` where a guard failure comes from one of Dynamo's
    assumptions about the first example's sizes; None for other causes."""
    mismatch = _SIZE_MISMATCH.search(reason)
    if mismatch and {mismatch.group(1), mismatch.group(2)} & {"0", "1"}:
        return "size 0/1"
    if "0/1 specialization" in reason or _AT_LEAST_TWO.search(reason):
        return "size 0/1"
    if "duck sizing" in reason or _EQUAL_SIZES.search(reason):
        return "duck sizing"
    return None
