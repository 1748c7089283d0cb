"""Which torch backend module serves a device: one lookup for availability, seeding, sync;
and which CUDA device each xdist worker owns (``--compile-devices``)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from types import ModuleType

import torch

from .errors import SettingsError


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


# -- one device per xdist worker ---------------------------------------------------------------


def cuda_device_count() -> int:
    """CUDA devices this process sees (0 on a CPU build); the tests fake a multi-GPU machine
    by replacing it."""
    return int(torch.cuda.device_count())


_CUDA_ENTRY = re.compile(r"cuda:(\d+)")


def parse_devices(text: str, count: Callable[[], int] | None = None) -> tuple[str, ...]:
    """``"auto"``: every CUDA device here (none on a CPU machine); ``"cuda:0,cuda:1"``: those,
    each checked to exist on this machine."""
    available = (count or cuda_device_count)()
    if text.strip() == "auto":
        return tuple(f"cuda:{i}" for i in range(available))
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        raise SettingsError("--compile-devices is empty: give auto, or a list like cuda:0,cuda:1")
    devices = []
    for entry in entries:
        match = _CUDA_ENTRY.fullmatch(entry)
        if match is None:
            raise SettingsError(
                f"--compile-devices: {entry!r} is not a CUDA device; give auto, or indexed "
                f"devices like cuda:0,cuda:1"
            )
        if int(match.group(1)) >= available:
            raise SettingsError(
                f"--compile-devices: {entry} does not exist: this machine has {available} "
                f"CUDA device(s)" + (f" (cuda:0 to cuda:{available - 1})" if available else "")
            )
        if entry in devices:
            raise SettingsError(f"--compile-devices names {entry} twice")
        devices.append(entry)
    return tuple(devices)


def worker_index(worker: str) -> int:
    """``"gw3"`` -> 3 (xdist's worker ids)."""
    digits = worker.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


@dataclasses.dataclass(frozen=True)
class DevicePlan:
    """Which device each of ``workers`` xdist workers (0: no xdist, one process) owns:
    worker i gets ``devices[i % len(devices)]``. More workers than devices share them
    round robin; equivalence checks still spread, speed checks skip (a shared GPU gives
    no trustworthy time)."""

    devices: tuple[str, ...]
    workers: int = 0

    def device_of(self, index: int) -> str | None:
        return self.devices[index % len(self.devices)] if self.devices else None

    @property
    def exclusive(self) -> bool:
        """Every worker owns a device of its own: its speed checks may time on it."""
        return bool(self.devices) and self.workers <= len(self.devices)

    def describe(self) -> str:
        """The report header's line."""
        if not self.devices:
            return (
                "torchcompile devices: none (auto found no CUDA device): checks run on the "
                "devices their markers name; speed checks skip under xdist"
            )
        if self.workers == 0:
            return f"torchcompile device: {self.devices[0]} (device='cuda' means it)"
        pairs = ", ".join(f"gw{i} {self.device_of(i)}" for i in range(self.workers))
        if self.exclusive:
            return f"torchcompile devices: {pairs} (one per worker: speed checks time on them)"
        return (
            f"torchcompile devices: {pairs} ({self.workers} workers share "
            f"{len(self.devices)} device(s): speed checks skip)"
        )


def use_device(device: str) -> None:
    """Make ``device`` the current CUDA device, so ``"cuda"`` (and ``.cuda()``) mean it:
    called in each worker before its first test, before it touches CUDA."""
    torch.cuda.set_device(torch.device(device))
