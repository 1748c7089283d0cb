"""``torch.export`` and AOTInductor: the calls, error types and facts the deployment targets
need (torch 2.13's behaviour is written up in docs/export-aoti-research.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import re
import shutil
from typing import Any

import torch

from ._base import _first

# The environment variable AOTInductor's generated wrapper reads (once per loaded runner)
# to check every input's dtype, sizes, strides and device against the exported ranges.
RUNTIME_CHECKS_ENV = "AOTI_RUNTIME_CHECK_INPUTS"
# inductor config: check symbolic sizes against their lower bound (tracing assumes >= 2)
CHECK_LOWERBOUND = "aot_inductor.check_lowerbound"


def lowerbound_switch() -> str | None:
    """The config that turns AOTInductor's lower-bound checks off; None on a torch without
    it (2.6, whose packages refused no size at all when measured, even with the checks'
    environment variable set)."""
    from .dynamo import inductor_option_names

    return CHECK_LOWERBOUND if CHECK_LOWERBOUND in inductor_option_names() else None


def user_error_type() -> type[BaseException]:
    return _first("torch.export's UserError", "torch._dynamo.exc:UserError")


def is_constraint_violation(error: BaseException) -> bool:
    """Export specialised or narrowed a dim that was declared dynamic."""
    if not isinstance(error, user_error_type()):
        return False
    kind = getattr(error, "error_type", None)
    return getattr(kind, "name", "") == "CONSTRAINT_VIOLATION"


_CONSTANT = re.compile(
    r"You marked (\w+) as dynamic but your code specialized it to be a constant \((-?\d+)\)"
)
_GUARD = re.compile(
    r"Not all values of (\w+) = (.+?) in the specified range (.+?) satisfy the generated "
    r"guard (.+?)\.?$",
    re.M,
)
_FIX_CONSTANT = re.compile(r"^(\w+) = (-?\d+)$")
_FIX_RANGE = re.compile(r"^(\w+) = Dim\('\w+'(?:, min=(-?\d+))?(?:, max=(-?\d+))?\)$")


@dataclasses.dataclass(frozen=True)
class Violation:
    """One dim export could not keep as declared."""

    dim: str
    reason: str  # export's own words, one line
    constant: int | None = None  # specialised to this size
    kept: tuple[int | None, int | None] | None = None  # narrowed to this range (None: open)
    fix: str | None = None  # torch's suggested fix for this dim


def violations(error: BaseException) -> list[Violation]:
    """The dims named in a constraint violation, with export's reason and suggested fix."""
    text = str(getattr(error, "msg", None) or error)
    body, _, fixes_text = text.partition("Suggested fixes:")
    fixes = {}
    for line in fixes_text.strip().splitlines():
        line = line.strip()
        name = line.split(" = ", 1)[0]
        if name:
            fixes[name] = line
    found: dict[str, Violation] = {}
    for match in _CONSTANT.finditer(body):
        dim, size = match.group(1), int(match.group(2))
        reason = "export specialised it to a constant"
        found.setdefault(dim, Violation(dim, reason, constant=size, fix=fixes.get(dim)))
    for match in _GUARD.finditer(body):
        dim, guard = match.group(1), match.group(4)
        fix = fixes.get(dim)
        kept = _kept_range(fix)
        reason = f"export narrowed it, generated guard {guard}"
        found.setdefault(dim, Violation(dim, reason, kept=kept, fix=fix))
    for name, fix in fixes.items():  # a fix whose reason wording this torch changed
        if name not in found:
            constant = _FIX_CONSTANT.match(fix)
            fixed = int(constant.group(2)) if constant else None
            found[name] = Violation(name, "export could not keep it", fixed, _kept_range(fix), fix)
    return list(found.values())


def _kept_range(fix: str | None) -> tuple[int | None, int | None] | None:
    match = _FIX_RANGE.match(fix or "")
    if match is None:
        return None
    low, high = match.group(2), match.group(3)
    # torch leaves a lower bound of 2 out of its fixes (the size tracing assumes anyway)
    return (int(low) if low else 2, int(high) if high else None)


