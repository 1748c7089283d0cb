"""torch_compat and the pure accounting in compiling: torch's log wording across releases,
metrics -> stats, and (eager backend, where the test is about plugin logic) what a session
reads from Dynamo on models with many frames and torch-owned ``forward``s."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest
import torch

from pytest_torchcompile import torch_compat as compat
from pytest_torchcompile.compiling import (
    SIZE_SPECIALISATION_HINT,
    CompileSession,
    GraphBreak,
    callable_label,
    compile_stats,
    parse_graph_break,
)
from pytest_torchcompile.settings import CompileSettings
from pytest_torchcompile.torch_compat import FrameMetrics, TorchFeatureMissing

# -- the graph-break log, as torch words it ----------------------------------------------------
# Each message is what a record of Dynamo's ``graph_breaks`` log returns from getMessage().

# torch 2.4-2.5: one "Reason:" line. From PyTorch's own troubleshooting guide of that time
# (docs/source/torch.compiler_troubleshooting.rst), which shows the record as printed, so
# the exception's traceback (exc_info) follows the message there.
TORCH_2_5_ITEM = """\
Graph break in user code at /data/users/williamwen/pytorch/playground.py:7
Reason: Unsupported: Tensor.item
User code traceback:
File "/data/users/williamwen/pytorch/playground.py", line 7, in torch_dynamo_resume_in_fn_at_6
    return x + y.item()
Traceback (most recent call last):
File "/data/users/williamwen/pytorch/torch/_dynamo/symbolic_convert.py", line 616, in wrapper
    return inner_fn(self, inst)
        ^^^^^^^^^^^^^^^^^^^^
File "/data/users/williamwen/pytorch/torch/_dynamo/exc.py", line 304, in unimplemented
    raise Unsupported(msg, case_name=case_name)
torch._dynamo.exc.Unsupported: Tensor.item
"""
TORCH_2_5_JUMP = """\
Graph break in user code at /data/users/williamwen/pytorch/playground.py:6
Reason: Data-dependent jump
User code traceback:
File "/data/users/williamwen/pytorch/playground.py", line 6, in fn
    if y > 0:
"""
TORCH_2_5_BUILTIN = """\
Graph break in user code at /data/users/williamwen/pytorch/playground.py:7
Reason: Unsupported: builtin: open [<class 'torch._dynamo.variables.constant.ConstantVariable'>, \
<class 'torch._dynamo.variables.constant.ConstantVariable'>] False
User code traceback:
File "/data/users/williamwen/pytorch/playground.py", line 7, in fn
    with open("test.txt", "r") as f:
"""

# torch 2.7: "Graph Break Reason:" with type, explanation, hints, no documentation link. From
# a user's TORCH_LOGS=graph_breaks output (torch 2.7, module.py:1751 _wrapped_call_impl).
TORCH_2_7_DATA_DEPENDENT = """\
Graph break in user code at /home/SigLIP-2/model.py:102
Graph Break Reason: Data dependent operator
  Explanation: Operator `aten._local_scalar_dense.default` has a non-Tensor output whose \
value is dependent on the data of Tensor inputs.
  Hint: Enable tracing of data-dependent output operators with \
`torch._dynamo.config.capture_scalar_outputs = True`

  Developer debug context: aten._local_scalar_dense.default

User code traceback:
  File "/home/SigLIP-2/benchmark.py", line 231, in <module>
    main()
  File "/home/SigLIP-2/env/lib/python3.10/site-packages/torch/nn/modules/module.py", line 1751, \
in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
"""

# Between 2.7 and 2.13: the documentation link appears. PyTorch's
# test_exc.py::test_graph_break_log expectation of that time (the test munges paths and lines).
TORCH_2_8_USER_BREAK = """\
Graph break in user code at test_exc.py:N
Graph Break Reason: Call to `torch._dynamo.graph_break()`
  Explanation: User-inserted graph break. Message: None
  Hint: Remove the `torch._dynamo.graph_break()` call.

  Developer debug context: Called `torch._dynamo.graph_break()` with args `[]`, kwargs `{}`

 For more details about this graph break, please visit: \
