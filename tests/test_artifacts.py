"""--compile-cache-artifacts: the file's format and its failure modes (no compiles), the
merge of several processes' artifacts, and two fresh runners sharing one file (real
inductor: the feature is about inductor's caches)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import run
from pytest_torchcompile import artifacts
from pytest_torchcompile import torch_compat as compat
from pytest_torchcompile.artifacts import ArtifactStore, decode, encode, read

# torch's portable cache artifacts came after the floor (2.6); there the option says in one
# line that it is not supported (tested by hand), and these tests have nothing to exercise.
pytestmark = pytest.mark.skipif(
    not hasattr(torch.compiler, "save_cache_artifacts"),
    reason=f"torch {torch.__version__} has no portable compile-cache artifacts",
)


def _payload(*entries: tuple[str, str, bytes]) -> bytes:
    """torch's own serialization of made-up artifacts (kind, key, content)."""
    from torch.compiler._cache import CacheArtifactManager

    CacheArtifactManager._ensure_cache_artifacts_registered()
    with CacheArtifactManager.with_fresh_cache():
        for kind, key, content in entries:
            CacheArtifactManager.record_artifact(kind, key, content)
        serialized = CacheArtifactManager.serialize()
    assert serialized is not None
    return serialized[0]


A = ("inductor", "fx-a", b"graph a")
B = ("inductor", "fx-b", b"graph b")
C = ("aot_autograd", "aot-c", b"entry c")


def test_the_file_round_trips_and_names_its_torch():
    payload = _payload(A, C)
    data = encode(payload, {"inductor": 1, "aot_autograd": 1})
    read_back = decode("f", data)
    assert read_back.problem is None and read_back.payload == payload
    assert read_back.counts == {"inductor": 1, "aot_autograd": 1}
    header = json.loads(data.splitlines()[1])
    assert header["torch"] == torch.__version__


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: b"garbage" + d, "not a pytest-torchcompile cache-artifacts file"),
        (lambda d: d[:40], "corrupt (unreadable header)"),
        (lambda d: d[:-10], "corrupt (checksum mismatch: truncated or altered)"),
        (lambda d: d.replace(torch.__version__.encode(), b"2.0.0", 1), "written by torch 2.0.0"),
        (lambda d: d.replace(b'"version": 1', b'"version": 9', 1), "format version 9"),
    ],
    ids=["not-ours", "header", "truncated", "other-torch", "other-format"],
)
def test_a_file_this_torch_cannot_use_is_ignored_with_the_reason(change, problem):
    data = change(encode(_payload(A), {"inductor": 1}))
    read_back = decode("f", data)
    assert read_back.payload is None and read_back.problem.startswith(problem)


def test_merge_keeps_every_distinct_artifact_once():
    merged = compat.merge_cache_artifacts([_payload(A, C), _payload(B, A), _payload(C)])
    assert merged is not None
    payload, counts = merged
    assert counts == {"inductor": 2, "aot_autograd": 1}
    again = compat.merge_cache_artifacts([payload])
    assert again is not None and again[1] == counts
    with pytest.raises(ValueError, match="could not read"):
        compat.merge_cache_artifacts([payload[:-3]])


def test_save_merges_what_was_read_with_what_each_process_added(tmp_path, monkeypatch):
    path = str(tmp_path / "cache" / "artifacts.bin")  # the folder is made on write
    first = ArtifactStore(path)
    first.open(loaded_by="not loaded here")
    assert first.notes == [f"{path} not found: this run started without artifacts"]
    first.add(_payload(A))
    first.add(_payload(C))  # another worker's
    first.save()
    assert first.notes[-1] == f"saved 2 artifacts (aot_autograd 1, inductor 1) to {path}"

    monkeypatch.setattr(compat, "load_cache_artifacts", lambda payload: {"inductor": 1})
    monkeypatch.setattr(compat, "save_cache_artifacts", lambda: _payload(A))
    second = ArtifactStore(path)
    second.open()
    second.add(second.this_run())
    second.save()  # A was loaded and hit: nothing new
    assert second.notes[-1] == f"nothing new to save: {path} unchanged"
    third = ArtifactStore(path)
    third.open()
    third.add(_payload(B))
    third.save()
    assert read(path).counts == {"inductor": 2, "aot_autograd": 1}
    assert os.listdir(tmp_path / "cache") == ["artifacts.bin"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_is_one_note(tmp_path, monkeypatch):
    path = tmp_path / "artifacts.bin"
    path.write_bytes(b"old")

    def crash(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    store = ArtifactStore(str(path))
    store.add(_payload(A))
    store.save()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["artifacts.bin"]
    assert store.notes == [f"cannot write {path}: No space left on device"]


def test_describe():
    assert artifacts.describe({"inductor": 2, "aot_autograd": 1}) == (
        "3 artifacts (aot_autograd 1, inductor 2)"
    )
    assert artifacts.describe({}) == "0 artifacts"


def test_a_corrupt_file_is_one_line_and_the_run_passes(pytester):
    bad = pytester.path / "artifacts.bin"
    bad.write_bytes(b"\x00garbage")
    pytester.makepyfile("def test_plain(): pass")
    result = run(pytester, f"--compile-cache-artifacts={bad}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"cache artifacts: {bad} ignored: not a pytest-torchcompile cache-artifacts file"]
    )
    assert result.stdout.str().count("ignored") == 1
    assert bad.read_bytes() == b"\x00garbage"  # nothing compiled: nothing to save over it


SMALL = """
from models import MLP, PointwiseChain
from pytest_torchcompile import TensorSpec, compile_equivalent

@compile_equivalent(inputs=[TensorSpec(4, 128)], examples=1)
def test_mlp():
    return MLP().eval()

@compile_equivalent(inputs=[TensorSpec(64)], examples=1)
def test_pointwise():
    return PointwiseChain()
"""


def test_a_fresh_runner_starts_warm_from_the_artifacts_of_two_workers(suite, tmp_path):
    """Real inductor. The first run compiles over two xdist workers, each into an empty
    cache; the controller merges both workers' artifacts into one file. The second run
    starts from another empty cache directory and that file: every lookup hits."""
    suite.makepyfile(test_small=SMALL)
    path = tmp_path / "ci-cache" / "artifacts.bin"
    first = run(
        suite,
        "-n",
        "2",
        f"--compile-cache-dir={tmp_path / 'runner-1'}",
        f"--compile-cache-artifacts={path}",
    )
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines(
        [
            "*torch.compile cache*",
            "compile cache: * of * lookups hit*",
            f"cache artifacts: {path} not found: this run started without artifacts",
            f"cache artifacts: saved * artifacts (*inductor*) to {path}",
        ]
    )
    assert artifacts.read(str(path)).counts["inductor"] >= 2  # both tests' graphs
    report = tmp_path / "second.json"
    second = run(
        suite,
        f"--compile-cache-dir={tmp_path / 'runner-2'}",
        f"--compile-cache-artifacts={path}",
        f"--compile-report={report}",
    )
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(
        [
            f"cache artifacts: loaded * artifacts (*) from {path}",
            f"cache artifacts: nothing new to save: {path} unchanged",
        ]
    )
    line = next(ln for ln in second.stdout.lines if ln.startswith("compile cache:"))
    hits, looked = (int(n) for n in line.split()[2:5:2])
    assert hits == looked > 0, line
    records = json.loads(report.read_text())["records"]
    assert {r["compile_cache"] for r in records} == {"warm"}
