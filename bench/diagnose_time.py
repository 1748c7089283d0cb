"""What a diagnosis costs: the failure path of a check, with inductor's planted relu bug.

    python bench/diagnose_time.py [--deep]

For the example MLP (relu for its GELU) and a transformer-sized model (a 2-layer BERT from
transformers
config, random weights), compile with ``cpp.inject_relu_bug_TESTING_ONLY="accuracy"`` (relu
outputs off by one: inductor's own test bug), run the failing check with the diagnosis
``off``, ``auto`` and (with ``--deep``) ``deep``, each in a fresh process on one warm
inductor cache (a first, discarded run warms it), and print a markdown table of wall
times and what each diagnosis found. The diagnosis's own time is the difference from
``off``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """
import sys, types
import torch
import pytest
from pytest_torchcompile import TensorSpec, compile_equivalent

BUG = {{"cpp.inject_relu_bug_TESTING_ONLY": "accuracy"}}


@compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={{"batch": (2, 16)}},
                    examples=5, options=BUG)
def test_mlp():
    torch.manual_seed(0)  # the examples' MLP, with relu for its GELU: the bug's target
    return torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(),
                               torch.nn.LayerNorm(256), torch.nn.Linear(256, 10)).eval()


def bert():
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        for name in [n for n in sys.modules if n.startswith("torchvision")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("stub")
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=1024, hidden_act="relu", vocab_size=1000)
    return BertModel(config).eval()


@compile_equivalent(inputs=[TensorSpec("batch", "seq", dtype=torch.int64, high=1000)],
                    dims={{"batch": (1, 4), "seq": (8, 32)}}, examples=5, options=BUG)
def test_bert():
    return bert()
"""


def run(folder: Path, cache: Path, level: str, report: Path) -> float:
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
        f"--compile-cache-dir={cache}", f"--compile-diagnose={level}",
        f"--compile-repro-dir={folder / 'repros'}", f"--compile-report={report}",
        "test_diag_bench.py",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deep", action="store_true", help="also time the deep level")
    levels = ["off", "auto"] + (["deep"] if parser.parse_args().deep else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp), Path(tmp) / "cache"
        suite = SUITE.format()
        (folder / "test_diag_bench.py").write_text(suite)
        run(folder, cache, "auto", folder / "warmup.json")  # warm the inductor cache
        rows = []
        for level in levels:
            report = folder / f"{level}.json"
            seconds = run(folder, cache, level, report)
            records = json.loads(report.read_text())["records"]
            for record in records:
                found = record.get("diagnosis") or {}
                module = found.get("module") or {}
                rows.append(
                    (
                        record["test_id"].split("::")[-1],
                        level,
                        f"{seconds:.1f}",
                        f"{found.get('seconds', 0):.1f}" if found else "-",
                        str(found.get("diverging_stage") or "-"),
                        f"{module.get('path')} ({module.get('class')})" if module else "-",
                        str(found.get("bisection") or "-"),
                    )
                )
    head = ("check", "diagnose", "session s", "diagnosis s", "diverges at", "module", "bisection")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
