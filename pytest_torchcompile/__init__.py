"""pytest-torchcompile: keep torch.compile honest in CI.

Importing the package is cheap: torch and pytest load only when a name that needs them
is first used (the plugin module must stay importable without torch).
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    CheckSkipped,
    CompileCheckError,
    CompileFailedError,
    ModelError,
    NotCompiledError,
    SettingsError,
)

__version__ = "0.1.0"

_LAZY = {
    "TensorSpec": "inputs",
    "CompileSettings": "settings",
    "CompileChecker": "checker",
    "CheckRecord": "records",
    "safe_compile": "runtime",
    "CompileResult": "runtime",
    "VacuousCheckWarning": "checker",
    "TorchFeatureMissing": "torch_compat",
}

__all__ = [
    "CheckRecord",
    "CheckSkipped",
    "CompileCheckError",
    "CompileChecker",
    "CompileFailedError",
    "CompileResult",
    "CompileSettings",
    "ModelError",
    "NotCompiledError",
    "SettingsError",
    "TensorSpec",
    "TorchFeatureMissing",
    "VacuousCheckWarning",
    "compile_equivalent",
    "compile_faster",
    "safe_compile",
]


def __getattr__(name: str) -> Any:
    if name in ("compile_equivalent", "compile_faster"):
        import pytest

        return getattr(pytest.mark, name)  # the same marker, importable by name
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