https://meta-pytorch.github.io/compile-graph-break-site/gb/gb0025.html
User code traceback:
  File "test_exc.py", line N, in test_graph_break_log
    torch.compile(fn001, backend="eager")(torch.randn(1))
  File "test_exc.py", line N, in fn002
    torch._dynamo.graph_break()
"""

# torch 2.13 (recorded with this repository's torch): a framing line first, multi-line
# explanations, a second graph break while handling the first, stack attributions.
TORCH_2_13_ITEM = """\
Graph break in user code at /work/proj/models.py:14
Graph Break Reason: Encountered graph break when attempting to trace CALL: a function call, \
e.g. f(x, y):

Unsupported Tensor.item() call with capture_scalar_outputs=False
  Explanation: Dynamo does not support tracing `Tensor.item()` with \
config.capture_scalar_outputs=False.
  Hint: Set `torch._dynamo.config.capture_scalar_outputs = True` or \
`export TORCHDYNAMO_CAPTURE_SCALAR_OUTPUTS=1` to include these operations in the captured graph.

  Developer debug context: call_method TensorVariable() item () {}

 For more details about this graph break, please visit: \
https://meta-pytorch.github.io/compile-graph-break-site/gb/gb0124.html

User code traceback:
  File "/work/proj/run.py", line 31, in <module>
    torch.compile(f, backend="eager")(torch.randn(4))
  File "/work/proj/models.py", line 14, in f1
    s = y.max().item()
        ^^^^^^^^^^^^^^
"""
TORCH_2_13_BRANCH = """\
Graph break in user code at /work/proj/models.py:22
Graph Break Reason: Data-dependent branching
  Explanation: Detected data-dependent branching (e.g. `if my_tensor.sum() > 0:`). Dynamo \
does not support tracing dynamic control flow.

      The branch condition involves a tensor computed as follows:
        # File "/work/proj/models.py", line 22, in f3, code: if y.sum() > 0:
        gt = gt(sum_1, 0)
\x20\x20\x20\x20
  Hint: This graph break is fundamental - it is unlikely that Dynamo will ever be able to \
trace through your code. Consider finding a workaround.
  Hint: Use `torch.cond` to express dynamic control flow.

  Developer debug context: attempted to jump with TensorVariable()

 For more details about this graph break, please visit: \
https://meta-pytorch.github.io/compile-graph-break-site/gb/gb0170.html

User code traceback:
  File "/work/proj/models.py", line 22, in f3
    if y.sum() > 0:
       ^^^^^^^^^^^^
"""
TORCH_2_13_NESTED = """\
Graph break in user code at /work/proj/models.py:30
Graph Break Reason: Failed to handle graph break gracefully. Skipping the function and falling \
back to eager. Graph break encountered:

Failed to trace builtin operator
  Explanation: Dynamo does not know how to trace builtin operator `print` with argument types \
['int'] (has_kwargs False)
  Hint: Please report an issue to PyTorch.

  Developer debug context: builtin print \
[<class 'torch._dynamo.variables.constant.ConstantVariable'>] False

 For more details about this graph break, please visit: \
https://meta-pytorch.github.io/compile-graph-break-site/gb/gb0059.html

*** While handling this graph break, another graph break occurred: ***

graph break in loop
  Explanation: torch.compile detected a graph break in a for/while loop. Skipping the frame \
and falling back to eager, as graph breaks in loops are not supported.

  Developer debug context: frame skipped: g3 (/work/proj/models.py line 27)

 For more details about this graph break, please visit: \
https://meta-pytorch.github.io/compile-graph-break-site/gb/gb7000.html

Stack variable source attribution:
  RangeIteratorVariable() originated from:
  File "/work/proj/models.py", line 28
        for i in range(3):

User code traceback:
  File "/work/proj/models.py", line 30, in g3
    print(i)
"""
TORCH_2_13_TOLIST = """\
Graph break in user code at /work/proj/models.py:33
Graph Break Reason: Encountered graph break when attempting to trace CALL: a function call, \
e.g. f(x, y):

