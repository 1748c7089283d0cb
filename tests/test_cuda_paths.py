"""The CUDA paths' CPU-side logic: the ``max_cudagraph_skips`` gate, torch's skip messages
parsed into reasons, the gate that cannot apply said so, and warm-up bookkeeping. The CUDA
behaviour itself is exercised by ``bench/gpu_check.py`` on a GPU machine."""

import dataclasses
import importlib
import logging
import warnings
from types import SimpleNamespace

import pytest
import torch

from pytest_torchcompile import CompileChecker, CompileSettings, SettingsError, TensorSpec
from pytest_torchcompile import torch_compat as compat
from pytest_torchcompile.compiling import CompileSession, CompileStats, cudagraphs_unused
from pytest_torchcompile.cudagraph_skips import UNSTATED_SKIP, CudagraphSkip, parse_cudagraph_skip
from pytest_torchcompile.gates import health_failures, health_notes
from pytest_torchcompile.markers import parse_marker
from pytest_torchcompile.records import CheckRecord
from pytest_torchcompile.timing import MAX_WARMUP_CALLS, WARMUP_CALLS, measure, warm_up

TORCH_FILE = f"{compat.TORCH_DIR}/nn/modules/module.py"
# As torch 2.13 words them (cudagraph_utils.py, output_code.py, cudagraph_trees.py).
MUTATION = (
    "skipping cudagraphs due to mutated inputs (1 instances). Found from : \n"
    '   File "/src/models.py", line 12, in forward\n'
    "    x.add_(1)\n"
    f'  File "{TORCH_FILE}", line 1775, in _call_impl\n'
    "    return forward_call(*args, **kwargs)\n"
)
CPU_DEVICE = (
    "skipping cudagraphs due to skipping cudagraphs due to cpu device (arg1_1). Found from : \n"
    '   File "/src/models.py", line 31, in forward\n'
    "    return x * self.table.to(x.device)\n"
)
INCOMPATIBLE = (
    "skipping cudagraphs due to disabling cudagraphs due to incompatible op "
    'aten.nonzero.default Found from \n   File "/src/models.py", line 40, in forward\n'
)
FAILED_TESTS = "skipping cudagraphs due to ['mutated inputs', 'non-Tensor inputs']"
RERECORD = (
    "skipping cudagraph due to function 0 exceeding max re-recording limit (=50) on "
    "cudagraph node None due to static input data pointer changed.\ninput name: arg0_1."
)
DYNAMIC = (
    "skipping cudagraphs due to graph with symbolic shapes inputs and "
    "config.triton.cudagraph_skip_dynamic_graphs=True.\n"
)


@pytest.mark.parametrize(
    ("message", "reason", "location"),
    [
        (MUTATION, "mutated inputs (1 instances)", "/src/models.py:12"),
        (CPU_DEVICE, "cpu device (arg1_1)", "/src/models.py:31"),
        (INCOMPATIBLE, "incompatible op aten.nonzero.default", "/src/models.py:40"),
        (FAILED_TESTS, "mutated inputs, non-Tensor inputs", None),
        (
            RERECORD,
            "function 0 exceeding max re-recording limit (=50) on cudagraph node None due to "
            "static input data pointer changed",
            None,
        ),
        (
            DYNAMIC,
            "graph with symbolic shapes inputs and config.triton.cudagraph_skip_dynamic_graphs"
            "=True",
            None,
        ),
    ],
)
def test_skip_messages_give_torchs_reason_and_the_users_line(message, reason, location):
    assert parse_cudagraph_skip(message) == CudagraphSkip(reason, location)


def test_other_messages_on_the_cudagraphs_log_are_not_skips():
    warning = "CUDAGraph supports dynamic shapes by recording a new graph for each distinct size"
    assert parse_cudagraph_skip(warning) is None


def _cuda_settings(**changes):
    return CompileSettings(device="cuda", mode="reduce-overhead", **changes)


