"""What every part of ``torch_compat`` stands on: the error a missing feature raises, and
the look-ups that try torch's newest name first, then its older ones."""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import torch

TORCH_DIR = os.path.dirname(torch.__file__)

# A frame of a Python traceback, as torch quotes them in its logs.
_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')


class TorchFeatureMissing(RuntimeError):
    """This torch lacks a private API the plugin needs; the message names it."""

    def __init__(self, feature: str, wanted: str) -> None:
        super().__init__(
            f"torch {torch.__version__} lacks {feature} ({wanted}); pytest-torchcompile "
            f"needs it: upgrade torch, or report the torch version that removed it"
        )


def _first(feature: str, *candidates: str) -> Any:
    """The first of ``candidates`` (``"module:attr"``) this torch has, newest name first."""
    for candidate in candidates:
        module_name, _, attr = candidate.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            continue
    raise TorchFeatureMissing(feature, " or ".join(c.replace(":", ".") for c in candidates))


def _config_key(feature: str, module: str, *names: str) -> tuple[Any, str]:
    """A config module and the first of ``names`` it defines (torch renames config keys)."""
    config = importlib.import_module(module)
    for name in names:
        if hasattr(config, name):
            return config, name
    raise TorchFeatureMissing(feature, " or ".join(f"{module}.{n}" for n in names))


def in_torch(filename: str | None) -> bool:
    """Is ``filename`` inside torch's own package (a wrapper, not the user's code)?"""
    return bool(filename) and os.path.abspath(str(filename)).startswith(TORCH_DIR + os.sep)


def _artifact_loggers(
    module: str, wanted: Callable[[str], bool], feature: str, where: str
) -> list[logging.Logger]:
    """The loggers of the torch log artifacts whose names ``wanted`` accepts; importing
    ``module`` registers them. Raises ``TorchFeatureMissing(feature, where)`` if none is."""
    importlib.import_module(module)
    registry = _first("torch's registry of log artifacts", "torch._logging._internal:log_registry")
    names = sorted(n for n in getattr(registry, "artifact_log_qnames", ()) if wanted(n))
    if not names:
        raise TorchFeatureMissing(feature, where)
    return [logging.getLogger(name) for name in names]
