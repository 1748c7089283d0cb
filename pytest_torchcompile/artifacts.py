"""torch's portable compile-cache artifacts in one file, so a fresh CI runner starts warm.

torch serializes the cache entries a process wrote or hit (FX graphs, AOTAutograd entries,
autotuning results) and loads them into an empty cache directory elsewhere. Its payload
does not say which torch wrote it, and another torch's entries would load silently and
never hit, so the file wraps it in a header naming the torch and a checksum. A cache only
makes a run faster: every problem with the file is a one-line note, never an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping

import torch

from . import torch_compat as compat

MAGIC = b"pytest-torchcompile cache artifacts\n"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ArtifactsFile:
    """What a path held: a payload torch can load (with how many artifacts of each kind),
    nothing (no file yet), or why it was ignored."""

    path: str
    payload: bytes | None = None
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    problem: str | None = None


def encode(payload: bytes, counts: Mapping[str, int]) -> bytes:
    header = {
        "version": FORMAT_VERSION,
        "torch": torch.__version__,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "counts": dict(counts),
    }
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def decode(path: str, data: bytes) -> ArtifactsFile:
    """Never raises: a file this torch cannot use comes back with the reason."""

    def ignored(why: str) -> ArtifactsFile:
        return ArtifactsFile(path, problem=why)

    if not data.startswith(MAGIC):
        return ignored("not a pytest-torchcompile cache-artifacts file")
    line, newline, payload = data[len(MAGIC) :].partition(b"\n")
    try:
        header = json.loads(line) if newline else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or not isinstance(header.get("counts"), dict):
        return ignored("corrupt (unreadable header)")
    if header.get("version") != FORMAT_VERSION:
        return ignored(f"format version {header.get('version')!r}, this plugin reads 1")
    if header.get("torch") != torch.__version__:
        return ignored(
            f"written by torch {header.get('torch')}, this is torch {torch.__version__} "
            "(its entries could never hit)"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        return ignored("corrupt (checksum mismatch: truncated or altered)")
    return ArtifactsFile(path, payload, {str(k): int(v) for k, v in header["counts"].items()})


def read(path: str) -> ArtifactsFile:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return ArtifactsFile(path)
    except OSError as error:
        return ArtifactsFile(path, problem=f"unreadable ({error.strerror or error})")
    return decode(path, data)


def write_atomic(path: str, data: bytes) -> None:
    """A crash mid-write leaves the old file (or none), never a truncated one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".artifacts-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def describe(counts: Mapping[str, int]) -> str:
    """``"14 artifacts (inductor 9, aot_autograd 5)"``."""
    total = sum(counts.values())
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()) if n)
    return f"{total} artifact{'s' if total != 1 else ''}" + (f" ({kinds})" if kinds else "")


class ArtifactStore:
    """The ``--compile-cache-artifacts`` file across one run: read (and loaded into torch's
    caches) at the start; at the end, what was read and what each process compiled or hit
    (this one's, each xdist worker's), merged and written back. Collects one-line notes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = ArtifactsFile(path)
        self.added: list[bytes] = []
        self.notes: list[str] = []

    def open(self, *, loaded_by: str | None = None) -> None:
        """Read the file and load it into this process's caches; ``loaded_by`` says why
        this process does not load it (an xdist controller: each worker loads it)."""
        self.file = read(self.path)
        if self.file.problem:
            self.note(f"{self.path} ignored: {self.file.problem}")
        elif self.file.payload is None:
            self.note(f"{self.path} not found: this run started without artifacts")
        elif loaded_by:
            self.note(f"{describe(self.file.counts)} in {self.path}, {loaded_by}")
        else:
            try:
                counts = compat.load_cache_artifacts(self.file.payload)
            except (ValueError, compat.TorchFeatureMissing) as error:
                self.file = ArtifactsFile(self.path, problem=str(error))
                self.note(f"{self.path} ignored: {error}")
            else:
                self.note(f"loaded {describe(counts)} from {self.path}")

    def this_run(self) -> bytes | None:
        """What this process compiled or hit (a hit counts: it keeps the entry in the file)."""
        try:
            return compat.save_cache_artifacts()
        except compat.TorchFeatureMissing as error:
            self.note(f"not saved: {error}")
            return None

    def add(self, payload: bytes | None) -> None:
        if payload:
            self.added.append(payload)

    def save(self) -> None:
        """Merge what was read with what was added, and write it; the file is left as it is
        where nothing new was compiled through inductor's caches."""
        if not self.added:
            return
        loaded = [self.file.payload] if self.file.payload else []
        try:
            merged = compat.merge_cache_artifacts(loaded + self.added)
        except (ValueError, compat.TorchFeatureMissing) as error:
            self.note(f"not saved to {self.path}: {error}")
            return
        if merged is None:
            return
        payload, counts = merged
        if self.file.payload and sum(counts.values()) == sum(self.file.counts.values()):
            self.note(f"nothing new to save: {self.path} unchanged")
            return
        try:
            write_atomic(self.path, encode(payload, counts))
        except OSError as error:
            self.note(f"cannot write {self.path}: {error.strerror or error}")
            return
        self.note(f"saved {describe(counts)} to {self.path}")

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