Tensor.tolist() with non-integer tensor
  Explanation: Dynamo currently does not support tracing `tolist()` on non-integer tensors.
  Hint: Ensure the input tensor to `tolist()` is an integer type (e.g., int8, int16, int32, \
int64).

  Developer debug context: call_method TensorVariable() to_list

 For more details about this graph break, please visit: \
https://meta-pytorch.github.io/compile-graph-break-site/gb/gb0109.html

Stack variable source attribution:
  LazyVariableTracker(realized: TensorVariable()) originated from:
  File "/work/proj/models.py", line 33
        return x + torch.tensor(x.sum().tolist())
               ^

User code traceback:
  File "/work/proj/models.py", line 33, in g4
    return x + torch.tensor(x.sum().tolist())
"""
# The duplicate-break record, as symbolic_convert.py (2.7 to 2.13) formats it.
TORCH_2_13_DUPLICATE = """\
Graph break (user stack suppressed due to duplicate graph break) in user code at \
/work/proj/models.py:14
Graph Break Reason: Encountered graph break when attempting to trace CALL: a function call, \
e.g. f(x, y):

Unsupported Tensor.item() call with capture_scalar_outputs=False
  Explanation: Dynamo does not support tracing `Tensor.item()` with \
config.capture_scalar_outputs=False."""
# The frame-skip record convert_frame.py (2.13) logs with the Unsupported error as exc_info.
TORCH_2_13_SKIP = """\
Graph break: torch.compile cannot properly resume from this graph break, which results in a skip.
torch.compile will skip tracing the frame g1 (/work/proj/models.py line 11) and fall back to eager.
The graph break occurred in the following user code:
  File "/work/proj/models.py", line 15, in g1
    print("in try")
