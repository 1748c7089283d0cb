"""A folder that reproduces a failed check with torch alone.

It holds the failing inputs, the model's parameters and buffers as the check started from
them, the compile arguments and a ``repro.py`` that rebuilds the model (by calling the
test's own factory where it takes no arguments, else from a pickle), compiles it the same
way, compares with eager as the check did, prints the difference and exits 1 while the bug
is there. Nothing in it imports pytest or this plugin.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import torch

from .compare import Comparison
from .compiling import compile_kwargs
from .inputs import Example
from .running import RNG_SEED
from .settings import DEFAULT_BACKEND, CompileSettings


@dataclasses.dataclass(frozen=True)
class ReproTarget:
    """Where a check's repro folder goes, and how a script can rebuild its model."""

    root: str
    name: str  # the test id and mode
    factory: dict[str, Any] | None = None  # {"file", "module", "function", "paths"}
    paths: tuple[str, ...] = ()  # sys.path entries that make the model's classes importable


def folder_name(test_id: str, mode: str) -> str:
    """``tests/test_x.py::test_mlp[8-default]`` -> ``test_x.py-test_mlp-8-default-1a2b3c4d``:
    readable, and unique per test id and mode (a hash of both), so parametrized tests and
    same-named files in other folders never share a folder."""
    name = test_id.split("::", 1)[-1] if "::" in test_id else test_id
    stem = test_id.split("::", 1)[0].rsplit("/", 1)[-1] if "::" in test_id else ""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{stem}-{name}").strip("-")
    if not text.endswith(mode):
        text = f"{text}-{mode}"
    digest = f"{zlib.crc32(f'{test_id}::{mode}'.encode()):08x}"
    return f"{text[-100:] or 'check'}-{digest}"


def write_repro(
    target: ReproTarget,
    model: Any,
    state: dict[str, torch.Tensor],
    example: Example,
    settings: CompileSettings,
    comparison: Comparison | None,
    fallback_random: bool = True,
) -> str:
    """Write the folder (replacing an older one of the same check) whole, or not at all;
    return its path."""
    final = Path(target.root) / folder_name(target.name, settings.mode)
    final.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".writing-", dir=final.parent))
    try:
        _write(folder, target, model, state, example, settings, comparison, fallback_random)
        if final.exists():
            shutil.rmtree(final)
        os.replace(folder, final)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return str(final)


def _write(
    folder: Path,
    target: ReproTarget,
    model: Any,
    state: dict[str, torch.Tensor],
    example: Example,
    settings: CompileSettings,
    comparison: Comparison | None,
    fallback_random: bool,
) -> None:
    if target.factory is None:  # the test takes fixtures: only a pickle can rebuild it
        try:
            torch.save(model, folder / "model.pt")
        except Exception as error:
            raise ValueError(
                "the model does not pickle and comes from a test that takes arguments, so "
                f"no script can rebuild it ({type(error).__name__}: {error})"
            ) from None
    torch.save({"args": example.args, "kwargs": example.kwargs}, folder / "inputs.pt")
    torch.save(state, folder / "state.pt")
    rtol, atol = _tolerances(settings, comparison)
    meta = {
        "test": f"{target.name} [{settings.mode}]",
        "compile": compile_kwargs(settings),
        "fallback_random": fallback_random and settings.backend == DEFAULT_BACKEND,
        "grad": settings.grad,
        "device": settings.device,
        "rtol": rtol,
        "atol": atol,
        "seed": RNG_SEED,
        "factory": target.factory,
        "paths": list(target.paths),
        "torch": torch.__version__,
    }
    (folder / "settings.json").write_text(json.dumps(meta, indent=2, default=repr) + "\n")
    (folder / "repro.py").write_text(SCRIPT)


def _tolerances(
    settings: CompileSettings, comparison: Comparison | None
) -> tuple[float | None, float | None]:
    """The failing leaves' effective tolerances: what the check judged by."""
    failing = [leaf for leaf in comparison.failures if leaf.atol is not None] if comparison else []
    if not failing:
        return settings.rtol, settings.atol
    return (
        min(float(leaf.rtol or 0.0) for leaf in failing),
        min(float(leaf.effective_atol or 0.0) for leaf in failing),
    )