@pytest.mark.parametrize("silenced", [False, True])
def test_a_session_hears_each_skip_torch_logs_and_counts_the_unstated(silenced):
    """torch's own skip function, as inductor calls it: the message it logs and the count
    it keeps both reach the stats (a skip with no message becomes an unstated entry), also
    where the user silenced torch's warnings; the loggers are left as they were."""
    log_skip = importlib.import_module(
        "torch._inductor.cudagraph_utils"
    ).log_cudagraph_skip_and_bump_counter
    counters = importlib.import_module("torch._dynamo.utils").counters
    torch_log = logging.getLogger("torch")
    level = torch_log.level
    loggers = compat.cudagraph_skip_loggers()
    before = [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    if silenced:
        torch_log.setLevel(logging.CRITICAL)
    try:
        with CompileSession(_cuda_settings()) as session:
            log_skip(MUTATION)
            counters["inductor"]["cudagraph_skips"] += 1  # a CPU-only graph: counted, unsaid
            stats = session.stats()
    finally:
        torch_log.setLevel(level)
    assert stats.cudagraphs
    assert stats.cudagraph_skips == (
        CudagraphSkip("mutated inputs (1 instances)", "/src/models.py:12"),
        UNSTATED_SKIP,
    )
    assert [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers] == before


def test_a_warm_up_that_never_replayed_is_a_skip_unless_torch_stated_one():
    """The backstop to the skips a session hears: after a warm-up on one input, no replay
    with no skip heard is a skip of its own; where torch counted skips, they stand."""
    with CompileSession(_cuda_settings()) as session:
        session.expect_replay("execution", 3)
        assert session.stats().cudagraph_skips == ()
        session.expect_replay(None, 10)
        (skip,) = session.stats().cudagraph_skips
    assert skip.reason.startswith("no CUDA graph replayed in 10 calls on one input")
    counters = importlib.import_module("torch._dynamo.utils").counters
    with CompileSession(_cuda_settings()) as session:
        counters["inductor"]["cudagraph_skips"] += 1
        session.expect_replay("warmup", 10)
        assert session.stats().cudagraph_skips == (UNSTATED_SKIP,)
    with CompileSession(CompileSettings(mode="reduce-overhead")) as session:  # on the CPU
        session.expect_replay(None, 3)
        assert session.stats().cudagraph_skips == ()


def test_cudagraph_skip_gate_fails_past_its_limit_with_each_reason():
    skips = (CudagraphSkip("mutated inputs (1 instances)", "/src/models.py:12"), UNSTATED_SKIP)
    stats = CompileStats(graphs=1, cudagraphs=True, cudagraph_skips=skips)
    assert health_failures(stats, _cuda_settings(max_cudagraph_skips=2)) == []
    (failure,) = health_failures(stats, _cuda_settings(max_cudagraph_skips=1))
    assert failure.startswith("2 CUDA graph skip(s), max_cudagraph_skips=1:")
    assert "\n  /src/models.py:12: mutated inputs (1 instances)" in failure
    assert health_notes(stats, _cuda_settings(max_cudagraph_skips=1)) == []


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        (CompileSettings(mode="reduce-overhead"), "exist on CUDA devices only"),
        (CompileSettings(device="cuda"), "mode 'default' does not use CUDA graphs"),
        (CompileSettings(device="cuda", backend="eager"), "backend 'eager' does not make"),
    ],
)
def test_cudagraph_gate_out_of_play_is_a_note_never_a_silent_pass(settings, why):
    assert cudagraphs_unused(settings) is not None
    settings = settings.replace(max_cudagraph_skips=0)
    stats = CompileStats(graphs=1, cudagraph_skips=(UNSTATED_SKIP,))  # cudagraphs=False
    assert health_failures(stats, settings) == []
    (note,) = health_notes(stats, settings)
    assert note.startswith("max_cudagraph_skips=0 was not checked: ") and why in note


def test_modes_that_record_cuda_graphs_are_in_play_on_cuda():
    for mode in ("reduce-overhead", "max-autotune"):
        assert cudagraphs_unused(CompileSettings(device="cuda:1", mode=mode)) is None
    options = {"triton.cudagraphs": True}
    assert cudagraphs_unused(CompileSettings(device="cuda", options=options)) is None
    unused = cudagraphs_unused(CompileSettings(device="cuda", mode="max-autotune-no-cudagraphs"))
    assert unused is not None


