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
    """Waits for the device's queued work (a no-op on the CPU)."""
    sync = getattr(backend_module(device), "synchronize", None)
    return sync if callable(sync) else (lambda: None)


def seed_generators(device: str, seed: int) -> None:
    """Reset the generators this device draws from (``torch.manual_seed`` seeds every
    backend and costs ~100x more, per call, per example)."""
    torch.default_generator.manual_seed(seed)
    backend = backend_module(device)
    if backend is not None:
        backend.manual_seed(seed)