"""
SKIP_ERROR = RuntimeError(
    "Failed to trace builtin operator\n  Explanation: Dynamo does not know how to trace "
    "builtin operator `print` with argument types ['str'] (has_kwargs False)\n  Hint: Please "
    'report an issue to PyTorch.\n\nfrom user code:\n   File "/work/proj/models.py", line '
    '15, in g1\n    print("in try")'
)

LINK = "https://meta-pytorch.github.io/compile-graph-break-site/gb/gb{}.html"
ITEM_2_13 = (
    "Unsupported Tensor.item() call with capture_scalar_outputs=False: Dynamo does not support "
    "tracing `Tensor.item()` with config.capture_scalar_outputs=False."
)


@pytest.mark.parametrize(
    ("message", "reason", "location"),
    [
        (
            TORCH_2_5_ITEM,
            "Unsupported: Tensor.item",
            "/data/users/williamwen/pytorch/playground.py:7",
        ),
        (TORCH_2_5_JUMP, "Data-dependent jump", "/data/users/williamwen/pytorch/playground.py:6"),
        (
            TORCH_2_5_BUILTIN,
            "Unsupported: builtin: open [<class 'torch._dynamo.variables.constant."
            "ConstantVariable'>, <class 'torch._dynamo.variables.constant.ConstantVariable'>] "
            "False",
            "/data/users/williamwen/pytorch/playground.py:7",
        ),
        (
            TORCH_2_7_DATA_DEPENDENT,
            "Data dependent operator: Operator `aten._local_scalar_dense.default` has a "
            "non-Tensor output whose value is dependent on the data of Tensor inputs.",
            "/home/SigLIP-2/model.py:102",
        ),
        (
            TORCH_2_8_USER_BREAK,
            "Call to `torch._dynamo.graph_break()`: User-inserted graph break. Message: None "
            f"(see {LINK.format('0025')})",
            None,  # the test munges line numbers to "N"
        ),
        (TORCH_2_13_ITEM, f"{ITEM_2_13} (see {LINK.format('0124')})", "/work/proj/models.py:14"),
        (
            TORCH_2_13_BRANCH,
            "Data-dependent branching: Detected data-dependent branching (e.g. `if "
            "my_tensor.sum() > 0:`). Dynamo does not support tracing dynamic control flow. "
            f"(see {LINK.format('0170')})",
            "/work/proj/models.py:22",
        ),
        (
            TORCH_2_13_NESTED,
            "Failed to trace builtin operator: Dynamo does not know how to trace builtin "
            "operator `print` with argument types ['int'] (has_kwargs False) "
            f"(see {LINK.format('0059')})",
            "/work/proj/models.py:30",
        ),
        (
            TORCH_2_13_TOLIST,
            "Tensor.tolist() with non-integer tensor: Dynamo currently does not support tracing "
            f"`tolist()` on non-integer tensors. (see {LINK.format('0109')})",
            "/work/proj/models.py:33",
        ),
        (TORCH_2_13_DUPLICATE, ITEM_2_13, "/work/proj/models.py:14"),
    ],
    ids=[
        "2.5-item",
        "2.5-jump",
        "2.5-builtin",
        "2.7-no-link",
        "2.8+-link",
        "2.13-item",
        "2.13-branch",
        "2.13-nested",
        "2.13-attribution",
        "duplicate",
    ],
)
def test_graph_break_messages_of_every_format(message, reason, location):
    assert parse_graph_break(message) == GraphBreak(reason, location)


def test_a_skipped_frame_takes_its_reason_from_the_logged_error():
    brk = parse_graph_break(TORCH_2_13_SKIP, SKIP_ERROR)
    assert brk.location == "/work/proj/models.py:15"
    assert brk.reason == (
        "Failed to trace builtin operator: Dynamo does not know how to trace builtin operator "
        "`print` with argument types ['str'] (has_kwargs False)"
    )
    # Without the error, the message's own first line, not a made-up reason.
    assert parse_graph_break(TORCH_2_13_SKIP).reason.startswith(
        "Graph break: torch.compile cannot properly resume from this graph break"
    )


def test_unknown_wording_keeps_the_first_line_rather_than_an_unknown_reason():
    brk = parse_graph_break("Graph break in user code at m.py:3\nSomething torch 3.0 says\n")
    assert brk == GraphBreak("Something torch 3.0 says", "m.py:3")
    assert parse_graph_break("Totally new wording\nsecond line").reason == "Totally new wording"


# -- recompile reasons -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        ("0/0: tensor 'x' size mismatch at index 0. expected 1, actual 5", "size 0/1"),
        ("0/1: tensor 'x' size mismatch at index 0. expected 2, actual 1", "size 0/1"),
        ("0/0: tensor 'L['x']' size mismatch at index 1. expected 0, actual 9", "size 0/1"),
        (
            "0/0: 2 <= x.size()[0]  # return F.linear(input, self.weight, self.bias)  # "
            "nn/modules/linear.py:134 in forward (user code shown is first use of this value--"
            "the guard itself is not due user code but due to 0/1 specialization in the "
            "framework; to avoid specialization try torch._dynamo.decorators.mark_unbacked("
            "tensor, dim))",
            "size 0/1",
        ),
        (
            "0/0: input_ids.size()[1] == input_ids.size()[0]  # duck sizing added this equality "
            "because these variables had the same size 2 (to avoid this specialization, set "
            "torch.fx.experimental._config.use_duck_shape = False)",
            "duck sizing",
        ),
        ("0/0: tensor 'x' size mismatch at index 0. expected 2, actual 5", None),
        ("0/0: tensor 'x' size mismatch at index 0. expected 11, actual 12", None),
        ("3/0: L['self'].param_groups[0]['lr'] == 0.01", None),
    ],
)
def test_recompiles_from_first_example_sizes_are_recognised(reason, cause):
    """Real guard failures of torch 2.13 (the last: dims of equal first size, unified)."""
    assert compat.recompile_cause(reason) == cause


# -- metrics -> stats (no compiling) ---------------------------------------------------------

USER = "/work/proj/models.py"
WRAPPER = f"{compat.TORCH_DIR}/_dynamo/external_utils.py"


def test_stats_split_the_first_compile_from_the_total():
    frames = [
        FrameMetrics("forward", USER, 11, 20.0, graph_ops=4),
        FrameMetrics(seconds=3.0, backward=True),
        FrameMetrics(
            "forward",
            USER,
            11,
            50.0,
            "0/0: tensor 'x' size mismatch at index 0. expected 3, actual 5",
            graph_ops=4,
        ),
        FrameMetrics(
            "forward",
            USER,
            11,
            74.0,
            "0/1: tensor 'x' size mismatch at index 0. expected 1, actual 7",
            graph_ops=4,
        ),
    ]
    stats = compile_stats(frames, graphs=3, first_call_frames=2)
    assert stats.compile_seconds == 23.0
    assert stats.compile_seconds_total == 147.0
    assert stats.frames == 4 and stats.graphs == 3
    assert [r.function for r in stats.recompiles] == [f"forward ({USER}:11)"] * 2
    assert [r.hint for r in stats.recompiles] == [None, SIZE_SPECIALISATION_HINT]
    assert stats.recompiles[1].describe().endswith('start dims at 2, e.g. dims={"batch": (2, 32)})')
    assert compile_stats(frames).compile_seconds == 147.0  # no call finished: all of them


def test_frames_of_torch_wrappers_are_attributed_to_the_compiled_model():
    frames = [
        FrameMetrics("inner", WRAPPER, 67, 1.0),
        FrameMetrics("inner", WRAPPER, 67, 1.0, "0/0: tensor 'args[0]' size mismatch"),
        FrameMetrics("helper", USER, 40, 1.0, "1/0: L['n'] == 3"),
    ]
    stats = compile_stats(frames, compiled_as="Stack.forward (/work/proj/models.py:5)")
    assert [r.function for r in stats.recompiles] == [
        "Stack.forward (/work/proj/models.py:5)",
        f"helper ({USER}:40)",
    ]
    assert compile_stats(frames).recompiles[0].function == f"inner ({WRAPPER}:67)"


def test_metrics_entries_are_read_by_kind():
    forward = types.SimpleNamespace(
        co_name="forward",
        co_filename=USER,
        co_firstlineno=11,
        is_forward=True,
        entire_frame_compile_time_s=1.5,
        recompile_reason="",
        graph_op_count=3,
    )
    assert compat.frame_metrics(forward) == FrameMetrics(
        "forward", USER, 11, 1.5, None, graph_ops=3
    )
    backward = types.SimpleNamespace(is_forward=False, backward_cumulative_compile_time_us=2500)
    assert compat.frame_metrics(backward) == FrameMetrics(seconds=0.0025, backward=True)
    assert compat.frame_metrics(types.SimpleNamespace(is_runtime=True)) is None
    renamed = types.SimpleNamespace(co_name="f", co_filename=USER, co_firstlineno=1)
    with pytest.raises(TorchFeatureMissing, match="entire_frame_compile_time_s, cache_size"):
        compat.frame_metrics(renamed)


def test_torch_2_6_metrics_take_the_recompile_reasons_dynamo_was_asked_for():
    """torch 2.6 records no recompile reason: a frame compiled again (cache_size > 0) takes
    the next reason captured from Dynamo's own guard-failure lookup."""
    first = dict(co_name="forward", co_filename=USER, co_firstlineno=11)
    entries = [
        types.SimpleNamespace(**first, entire_frame_compile_time_s=1.0, cache_size=0),
        types.SimpleNamespace(**first, entire_frame_compile_time_s=0.5, cache_size=1),
        types.SimpleNamespace(**first, entire_frame_compile_time_s=0.5, cache_size=2),
    ]
    logged = iter(["0/0: tensor 'x' size mismatch at index 0. expected 2, actual 3"])
    reasons = [compat.frame_metrics(e, logged).recompile_reason for e in entries]
    assert reasons == [
        None,
        "0/0: tensor 'x' size mismatch at index 0. expected 2, actual 3",
        "guard failure not recorded by this torch",
    ]