def test_a_check_on_the_cpu_records_and_warns_that_the_gate_did_not_apply():
    def model(x):
        return x * 2.0 + 1.0

    checker = CompileChecker(CompileSettings(mode="reduce-overhead"), database=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = checker.assert_equivalent(
            model, [TensorSpec(8)], examples=1, max_cudagraph_skips=0
        )
    assert record.outcome == "passed" and record.cudagraph_skips is None
    (note,) = [w for w in record.warnings if "max_cudagraph_skips" in w]
    assert "max_cudagraph_skips=0 was not checked: CUDA graphs exist on CUDA devices only" in note
    assert any(note in str(w.message) for w in caught)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "0"])
def test_max_cudagraph_skips_must_be_a_count(bad):
    with pytest.raises(SettingsError, match="max_cudagraph_skips must be"):
        CompileSettings(max_cudagraph_skips=bad)


def test_both_markers_take_max_cudagraph_skips():
    for marker, extra in (("compile_equivalent", {}), ("compile_faster", {"min_speedup": 1.1})):
        args = parse_marker(marker, (), {"max_cudagraph_skips": 0, **extra})
        assert args.overrides["max_cudagraph_skips"] == 0


def test_records_keep_the_skips_through_json():
    record = CheckRecord(
        "t", "faster", "reduce-overhead", "inductor", "cuda", "failed", cudagraph_skips=("a",)
    )
    assert CheckRecord.from_json(record.to_json()) == record
    none = dataclasses.replace(record, cudagraph_skips=None)
    assert CheckRecord.from_json(none.to_json()).cudagraph_skips is None


def test_warm_up_on_the_cpu_makes_the_usual_calls_and_measures_no_memory():
    calls = []
    for cudagraphs in (False, True):
        calls.clear()
        warm = warm_up(lambda: calls.append(1), "cpu", cudagraphs=cudagraphs)
        assert (warm.calls, warm.peak_memory, warm.cudagraph_state) == (WARMUP_CALLS, None, None)
        assert len(calls) == WARMUP_CALLS < MAX_WARMUP_CALLS
    assert compat.cudagraph_tree_state(torch.device("cpu")) is None
    assert compat.cudagraph_pool(torch.device("cpu")) is None


def test_timing_on_the_cpu_reports_no_pool_and_its_warm_up():
    x = torch.ones(64)
    timing = measure(
        lambda: x * 2, lambda: x * 2, min_speedup=0.5, max_time=0.2, device="cpu", threads=1
    )
    assert timing.compiled_pool_memory is None and timing.eager_peak_memory is None
    assert timing.warmup_calls == WARMUP_CALLS and timing.cudagraph_state is None


# -- graph partition's silent skips, and the step tracking a session leaves behind ----------

output_code = importlib.import_module("torch._inductor.output_code")
BoxedBool = importlib.import_module("torch._inductor.utils").BoxedBool
OUTPUT_TRACE = '  File "/src/models.py", line 19, in forward\n    return self.net(x)\n'


needs_partition = pytest.mark.skipif(
    not hasattr(output_code, "cudagraph_partition_post_compile"),
    reason="this torch has no graph partition",
)


def _partitioned_graph(*, nodes=3, fail=(), disabled=None):
    """What ``cudagraph_partition_post_compile`` reads of a compiled graph whose partitions
    were all split out of CUDA graphs (no partition map), as a CUDA MLP's are under
    ``cudagraph_skip_dynamic_graphs``."""
    return SimpleNamespace(
        cudagraph_info=SimpleNamespace(
            cudagraph_fail_reasons=list(fail), stack_traces=[None, OUTPUT_TRACE]
        ),
        partition_maps=[],
        device_types={"cuda"},
        disabled_cudagraphs_reason=disabled,
        metrics_deltas=SimpleNamespace(ir_nodes_pre_fusion=nodes),
        current_callable=lambda args: args,
        fx_kwargs={"is_backward": False, "is_inference": True},
    )


