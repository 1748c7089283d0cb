"""Which torch backend module serves a device: one lookup for availability, seeding, sync."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch


def backend_module(device: str) -> ModuleType | None:
    """``torch.cuda`` for "cuda:0", ``torch.mps`` for "mps"...; None for the CPU."""
    kind = torch.device(device).type
    return None if kind == "cpu" else getattr(torch, kind, None)


def device_available(device: str) -> bool:
    kind = torch.device(device).type
    if kind == "cpu":
        return True
    if kind == "mps":
        return torch.backends.mps.is_available()
    backend = backend_module(device)
    return bool(backend is not None and backend.is_available())


def synchronizer(device: str) -> Callable[[], None]:
    """Waits for this device's queued work ("cuda:1" too, not the current device; a no-op
    on the CPU)."""
    sync = getattr(backend_module(device), "synchronize", None)
    if not callable(sync):
        return lambda: None
    where = torch.device(device)
    return (lambda: sync(where)) if where.index is not None else sync


def seed_generators(device: str, seed: int) -> None:
    """Reset the generators this device draws from (``torch.manual_seed`` seeds every
    backend and costs ~100x more, per call, per example)."""
    torch.default_generator.manual_seed(seed)
    backend = backend_module(device)
    if backend is None:
        return
    where = torch.device(device)
    if where.index is not None and hasattr(backend, "device"):
        with backend.device(where):  # manual_seed seeds the current device only
            backend.manual_seed(seed)
    else:
        backend.manual_seed(seed)
