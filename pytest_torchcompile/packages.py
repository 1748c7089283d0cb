"""The AOTInductor package cache: packages built once, keyed on everything that decides
their code, written whole or not at all, loaded back as a server loads them."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import getpass
import hashlib
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import torch

from . import torch_compat as compat
from .errors import CompileFailedError
from .tracebacks import first_lines

PACKAGE_DIR = "aoti-packages"


@dataclasses.dataclass(frozen=True)
class PackageInfo:
    path: str
    bytes: int
    cached: bool  # loaded from the cache, not built in this check


class PackageCache:
    """Where packages are kept: ``cache_dir`` is a fresh inductor cache (``--compile-cold``),
    which also bypasses kept packages; else ``package_dir`` (pytest's cache), else beside
    inductor's cache."""

    def __init__(self, cache_dir: str | None, package_dir: str | None) -> None:
        if cache_dir is not None:
            self.folder = os.path.join(cache_dir, PACKAGE_DIR)
        elif package_dir is not None:
            self.folder = package_dir
        else:
            inductor = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(
                tempfile.gettempdir(), f"torchcompile-{getpass.getuser()}"
            )
            self.folder = os.path.join(inductor, PACKAGE_DIR)

    def load_or_build(
        self, program: Any, key: str, configs: dict[str, Any]
    ) -> tuple[Package, PackageInfo]:
        """The loaded package, called as the model is, and what it was."""
        path = os.path.join(self.folder, f"{key[:40]}.pt2")
        try:
            runner, cached = self._load_or_build(program, path, configs)
            info = PackageInfo(path, os.path.getsize(path), cached)
        except OSError as error:  # a cache folder that cannot be written, a full disk
            raise CompileFailedError(
                f"the AOTInductor package could not be written or read at {path}:\n  "
                f"{type(error).__name__}: {error}"
            ) from error
        values = compat.user_output_values(program)
        scalars = (int, float, bool, torch.SymInt, torch.SymFloat, torch.SymBool)
        numbers = [i for i, v in enumerate(values) if isinstance(v, scalars)]
        return Package(runner, numbers), info

    def _load_or_build(self, program: Any, path: str, configs: dict[str, Any]) -> tuple[Any, bool]:
        if os.path.exists(path):
            try:
                return compat.aoti_load(path), True
            except Exception:  # a damaged package: build it again
                os.remove(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path[:-4]}.{os.getpid()}.partial.pt2"
        try:
            compat.aoti_compile(program, partial, configs)
        except Exception as error:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise CompileFailedError(
                "AOTInductor could not compile the exported program:\n  " + first_lines(error)
            ) from error
        os.replace(partial, path)  # whole or not at all
        try:
            return compat.aoti_load(path), False
        except Exception as error:
            raise CompileFailedError(
                "the AOTInductor package just built does not load:\n  " + first_lines(error)
            ) from error


class Package:
    """A loaded package, called as the model is: numbers it returns come back as numbers
    (AOTInductor hands them back as 0-dim tensors)."""

    def __init__(self, runner: Any, numbers: list[int]) -> None:
        self.runner = runner
        self.numbers = numbers

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.runner(*args, **kwargs)
        return compat.numbers_back(out, self.numbers) if self.numbers else out


def package_key(
    program: Any,
    configs: Mapping[str, Any],
    test_id: str,
    strict: bool,
    ranges: Mapping[str, tuple[int, int]],
) -> str:
    """Everything a package's code depends on: the graph, its ranges and input specs, the
    weights, inductor's configs, the torch release and the host's vector ISA. (The saved
    program's bytes are not reproducible between runs, so they are not hashed.)"""
    digest = hashlib.sha256()

    def add(part: Any) -> None:
        digest.update(str(part).encode())
        digest.update(b"\0")

    for part in (
        torch.__version__,
        test_id,
        program.graph_module.code,
        program.range_constraints,
        program.call_spec.in_spec,
        program.call_spec.out_spec,
        sorted(configs.items()),
        strict,
        sorted(ranges.items()),
        compat.machine_key(),
    ):
        add(part)
    for _, module in program.graph_module.named_modules():  # cond branches, no_grad blocks
        if isinstance(module, torch.fx.GraphModule):
            add(module.code)
    for node in program.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" else None
        if isinstance(value, torch.Tensor):
            add((node.name, value.shape, value.dtype, value.stride(), value.device))
    named = sorted(program.state_dict.items()) + sorted(program.constants.items())
    for name, tensor in named:
        add(name)
        if isinstance(tensor, torch.Tensor):
            add((tensor.dtype, tuple(tensor.shape)))
            digest.update(_tensor_bytes(tensor))
        else:
            add(type(tensor).__qualname__)
    return digest.hexdigest()


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    data = tensor.detach().cpu()
    data = (data.to_dense() if data.layout != torch.strided else data).contiguous()
    if data.numel() == 0:
        return b""
    return ctypes.string_at(data.data_ptr(), data.numel() * data.element_size())