def export(module: Any, args: tuple, kwargs: dict, dynamic_shapes: Any, strict: bool) -> Any:
    return torch.export.export(module, args, kwargs, dynamic_shapes=dynamic_shapes, strict=strict)


def make_dim(name: str, low: int, high: int) -> Any:
    return torch.export.Dim(name, min=low, max=high)


def register_output_dataclasses(value: Any) -> list[str]:
    """Register plain dataclasses found in a model's output as pytree nodes (export needs
    it, AOTInductor also a serialized name); returns the classes registered. Process-wide,
    as torch's registry is."""
    from torch.utils import _pytree as pytree

    registered = []
    seen: set[int] = set()

    def visit(node: Any) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        cls = type(node)
        if isinstance(node, torch.Tensor):
            return
        if dataclasses.is_dataclass(node) and cls not in pytree.SUPPORTED_NODES:
            name = f"{cls.__module__}.{cls.__qualname__}"
            torch.export.register_dataclass(cls, serialized_type_name=name)
            registered.append(name)
        if dataclasses.is_dataclass(node):
            children: Any = [getattr(node, f.name) for f in dataclasses.fields(node)]
        elif isinstance(node, dict):
            children = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            return
        for child in children:
            visit(child)

    visit(value)
    return registered


def user_output_values(program: Any) -> list[Any]:
    """The exported graph's user outputs, flattened: a fake tensor, or the Python value
    (an int) where the model returned one."""
    output = next(n for n in program.graph.nodes if n.op == "output")
    values = list(output.args[0])
    specs = program.graph_signature.output_specs
    user = [v for v, s in zip(values, specs, strict=True) if s.kind.name == "USER_OUTPUT"]
    return [v.meta.get("val") if isinstance(v, torch.fx.Node) else v for v in user]


def numbers_back(out: Any, positions: list[int]) -> Any:
    """``out`` with the 0-dim tensors at these flat positions turned back into numbers."""
    from torch.utils._pytree import tree_flatten, tree_unflatten

    leaves, spec = tree_flatten(out)
    for i in positions:
        if isinstance(leaves[i], torch.Tensor) and leaves[i].dim() == 0:
            leaves[i] = leaves[i].item()
    return tree_unflatten(leaves, spec)


def aoti_unavailable() -> str | None:
    """Why AOTInductor cannot build a package here; None where it can."""
    try:
        _first("AOTInductor", "torch._inductor:aoti_compile_and_package")
        _first("AOTInductor", "torch._inductor:aoti_load_package")
    except RuntimeError as error:
        return str(error)
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        compiler = get_cpp_compiler()
    except Exception as error:  # torch raises when it finds none
        return f"no C++ compiler for AOTInductor ({error})"
    if not shutil.which(compiler):
        return f"no C++ compiler for AOTInductor ({compiler!r} not found)"
    return None


def aoti_compile(program: Any, path: str, configs: dict[str, Any]) -> str:
    compile_and_package = _first("AOTInductor", "torch._inductor:aoti_compile_and_package")
    # torch adds its own keys to a non-empty configs dict: hand it a copy
    return str(compile_and_package(program, package_path=path, inductor_configs=dict(configs)))


def aoti_load(path: str) -> Any:
    return _first("AOTInductor", "torch._inductor:aoti_load_package")(path)


def machine_key() -> str:
    """What a package's compiled code depends on beyond its graph: AOTInductor builds with
    ``-march=native``, so the host's CPU flags (a package restored onto another CPU could
    die of an illegal instruction), and inductor's global config (environment variables,
    a conftest's patches)."""
    flags = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        flags = next((ln for ln in cpuinfo if ln.startswith(("flags", "Features"))), "")
    config = ""
    with contextlib.suppress(Exception):
        from torch._inductor import config as inductor_config

        config = repr(sorted(inductor_config.save_config_portable().items()))
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{platform.machine()}-{capability}-{platform.processor()}-{flags}-{config}"