SCRIPT = '''\
"""Reproduces a failed torch.compile check with torch alone: python repro.py

Rebuilds the model (the test's factory, else model.pt), loads its state (state.pt) and the
failing inputs (inputs.pt), compiles it as settings.json says, runs eager and compiled with
the same RNG seed and compares every output (gradients and buffers too): a leaf fails where
it is outside rtol/atol and, where a float64 run is possible, further from float64 than
eager is (PyTorch's own judgement, torch._dynamo.utils.same). Exit status 1 while the bug
is there. Written by pytest-torchcompile.
"""

import copy
import importlib.util
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "settings.json")) as f:
    SETTINGS = json.load(f)


def load_model():
    factory = SETTINGS["factory"]
    sys.path[:0] = SETTINGS["paths"] + (factory["paths"] if factory else [])
    if factory is not None:
        spec = importlib.util.spec_from_file_location(factory["module"], factory["file"])
        module = importlib.util.module_from_spec(spec)
        sys.modules[factory["module"]] = module
        spec.loader.exec_module(module)
        model = getattr(module, factory["function"])()
        if isinstance(model, tuple):  # the test returned (model, inputs)
            model = model[0]
    else:
        model = torch.load(os.path.join(HERE, "model.pt"), weights_only=False)
    state = torch.load(os.path.join(HERE, "state.pt"), weights_only=False)
    if isinstance(model, torch.nn.Module):
        model = model.to(SETTINGS["device"])
        live = dict(model.named_parameters())
        live.update(model.named_buffers())
        with torch.no_grad():
            for name, value in state.items():
                live[name].copy_(value)
    return model


def fresh(value, grad, dtype=None):
    if isinstance(value, torch.Tensor):
        value = value.detach().clone()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        if grad and value.is_floating_point():
            value.requires_grad_(True)
        return value
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(fresh(v, grad, dtype) for v in value)
    if isinstance(value, dict):
        return {k: fresh(v, grad, dtype) for k, v in value.items()}
    return copy.deepcopy(value)


def leaves(value, path, depth=0):
    """Every tensor in an output, with a path: containers, then objects' attributes."""
    if isinstance(value, torch.Tensor):
        yield path, value
    elif depth > 8:
        return
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, f"{path}[{k!r}]", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]", depth + 1)
    elif hasattr(value, "__dict__") and not callable(value):
        for k, v in vars(value).items():
            yield from leaves(v, f"{path}.{k}", depth + 1)


def run(fn, model, inputs, dtype=None):
    grad = SETTINGS["grad"]
    args = fresh(inputs["args"], grad, dtype)
    kwargs = fresh(inputs["kwargs"], grad, dtype)
    torch.manual_seed(SETTINGS["seed"])
    with torch.set_grad_enabled(grad):
        out = fn(*args, **kwargs)
    found = dict(leaves(out, "out"))
    named = dict(leaves(list(args), "inputs")) | dict(leaves(kwargs, "inputs"))
    if grad:
        losses = [t.real.sum().double() for t in found.values() if t.requires_grad]
        sum(losses[1:], losses[0]).backward()
        params = model.named_parameters() if isinstance(model, torch.nn.Module) else ()
        for name, p in params:
            if p.grad is not None:
                found[f"grad[{name}]"] = p.grad
        for name, t in named.items():
            if t.grad is not None:
                found[f"input_grad{name[6:]}"] = t.grad
    found.update(named)  # inputs as the call left them: a dropped in-place update shows
    if isinstance(model, torch.nn.Module):
        for name, b in model.named_buffers():
            found[f"buffers[{name}]"] = b
    return {k: v.detach() for k, v in found.items()}


def main():
    model = load_model()
    inputs = torch.load(os.path.join(HERE, "inputs.pt"), weights_only=False)
    eager_model, compiled_model = copy.deepcopy(model), copy.deepcopy(model)
    if SETTINGS["fallback_random"]:  # as the check ran: inductor draws eager's random numbers
        from torch._inductor import config as inductor_config

        inductor_config.fallback_random = True
    compiled = torch.compile(compiled_model, **SETTINGS["compile"])
    eager = run(eager_model, eager_model, inputs)
    result = run(compiled, compiled_model, inputs)
    try:
        wide = copy.deepcopy(model)
        wide = wide.double() if isinstance(wide, torch.nn.Module) else wide
        fp64 = run(wide, wide, inputs, torch.float64)
    except Exception:
        fp64 = {}
    from torch._dynamo.utils import same

    rtol, atol = SETTINGS["rtol"], SETTINGS["atol"]
    failed = 0
    for path, want in eager.items():
        got = result.get(path)
        if got is None or got.shape != want.shape:
            print(f"{path}: compiled gives {None if got is None else tuple(got.shape)}, "
                  f"eager {tuple(want.shape)}")
            failed += 1
            continue
        if not want.is_floating_point():
            ok = torch.equal(want, got)
        else:
            kw = {} if rtol is None else {"rtol": rtol, "atol": atol}
            ok = torch.allclose(got, want, equal_nan=True, **kw)
            ref = fp64.get(path)
            if not ok and ref is not None:
                ok = same(want, got, fp64_ref=ref, tol=rtol or 1e-4, equal_nan=True,
                          log_error=lambda *args, **kwargs: None)
        if not ok:
            failed += 1
            diff = (got.double() - want.double()).abs()
            print(f"{path}: differs; greatest absolute difference {diff.max().item():.4g} "
                  f"(rtol={rtol}, atol={atol})")
    test = SETTINGS["test"]
    if failed:
        print(f"{test}: compiled differs from eager in {failed} leaves (torch {torch.__version__})")
        return 1
    print(f"{test}: compiled matches eager (torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
