"""A first suite: run with  pytest examples --compile-modes=default,max-autotune"""

import pytest
import torch
from models import MLP, ConvNet, GraphBreaker, PointwiseChain, ShapeBranch, TinyLM, TwoHeads

from pytest_torchcompile import TensorSpec, compile_equivalent, compile_faster


@compile_equivalent(inputs=[TensorSpec("batch", 128)], dims={"batch": (1, 64)})
def test_mlp():
    return MLP().eval()


@compile_equivalent(inputs=[TensorSpec("batch", 3, 16, 16)], dims={"batch": (2, 8)}, grad=True)
def test_convnet_training_step():
    return ConvNet().train()  # BatchNorm running stats are compared too


@pytest.fixture
def vocab_size():
    return 100


@pytest.mark.compile_equivalent(
    inputs={"input_ids": TensorSpec("batch", "seq", dtype=torch.long, high=100)},
    dims={"batch": (1, 4), "seq": (1, 32)},
    examples=10,
    dynamic=True,
)
def test_tiny_transformer(vocab_size):
    return TinyLM(vocab_size).eval()


@compile_equivalent(inputs=[TensorSpec("batch", 24)], dims={"batch": (2, 16)}, max_graph_breaks=0)
def test_dict_outputs():
    return TwoHeads().eval()


@compile_faster(min_speedup=1.3, inputs=[TensorSpec(1 << 18)], max_time=3.0, modes=("default",))
def test_fused_pointwise_is_faster():
    return PointwiseChain()


@pytest.mark.xfail(reason="shows the failure: .item() in forward breaks the graph", strict=True)
@compile_equivalent(inputs=[TensorSpec("batch", 16)], dims={"batch": (2, 8)}, max_graph_breaks=0)
def test_graph_break_is_reported():
    return GraphBreaker().eval()


@pytest.mark.xfail(reason="shows the failure: a branch on a dim recompiles", strict=True)
@compile_equivalent(
    inputs=[TensorSpec("batch", 8)], dims={"batch": (2, 5)}, dynamic=False, max_recompiles=1
)
def test_recompiles_are_reported():
    return ShapeBranch().eval()
