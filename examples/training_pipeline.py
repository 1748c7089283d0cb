"""safe_compile in a training pipeline: compile only what validates, fall back otherwise.

    python examples/training_pipeline.py

Settings come from a plain dict, as they would from a project's YAML or TOML section.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from models import ConvNet
from torch._dynamo.backends.registry import register_backend

from pytest_torchcompile import CompileSettings, safe_compile

CONFIG = {"mode": "default", "backend": "inductor", "fallback": True}


@register_backend
def flaky_backend(gm, example_inputs):
    """Stands in for a compiler that crashes on this model (to show the fallback)."""
    raise RuntimeError("this backend cannot compile conv2d")


def train(model, steps: int = 5) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 5, (16,))
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return loss.item()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = CompileSettings.from_dict(CONFIG)
    example = (torch.randn(16, 3, 12, 12),)

    net = ConvNet().eval()  # validate in eval mode: no dropout, frozen BatchNorm statistics
    result = safe_compile(net, example, settings=settings)
    print("inductor:", {k: v for k, v in dataclasses.asdict(result).items() if k != "model"})
    print("  loss after 5 steps:", round(train(result.model.train()), 4))

    forced = safe_compile(
        ConvNet().eval(), example, settings=settings.replace(backend="flaky_backend")
    )
    print("forced fallback:", forced.fallback_used, "-", (forced.reason or "").splitlines()[1])
    print("  loss after 5 steps (eager):", round(train(forced.model.train()), 4))


if __name__ == "__main__":
    main()
