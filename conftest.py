"""Shared test fixtures. The plugin itself points TORCHINDUCTOR_CACHE_DIR at .pytest_cache,
so every pytester subprocess inherits one warm inductor cache."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch  # noqa: F401  pytester's in-process runs drop modules they imported; torch's C

# extension cannot be imported a second time, so the outer process holds it once for all.

# torchvision from the package index is a CUDA build whose C++ ops do not load beside the
# CPU torch, and transformers imports it when installed; its pure-Python models work once
# its op registrations are skipped. (tests/test_zoo.py gives its subprocesses the same.)
try:
    import torchvision  # noqa: F401
except (ImportError, RuntimeError):
    for _name in [n for n in sys.modules if n.startswith("torchvision")]:
        del sys.modules[_name]
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("stub")

MODELS = (Path(__file__).parent / "examples" / "models.py").read_text()
SUBPROCESS_TIMEOUT = 600
# Where GraphBreaker breaks the graph (``.item()``), as failure messages should name it.
GRAPH_BREAK_LINE = next(
    n for n, line in enumerate(MODELS.splitlines(), 1) if "max().item()" in line
)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory where ``from models import ...`` gives the example models."""
    pytester.makepyfile(models=MODELS)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in a fresh process: Dynamo's global state must not leak between runs.

    Failed checks are not diagnosed unless a test asks (``--compile-diagnose=...``): the
    tests that plant failures are about the verdict, and a diagnosis costs compiles."""
    if not any(a.startswith("--compile-diagnose") for a in args):
        args = ("--compile-diagnose=off", *args)
    return pytester.runpytest_subprocess("-p", "no:randomly", *args, timeout=SUBPROCESS_TIMEOUT)
