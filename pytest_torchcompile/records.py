"""One record per check: what the table, the JSON report and the baseline read.

Torch-free and JSON round-trippable, so records can travel from xdist workers inside
``report.user_properties`` and be read back from a saved report.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

PROPERTY_NAME = "torchcompile"


@dataclasses.dataclass(frozen=True)
class CheckRecord:
    test_id: str
    check: str  # "equivalent" or "faster"
    mode: str
    backend: str
    device: str
    outcome: str  # "passed", "failed", "xfailed" (failed, as the test expects) or "skipped"
    message: str | None = None
    compile_seconds: float | None = None  # the first call's frames: what a user waits for once
    compile_seconds_total: float | None = None  # every frame, recompiles included
    compile_cache: str | None = None  # "warm", "cold", "mixed" or None (no cache looked up)
    cache_counts: dict[str, int] | None = None  # FX graph / AOTAutograd cache hits, misses
    graphs: int | None = None
    graph_breaks: tuple[dict[str, Any], ...] = ()
    recompiles: tuple[str, ...] = ()
    examples: int | None = None
    max_error: float | None = None
    max_error_path: str | None = None
    atol: float | None = None
    rtol: float | None = None
    speedup: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    rounds: int | None = None
    eager_median: float | None = None
    compiled_median: float | None = None
    eager_peak_memory: int | None = None
    compiled_peak_memory: int | None = None
    threads: int | None = None  # torch threads while timing
    example: dict[str, Any] | None = None  # the failing example's dims and value seed
    diagnosis: dict[str, Any] | None = None  # where a failed check went wrong (diagnose.py)
    warnings: tuple[str, ...] = ()  # passed, but with these caveats (e.g. vacuous leaves)
    cudagraph_skips: tuple[str, ...] | None = None  # each skip's reason; None: no CUDA graphs
    package_bytes: int | None = None  # aoti: the package's size
    package_cached: bool | None = None  # aoti: loaded from the package cache, not rebuilt

    @property
    def label(self) -> str:
        """How messages name a check: ``test_x[default] [default, equivalent]``."""
        return f"{self.test_id} [{self.mode}, {self.check}]"

    @property
    def key(self) -> str:
        """How a record is matched against its baseline."""
        return f"{self.test_id}::{self.check}::{self.mode}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["graph_breaks"] = list(self.graph_breaks)
        data["recompiles"] = list(self.recompiles)
        data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["graph_breaks"] = tuple(data.get("graph_breaks", ()))
        data["recompiles"] = tuple(data.get("recompiles", ()))
        data["warnings"] = tuple(data.get("warnings", ()))
        if data.get("cudagraph_skips") is not None:
            data["cudagraph_skips"] = tuple(data["cudagraph_skips"])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CheckRecord:
        return cls.from_dict(json.loads(text))
