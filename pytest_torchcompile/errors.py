"""Exceptions users can catch. Torch-free, so the plugin can import them eagerly."""

from __future__ import annotations

from typing import Any


class SettingsError(ValueError):
    """A setting, marker argument or CLI option has a value we cannot use.

    The message names the setting and the values that would be accepted.
    """


class CompileCheckError(AssertionError):
    """A compile check failed: wrong output, a compile error, a gate exceeded.

    ``result`` carries the record of the check (or ``safe_compile``'s ``CompileResult``)
    so callers can inspect what was measured.
    """

    def __init__(self, message: str, result: Any = None, *, example: Any = None) -> None:
        super().__init__(message)
        self.result = result
        self.example = example  # the inputs it happened on, where one example is to blame


class CompileFailedError(CompileCheckError):
    """Dynamo or the backend raised while compiling or running the compiled model."""


class ModelError(CompileCheckError):
    """The model raised when run uncompiled: the inputs do not fit it (the user's mistake,
    not the compiler's); the message says which example and where."""


class NotCompiledError(CompileCheckError):
    """The model did not run compiled (no graph captured, or the recompile limit was hit)."""


class CheckSkipped(Exception):
    """The check cannot run here (e.g. its device is absent); the plugin turns it into a skip."""