def test_a_counter_that_never_moves_is_a_missing_feature_not_a_missing_graph():
    compat.check_graph_counter(0, [FrameMetrics("f", USER, 1, graph_ops=0)])  # truly no graph
    compat.check_graph_counter(2, [FrameMetrics("f", USER, 1, graph_ops=5)])
    with pytest.raises(TorchFeatureMissing, match=r'unique_graphs"\] stayed 0 .* 5 operations'):
        compat.check_graph_counter(0, [FrameMetrics("f", USER, 1, graph_ops=5)])


def test_missing_features_are_named_with_every_name_tried():
    with pytest.raises(
        TorchFeatureMissing, match=r"lacks the thing \(torch\.nope or torch\.nada\)"
    ):
        compat._first("the thing", "torch:nope", "torch:nada")
    with pytest.raises(TorchFeatureMissing, match=r"torch\._dynamo\.config\.no_such_key"):
        compat._config_key("a key", "torch._dynamo.config", "no_such_key")


def test_current_torch_has_every_feature():
    assert "default" in compat.inductor_modes() and "eager" in compat.backend_names()
    assert compat.recompile_limit() >= 1
    assert issubclass(compat.recompile_limit_error(), BaseException)
    assert compat.graph_break_loggers()
    with compat.fail_on_recompile_limit(), compat.inductor_fallback_random():
        pass


