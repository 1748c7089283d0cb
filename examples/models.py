"""Small real models, built in code (no downloads), shared by the examples."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, features: int = 128, hidden: int = 256, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    """Conv + BatchNorm: in train mode the forward mutates the running statistics.

    SiLU, not ReLU: with ``grad=True`` a ReLU whose input sits at ~0 can flip on a 1e-7
    difference between eager and compiled, and the weight gradient jumps with it (measured:
    up to 1e-2 on 2 of 3 seeds with ReLU, 0 of 5 with SiLU). That is the kink, not the
    compiler; compare gradients of smooth models, or widen atol.
    """

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.SiLU(),
            nn.Conv2d(8, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.SiLU(),
        )
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


@dataclasses.dataclass
class LMOutput:
    logits: torch.Tensor
    hidden: torch.Tensor


class TinyLM(nn.Module):
    """Token ids in, a dataclass of logits and hidden states out."""

    def __init__(self, vocab_size: int = 100, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.block = nn.TransformerEncoderLayer(dim, heads, 64, dropout=0.1, batch_first=True)
        self.out = nn.Linear(dim, vocab_size)

    def forward(self, input_ids: torch.Tensor) -> LMOutput:
        hidden = self.block(self.embed(input_ids))
        return LMOutput(logits=self.out(hidden), hidden=hidden)


class TwoHeads(nn.Module):
    """Dict outputs: a classifier and a regressor over shared features."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(24, 48), nn.SiLU())
        self.cls = nn.Linear(48, 3)
        self.reg = nn.Linear(48, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {"logits": self.cls(h), "score": self.reg(h).squeeze(-1), "n": x.shape[0]}


class PointwiseChain(nn.Module):
    """Cheap elementwise ops: eager makes a pass over memory per op (16 here), inductor fuses
    them into one loop. Memory-bound, so fusion pays: ~7x on 2^18 floats on the 2-core CI
    machine, measured quiet. (Transcendental chains such as sin/cos are compute-bound and
    gain little: fusion saves memory traffic, not arithmetic.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(8):
            x = x * 1.01 + 0.1
            x = torch.where(x > 1.0, x * 0.5, x)
        return x


class SinCosChain(nn.Module):
    """The chain from the speed gate's issue: 8 sin/cos steps, compute-bound, about 1.3x
    faster compiled on a quiet 2-core machine (and 20-30x by naive timing on a busy one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(8):
            x = torch.sin(x) + torch.cos(x) * 0.5
        return x


class GraphBreaker(nn.Module):
    """A ``.item()`` in forward: Dynamo must split the graph there."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        scale = h.abs().max().item()  # data-dependent Python float: a graph break
        return self.b(h / (scale + 1.0))


class ShapeBranch(nn.Module):
    """A Python branch on a dimension: every new size may mean a recompile."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % 2 == 0:
            return self.lin(x)
        return self.lin(x) * 2
