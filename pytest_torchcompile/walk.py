"""Walk any output object down to its leaves, each with a readable path.

A model may return anything: tensors in dicts, namedtuples, dataclasses, HF ``ModelOutput``,
pytree-registered types, or plain objects such as transformers' ``DynamicCache``, which
compares by identity and so can never equal its compiled twin. The walk opens them all so
that the tensors inside are compared one by one, at a path like
``out["cache"].layers[0].keys``. In order:

1. tensors, None, str and bytes (and numpy arrays) are leaves;
2. mappings (HF ``ModelOutput`` too) open by key, namedtuples by field, other sequences by
   index, dataclasses by field;
3. types registered with torch's pytree open as their registration flattens them;
4. numbers, enums, classes, functions, methods and ``nn.Module`` instances are leaves: a
   module is the model's state, not its output, and walking its parameters would compare
   weights, not results;
5. any other object opens by its attributes (instance ``__dict__`` and ``__slots__``),
   at most ``MAX_DEPTH`` objects deep, a reference back to an enclosing object becoming a
   ``BackRef`` leaf. An object with no tensor beneath it stays one leaf (compared by value
   where its class defines ``==``, else by type), so a config or a handle is not
   compared attribute by attribute.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .torch_compat import pytree_children

MAX_DEPTH = 8  # objects opened by their attributes, one inside another
_BUDGET = 10_000  # objects a search beyond MAX_DEPTH may visit
_LEAVES = (torch.Tensor, str, bytes, bytearray, int, float, complex, enum.Enum, type)
_OPAQUE = (
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.ModuleType,
    functools.partial,
    torch.nn.Module,
)


@dataclasses.dataclass(frozen=True)
class BackRef:
    """A reference back to the enclosing object at ``target`` (a cycle)."""

    target: str

    def __repr__(self) -> str:
        return f"<reference back to {self.target}>"


@dataclasses.dataclass(frozen=True)
class TooDeep:
    """An object nested deeper than ``MAX_DEPTH`` that holds tensors, left unopened."""

    type_name: str

    def __repr__(self) -> str:
        return f"<{self.type_name} nested deeper than {MAX_DEPTH} objects>"


def flatten(tree: Any, path: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Leaves by path, and a descriptor of the container at each inner path (its type,
    and a sequence's length) so that a change of structure can be reported."""
    leaves: dict[str, Any] = {}
    containers: dict[str, str] = {}
    _walk(tree, path, 0, leaves, containers, {})
    return leaves, containers


def is_array(node: Any) -> bool:
    """A numpy array (checked without importing numpy)."""
    cls = type(node)
    return cls.__name__ == "ndarray" and cls.__module__ == "numpy"


def _walk(
    node: Any,
    at: str,
    depth: int,
    leaves: dict[str, Any],
    containers: dict[str, str],
    enclosing: dict[int, str],
) -> bool:
    """Record ``node`` under ``at``; True if a tensor lies beneath it."""
    if isinstance(node, torch.Tensor) or is_array(node):
        leaves[at] = node
        return True
    if node is None or isinstance(node, _LEAVES):
        leaves[at] = node
        return False
    if id(node) in enclosing:
        leaves[at] = BackRef(enclosing[id(node)])
        return False
    opened = _open(node)
    if opened is None:
        leaves[at] = node
        return False
    descriptor, children, by_attributes = opened
    if by_attributes and depth >= MAX_DEPTH:
        holds = _holds_tensor(node)
        leaves[at] = TooDeep(type(node).__name__) if holds else node
        return holds
    # An object opened by attributes collapses into one leaf if no tensor is found:
    # walk it into scratch dicts, kept only if it holds one.
    sub_leaves, sub_containers = ({}, {}) if by_attributes else (leaves, containers)
    enclosing[id(node)] = at
    found = False
    for suffix, child in children:
        found |= _walk(
            child, at + suffix, depth + by_attributes, sub_leaves, sub_containers, enclosing
        )
    del enclosing[id(node)]
    if by_attributes and not found:
        leaves[at] = node
        return False
    containers[at] = descriptor
    if by_attributes:
        leaves.update(sub_leaves)
        containers.update(sub_containers)
    return found


def _open(node: Any) -> tuple[str, list[tuple[str, Any]], bool] | None:
    """The descriptor and (path suffix, child) pairs of a container, and whether it was
    opened by its attributes; None for a leaf."""
    name = type(node).__name__
    if isinstance(node, Mapping):
        return name, [(f"[{k!r}]".replace("'", '"'), v) for k, v in node.items()], False
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return name, [(f".{f}", getattr(node, f)) for f in node._fields], False
    if isinstance(node, Sequence):
        return f"{name} of {len(node)}", [(f"[{i}]", v) for i, v in enumerate(node)], False
    if dataclasses.is_dataclass(node):
        fields = dataclasses.fields(node)
        return name, [(f".{f.name}", getattr(node, f.name)) for f in fields], False
    children = pytree_children(node)
    if children is not None:
        return name, children, False
    if isinstance(node, _OPAQUE):
        return None
    attributes = _attributes(node)
    return (name, attributes, True) if attributes else None


def _attributes(node: Any) -> list[tuple[str, Any]]:
    """Instance ``__dict__`` entries, then every set ``__slots__`` entry along the MRO."""
    found = [(f".{k}", v) for k, v in getattr(node, "__dict__", {}).items()]
    for cls in type(node).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            attr = slot  # private slots are stored under their mangled name
            if slot.startswith("__") and not slot.endswith("__"):
                attr = f"_{cls.__name__.lstrip('_')}{slot}"
            if hasattr(node, attr):  # else a slot never assigned
                found.append((f".{slot}", getattr(node, attr)))
    return found


def _holds_tensor(node: Any) -> bool:
    """Whether a tensor lies anywhere beneath ``node``; True if the search runs out of
    budget, so that a leaf problem says the walk gave up rather than passing silently."""
    stack, seen = [node], set()
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor) or is_array(item):
            return True
        if item is None or isinstance(item, _LEAVES) or id(item) in seen:
            continue
        seen.add(id(item))
        if len(seen) > _BUDGET:
            return True
        opened = _open(item)
        if opened is not None:
            stack.extend(child for _, child in opened[1])
    return False