# -- what a session reads (compiles: the eager backend, as these test plugin logic) ----------

BREAKS = 65  # more frames than the 64 metrics entries Dynamo keeps


def many_frames_model(tmp_path: Path) -> torch.nn.Module:
    """A forward with ``BREAKS`` graph breaks in straight-line code: one frame per segment."""
    body = "\n".join("        x = x + 1\n        s = s + x.sum().item()" for _ in range(BREAKS))
    source = (
        "import torch\n\n\nclass ManyFrames(torch.nn.Module):\n"
        f"    def forward(self, x):\n        s = 0.0\n{body}\n        return x * s\n"
    )
    path = tmp_path / "many_frames.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("many_frames", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ManyFrames()


def test_no_entry_is_lost_on_a_model_with_many_frames(tmp_path):
    """Plugin logic (reading every metrics entry), so the eager backend."""
    model = many_frames_model(tmp_path)
    settings = CompileSettings(backend="eager", dynamic=None)
    with CompileSession(settings) as session:
        compiled = session.compile(model)
        session.call(lambda: compiled(torch.randn(2, 3)))
        first = session.stats()
        session.call(lambda: compiled(torch.randn(4, 3)))  # every frame recompiles once
        stats = session.stats()
    assert first.frames == BREAKS + 1 > 64
    assert len(first.graph_breaks) == BREAKS and first.graphs == BREAKS + 1
    assert stats.frames == 2 * first.frames
    assert len(stats.recompiles) == first.frames
    assert all("many_frames.py" in r.function for r in stats.recompiles)
    assert stats.compile_seconds == first.compile_seconds < stats.compile_seconds_total
    assert first.compile_seconds == pytest.approx(first.compile_seconds_total)
    # torch's own bound is back once the session is over
    utils = importlib.import_module("torch._dynamo.utils")
    assert utils._compilation_metrics.maxlen == utils.DEFAULT_COMPILATION_METRICS_LIMIT


class Stack(torch.nn.Sequential):
    """A user model whose forward torch defines: Dynamo compiles torch's wrapper frame."""


def test_a_recompile_names_the_users_model_not_a_torch_wrapper():
    """Plugin logic (attribution), so the eager backend."""
    model = Stack(torch.nn.Linear(8, 8))
    assert str(callable_label(model)).startswith(f"Stack.forward ({__file__}:")
    with CompileSession(CompileSettings(backend="eager", dynamic=False)) as session:
        compiled = session.compile(model)
        for batch in (1, 3):
            session.call(lambda batch=batch: compiled(torch.randn(batch, 8)))
        (recompile,) = session.stats().recompiles
    assert recompile.function.startswith(f"Stack.forward ({__file__}:")
    assert "external_utils" not in recompile.describe()
    assert "expected 1, actual 3" in recompile.reason and recompile.hint == SIZE_SPECIALISATION_HINT
