"""Running a model on one example: state snapshots, fresh inputs, what a run observes.

The equivalence search, the speed check and ``safe_compile`` all run models through
these functions, so eager, compiled and the float64 reference see identical state,
identical inputs and an identically seeded RNG.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from .compare import flatten
from .devices import seed_generators
from .errors import CompileCheckError, ModelError
from .inputs import Example
from .tracebacks import user_frame

RNG_SEED = 20240601


def snapshot(module: Any) -> dict[str, torch.Tensor]:
    if not isinstance(module, torch.nn.Module):
        return {}
    state: dict[str, torch.Tensor] = dict(module.named_parameters())
    state.update(module.named_buffers())
    return {name: t.detach().clone() for name, t in state.items()}


def copy_to(model: Any, device: str) -> Any:
    """A deep copy of the model on ``device``: each side of a comparison runs its own."""
    copied = copy.deepcopy(model)
    return copied.to(device) if isinstance(copied, torch.nn.Module) else copied


def restore(module: Any, state: dict[str, torch.Tensor]) -> None:
    """Reset parameters and buffers in place, so compiled code's guards stay valid."""
    if not state:
        return
    live: dict[str, torch.Tensor] = dict(module.named_parameters())
    live.update(module.named_buffers())
    with torch.no_grad():
        for name, value in state.items():
            live[name].copy_(value)
    for param in module.parameters():
        param.grad = None


def observe(
    fn: Callable[..., Any],
    module: Any,
    example: Example,
    *,
    grad: bool,
    device: str = "cpu",
    seed: int = RNG_SEED,
) -> dict:
    """Everything a run produces that must match: output, gradients, buffers."""
    args = tuple(_fresh(v, grad) for v in example.args)
    kwargs = {k: _fresh(v, grad) for k, v in example.kwargs.items()}
    seed_generators(device, seed)
    with torch.set_grad_enabled(grad):
        out = fn(*args, **kwargs)
    observed: dict[str, Any] = {"out": out}  # compare() detaches what it reads
    # Inputs as the call left them: an in-place update compiled code dropped shows here.
    observed["inputs"] = {f"arg{i}": v for i, v in enumerate(args)} | kwargs
    if grad:
        backward_of_sum(out)
        if isinstance(module, torch.nn.Module):
            observed["grad"] = {
                n: p.grad.detach().clone()
                for n, p in module.named_parameters()
                if p.grad is not None
            }
        named = [(f"arg{i}", v) for i, v in enumerate(args)] + list(kwargs.items())
        observed["input_grad"] = {
            n: v.grad for n, v in named if isinstance(v, torch.Tensor) and v.grad is not None
        }
    if isinstance(module, torch.nn.Module):
        observed["buffers"] = {n: b.detach().clone() for n, b in module.named_buffers()}
    return observed


def observe_eager(
    fn: Callable[..., Any],
    module: Any,
    example: Example,
    *,
    grad: bool,
    device: str = "cpu",
    seed: int = RNG_SEED,
) -> dict:
    """``observe`` for the uncompiled model: its exceptions are the user's input mistakes,
    reported short as ``ModelError`` rather than as a compiler failure."""
    try:
        return observe(fn, module, example, grad=grad, device=device, seed=seed)
    except CompileCheckError:
        raise
    except Exception as error:
        raise ModelError(describe_model_error(error, example)) from error


def runner(fn: Callable[..., Any], example: Example, *, grad: bool) -> Callable[[], None]:
    """The work ``observe`` does, minus the bookkeeping: what a speed check times."""
    if not grad:

        def forward() -> None:
            with torch.no_grad():
                fn(*example.args, **example.kwargs)

        return forward

    def forward_backward() -> None:
        args = tuple(_fresh(v, grad) for v in example.args)
        kwargs = {k: _fresh(v, grad) for k, v in example.kwargs.items()}
        backward_of_sum(fn(*args, **kwargs))

    return forward_backward


def backward_of_sum(out: Any) -> None:
    """Backward of the sum of every floating output, added in float64 so outputs of mixed
    precision add up (the gradient of a sum is exactly 1 in any dtype)."""
    losses = [t.real.sum().double() for t in _tensors(out) if t.requires_grad]
    if not losses:
        raise CompileCheckError(
            "grad=True, but no floating output requires grad: nothing to differentiate"
        )
    sum(losses[1:], losses[0]).backward()


def in_float64(example: Example) -> Example:
    def widen(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.detach().double()
        if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
            return type(v)(widen(item) for item in v)
        if isinstance(v, dict):
            return {k: widen(item) for k, item in v.items()}
        return v

    return Example(
        tuple(widen(v) for v in example.args),
        {k: widen(v) for k, v in example.kwargs.items()},
        example.dims,
        example.seed,
    )


def _fresh(value: Any, grad: bool) -> Any:
    if not isinstance(value, torch.Tensor):
        return copy.deepcopy(value)
    fresh = value.detach().clone()
    if grad and (fresh.is_floating_point() or fresh.is_complex()) or value.requires_grad:
        fresh.requires_grad_(True)
    return fresh


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [
        v
        for v in flatten(tree, "")[0].values()
        if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())
    ]


# -- the user's own errors -------------------------------------------------------------------


def first_line(text: str) -> str:
    """The first non-blank line of an error's text, stripped."""
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def describe_model_error(error: BaseException, example: Example) -> str:
    """``eager raised T: first line``, the example, the user frame and what to check."""
    first = first_line(str(error))
    lines = [
        f"eager raised {type(error).__name__}: {first}".rstrip(": "),
        f"example: {example.describe()}",
    ]
    frame = user_frame(error)
    if frame:
        lines.append(f"  in user code: {frame}")
    lines.append(
        "The model fails without compiling, so nothing was compared: check inputs= "
        "(how many, shapes, dtypes, value ranges) and dims= against the model's forward()"
    )
    return "\n".join(lines)