def _post_compile(graph):
    """Inductor's CUDA graph step under graph partition, as ``post_compile`` calls it."""
    cudagraphs = BoxedBool(True)
    output_code.cudagraph_partition_post_compile([], graph, cudagraphs, {}, None)
    return bool(cudagraphs)


@needs_partition
def test_a_graph_partition_leaves_nothing_to_capture_is_a_skip_torch_does_not_state():
    """torch's own function (torch 2.11 to 2.13): no partition to capture disables CUDA
    graphs without a log line or a count. The session hears it, with the user's line; an
    unstated count next to it stays an entry of its own; the function is put back."""
    original = output_code.cudagraph_partition_post_compile
    counters = importlib.import_module("torch._dynamo.utils").counters
    inductor_config = importlib.import_module("torch._inductor.config")
    settings = _cuda_settings(options={"triton.cudagraph_skip_dynamic_graphs": True})
    with CompileSession(settings) as session:
        before = compat.cudagraph_skip_count()
        with inductor_config.patch({"triton.cudagraph_skip_dynamic_graphs": True}):
            assert _post_compile(_partitioned_graph()) is False
        assert compat.cudagraph_skip_count() == before  # torch counted nothing
        counters["inductor"]["cudagraph_skips"] += 1  # a CPU-only graph elsewhere
        skips = session.stats().cudagraph_skips
    assert output_code.cudagraph_partition_post_compile is original
    assert skips[0] == UNSTATED_SKIP
    assert skips[1].location == "/src/models.py:19"
    assert skips[1].reason.startswith("graph partition left nothing to capture")
    assert "cudagraph_skip_dynamic_graphs=True splits out" in skips[1].reason
    with CompileSession(_cuda_settings()) as session:  # a failed test, silent too
        _post_compile(_partitioned_graph(fail=["non-Tensor inputs"]))
        (skip,) = session.stats().cudagraph_skips
    assert skip == CudagraphSkip("non-Tensor inputs", "/src/models.py:19")


@needs_partition
def test_a_graph_of_views_alone_or_a_skip_torch_states_is_not_heard_as_silent(monkeypatch):
    with CompileSession(_cuda_settings()) as session:
        _post_compile(_partitioned_graph(nodes=0))  # nothing runs: nothing lost
        assert session.stats().cudagraph_skips == ()
    log_skip = importlib.import_module(
        "torch._inductor.cudagraph_utils"
    ).log_cudagraph_skip_and_bump_counter

    def stating(example_inputs, compiled_graph, cudagraphs, constants, index):
        BoxedBool.disable(cudagraphs)
        log_skip(MUTATION)

    monkeypatch.setattr(output_code, "cudagraph_partition_post_compile", stating)
    with CompileSession(_cuda_settings()) as session:
        _post_compile(_partitioned_graph())
        stats = session.stats()
    assert stats.cudagraph_skips == (
        CudagraphSkip("mutated inputs (1 instances)", "/src/models.py:12"),
    )
    with CompileSession(CompileSettings(mode="reduce-overhead")):  # not in play: no wrapper
        assert output_code.cudagraph_partition_post_compile is stating


def test_a_session_leaves_cuda_graph_steps_counted_per_call_as_torch_does():
    """The session marks a step at each call it makes; torch then takes marked steps as
    its generations for good, and a model called as usual afterwards re-records instead of
    replaying. Leaving the session puts the counter back: each call a generation again."""
    trees = importlib.import_module("torch._inductor.cudagraph_trees")
    generation = importlib.import_module("torch._dynamo.mutation_guard").GenerationTracker
    with CompileSession(_cuda_settings()) as session:
        compiled = session.compile(lambda x: x * 2.0 + 1.0)
        session.call(lambda: compiled(torch.ones(4)))
        marked = trees.MarkStepBox.mark_step_counter
        assert marked != 0 and trees.CUDAGraphTreeManager.get_curr_generation() == marked
    assert trees.MarkStepBox.mark_step_counter == 0
    assert trees.CUDAGraphTreeManager.get_curr_generation() == generation.generation
