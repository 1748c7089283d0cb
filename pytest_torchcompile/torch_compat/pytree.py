"""How registered pytree containers flatten (``torch.utils._pytree``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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
