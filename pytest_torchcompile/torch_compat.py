"""Every private torch API the plugin relies on, in one place, with feature detection.

A torch release that renames or removes one of these breaks this module loudly (a
``TorchFeatureMissing`` naming the feature and the torch version), not ten call sites
quietly. Nothing outside this module imports from ``torch._*``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class TorchFeatureMissing(RuntimeError):
    """This torch lacks a private API the plugin needs; the message names it."""

    def __init__(self, feature: str, wanted: str) -> None:
        super().__init__(
            f"torch {torch.__version__} lacks {feature} ({wanted}); pytest-torchcompile "
            f"needs it: upgrade torch, or report the torch version that removed it"
        )


# -- pytree: how registered containers flatten ---------------------------------------------


def pytree_children(node: Any) -> list[tuple[str, Any]] | None:
    """The children of ``node`` as its pytree registration flattens them, one level deep,
    each with a path suffix (``["key"]``, ``[0]``, ``.name``); None if ``node``'s type is
    not a registered pytree node (or this torch has no pytree registry)."""
    try:
        from torch.utils import _pytree as pytree
    except ImportError:  # pragma: no cover - every supported torch has it
        return None
    node_def = getattr(pytree, "SUPPORTED_NODES", {}).get(type(node))
    if node_def is None:
        return None
    with_keys: Callable[[Any], Any] | None = getattr(node_def, "flatten_with_keys_fn", None)
    if with_keys is not None:
        try:
            pairs, _ = with_keys(node)
            return [(_key_suffix(key), child) for key, child in pairs]
        except Exception:  # a registration whose keyed flatten is broken: use the plain one
            pass
    children, _ = node_def.flatten_fn(node)
    return [(f"[{i}]", child) for i, child in enumerate(children)]


def _key_suffix(key: Any) -> str:
    """``MappingKey("a")`` -> ``["a"]``, ``SequenceKey(0)`` -> ``[0]``, ``GetAttrKey`` ->
    ``.name``; anything else by its ``str``."""
    for attr, fmt in (("key", "[{!r}]"), ("idx", "[{}]"), ("name", ".{}")):
        if hasattr(key, attr):
            return fmt.format(getattr(key, attr)).replace("'", '"')
    return str(key)
