"""Short error text: an exception's first lines and the user-code frame it points at,
without torch's, Hypothesis's, pytest's or this plugin's own frames."""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Mapping
from typing import Any

from . import torch_compat as compat

# A frame as Python prints it in a traceback quoted inside a message.
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')

_INTERNAL = (
    compat.TORCH_DIR,
    os.path.dirname(__file__),
    f"{os.sep}hypothesis{os.sep}",
    f"{os.sep}_pytest{os.sep}",
    f"{os.sep}pluggy{os.sep}",
)


# Lines of torch's messages that say how to get more logs, not what went wrong.
_DYNAMO_NOISE = ("Set TORCHDYNAMO_VERBOSE", "For even more developer context")
_NOISE = (*_DYNAMO_NOISE, "For more information")


def head_lines(text: str, count: int = 3, noise: tuple[str, ...] = _NOISE) -> list[str]:
    """The first ``count`` non-blank lines of a message, torch's boilerplate left out."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    return lines[:count]


def describe_compile_error(error: BaseException, settings: Any) -> str:
    """Exception type, its first lines, and the user-code frame it points at."""
    text = str(error).strip()
    head = head_lines(text, noise=_DYNAMO_NOISE)
    lines = [
        f"compiling with mode={settings.mode}, backend={settings.backend} raised "
        f"{type(error).__module__}.{type(error).__name__}:",
        "  " + "\n  ".join(head),
    ]
    user_frame = _user_frame(text, error)
    if user_frame:
        lines.append(f"  in user code: {user_frame}")
    return "\n".join(lines)


def _user_frame(text: str, error: BaseException) -> str | None:
    marker = "from user code:"
    if marker in text:
        frames = _FRAME.findall(text.split(marker)[1])
        if frames:
            path, line, func, code = frames[-1]
            return f"{path}:{line} in {func}: {code.strip()}"
    return user_frame(error)


def user_frame(error: BaseException) -> str | None:
    """The innermost traceback frame outside torch, this plugin and the test runner."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not any(part in frame.filename for part in _INTERNAL):
            return f"{frame.filename}:{frame.lineno} in {frame.name}: {frame.line}"
    return None


def first_lines(error: BaseException, count: int = 3) -> str:
    """``Type: message``, its first lines, without torch's boilerplate."""
    text = str(getattr(error, "msg", None) or error).strip()
    return f"{type(error).__name__}: " + "\n  ".join(head_lines(text, count))


# -- torch.export's errors -------------------------------------------------------------


def specialisation_message(error: BaseException, ranges: Mapping[str, tuple[int, int]]) -> str:
    found = compat.violations(error)
    lines = ["export could not keep the dims declared dynamic:"]
    for v in found:
        low, high = ranges.get(v.dim, (None, None))
        if v.constant is not None:
            kept = f" (kept only {v.dim}={v.constant})"
        elif v.kept is not None:
            kept_high = v.kept[1] if v.kept[1] is not None else high
            kept = f" (kept {v.dim}=({v.kept[0]}, {kept_high}))"
        else:
            kept = ""
        lines.append(f"  dims {v.dim}=({low}, {high}): {v.reason}{kept}")
        if v.fix:
            lines.append(f"    torch suggests: {v.fix}")
    if not found:
        lines.append("  " + first_lines(error))
    lines.append(
        "the model's code fixes or bounds these sizes (a Python branch, a view or a check on "
        "them): make it size-generic, or declare in dims= the range it really supports"
    )
    return "\n".join(lines)


def export_error_message(error: BaseException, strict: bool) -> str:
    unknown = _UNKNOWN_OUTPUT.search(str(error))
    if unknown:  # an output type export cannot return: say what to change, not why
        return unknown_output_message(unknown.group(1))
    lines = [
        f"torch.export ({'strict' if strict else 'non-strict'}) could not trace the model:",
        "  " + first_lines(error),
    ]
    frame = _export_user_frame(str(error)) or user_frame(error)
    if frame and not frame.startswith("<"):
        lines.append(f"  in user code: {frame}")
    return "\n".join(lines)


_UNKNOWN_OUTPUT = re.compile(r"Found <class '([\w.]+)'> in output, which is not a known type")


def unknown_output_message(cls: str) -> str:
    text = (
        f"torch.export cannot return the model's {cls}: it is not a pytree type, so an "
        "exported program cannot hold it; "
    )
    if cls.startswith("transformers."):
        return text + (
            "a transformers cache comes back while use_cache is on: build the model as you "
            "would to export it, with model.config.use_cache = False"
        )
    return text + (
        "return tensors (or dataclasses, lists, dicts of them), or register the type with "
        "torch.utils._pytree.register_pytree_node"
    )


def _export_user_frame(text: str) -> str | None:
    frames = [
        f for f in _FRAME.findall(text) if not compat.in_torch(f[0]) and not f[0].startswith("<")
    ]
    if not frames:
        return None
    path, line, func, code = frames[-1]
    return f"{path}:{line} in {func}: {code.strip()}"
