"""Leaf-by-leaf comparison: walking any output (caches, objects, cycles), exact leaves, NaN,
same()'s fp64 judgement rule by rule, tolerances scaled to each leaf, and vacuous leaves."""

import copy
import dataclasses
import enum
import re
import sys
import types
from collections import namedtuple

import pytest
import torch
import torch.utils._pytree as pytree

from pytest_torchcompile.compare import compare, flatten, harness_tolerance, judge_fp64
from pytest_torchcompile.walk import MAX_DEPTH


@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    extra: dict


def test_paths_name_the_failing_leaf():
    eager = Out(torch.zeros(3), {"ids": torch.tensor([1, 2]), "n": 3})
    compiled = Out(torch.tensor([0.0, 0.5, 0.0]), {"ids": torch.tensor([1, 3]), "n": 3})
    result = compare(eager, compiled)
    assert [leaf.path for leaf in result.failures] == ['out.extra["ids"]', "out.logits"]
    text = result.describe()
    assert "out.logits: 1 of 3 elements differ" in text
    assert "greatest absolute difference 0.5 at index (1,)" in text
    assert 'out.extra["ids"]: 1 of 2 elements differ' in text and "(exact compare)" in text


def test_structure_type_and_shape_mismatches():
    Pair = namedtuple("Pair", "a b")
    assert "missing from the compiled output" in compare({"a": 1, "b": 2}, {"a": 1}).describe()
    assert (
        "eager gives list of 2, compiled gives list of 3" in compare([1, 2], [1, 2, 3]).describe()
    )
    assert "shape [2] != eager's [3]" in compare(torch.zeros(3), torch.zeros(2)).describe()
    assert "dtype torch.float64" in compare(torch.zeros(2), torch.zeros(2).double()).describe()
    assert compare(Pair(torch.ones(1), None), Pair(torch.ones(1), None)).passed


def test_nan_equals_nan_only_where_eager_has_nan():
    eager = torch.tensor([float("nan"), 1.0])
    assert compare(eager, eager.clone()).passed
    assert not compare(torch.tensor([0.0, 1.0]), eager).passed


def test_default_tolerance_is_per_dtype():
    a = torch.ones(4, dtype=torch.bfloat16)
    assert compare(a, a + 0.0078).passed  # within bf16's rtol 1.6e-2
    assert not compare(a.float(), a.float() + 0.0078).passed  # not fp32's


def test_fp64_judgement_accepts_drift_no_worse_than_eager():
    ref = torch.linspace(0, 1, 1000, dtype=torch.float64)
    eager = (ref + 1e-4).float()
    compiled = (ref - 1.5e-4).float()  # fails allclose, but only 1.5x eager's own error
    result = compare(eager, compiled, reference=lambda: ref)
    assert result.passed
    assert compare(eager, compiled).failures  # without a reference it fails


def test_fp64_judgement_rejects_much_worse_drift():
    ref = torch.linspace(0, 1, 1000, dtype=torch.float64)
    judgement = judge_fp64(ref.float(), (ref + 1e-3).float(), ref, harness_tolerance(torch.float32))
    assert not judgement.passed
    assert "exceeds 2 x RMSE(eager, fp64)" in judgement.describe()


def test_fp64_multiplier_is_three_in_half_precision():
    ref = torch.zeros(10, dtype=torch.float64)
    assert judge_fp64(ref.half(), ref.half(), ref, 1e-3).multiplier == 3.0


def test_worst_reports_the_greatest_error_even_when_passing():
    result = compare({"x": torch.zeros(3)}, {"x": torch.tensor([0.0, 1e-6, 0.0])})
    assert result.passed and result.worst.max_abs > 0 and result.worst.path == 'out["x"]'


# -- walking any output ------------------------------------------------------------------------


def _transformers():
    """transformers, importable with the CPU torch here (see test_zoo's CONFTEST: the
    index's torchvision is a CUDA build whose op registrations fail to load; its
    pure-Python parts, which transformers imports, work without them)."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        for name in [n for n in sys.modules if n.startswith("torchvision")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("stub")
    return pytest.importorskip("transformers")


def _cache_key(out):
    return "cache" if "cache" in out else "past_key_values"  # transformers 5.x renamed it


def test_dynamic_cache_from_a_tiny_gpt2_compares_tensor_by_tensor():
    tf = _transformers()
    cfg = tf.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64)
    cfg.bos_token_id = cfg.eos_token_id = 0
    torch.manual_seed(0)
    with torch.no_grad():
        out = tf.GPT2LMHeadModel(cfg).eval()(torch.randint(0, 100, (2, 5)), use_cache=True)
    key = _cache_key(out)
    assert isinstance(out[key], tf.DynamicCache)
    twin = copy.deepcopy(out)
    assert compare(out, twin).passed
    twin[key].layers[1].keys[0, 0, 0, 0] += 0.5
    result = compare(out, twin)
    assert [leaf.path for leaf in result.failures] == [f'out["{key}"].layers[1].keys']
    assert "1 of 320 elements differ" in result.describe()


def test_encoder_decoder_cache_from_a_tiny_bart_compares_tensor_by_tensor():
    tf = _transformers()
    cfg = tf.BartConfig(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, vocab_size=100, bos_token_id=0, eos_token_id=1,
        pad_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    ids = torch.randint(2, 100, (2, 5))
    with torch.no_grad():
        out = tf.BartModel(cfg).eval()(input_ids=ids, decoder_input_ids=ids, use_cache=True)
    key = _cache_key(out)
    assert isinstance(out[key], tf.EncoderDecoderCache)
    twin = copy.deepcopy(out)
    assert compare(out, twin).passed
    twin[key].cross_attention_cache.layers[0].values.mul_(1.5)
    failures = compare(out, twin).failures
    assert [leaf.path for leaf in failures] == [
        f'out["{key}"].cross_attention_cache.layers[0].values'
    ]


def test_caches_built_by_hand_compare_by_path():
    tf = _transformers()
    cache = tf.DynamicCache()
    for layer in range(2):
        cache.update(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), layer)
    both = tf.EncoderDecoderCache(cache, copy.deepcopy(cache))
    twin = copy.deepcopy(both)
    assert compare({"cache": both}, {"cache": twin}).passed
    twin.self_attention_cache.layers[1].keys[0, 1, 2, 3] = 9.0
    result = compare({"cache": both}, {"cache": twin})
    assert [f.path for f in result.failures] == ['out["cache"].self_attention_cache.layers[1].keys']
    # a different class, or one layer more, is reported once, at the container
    problems = compare(cache, both).failures
    assert [f.describe() for f in problems] == [
        "out: eager gives DynamicCache, compiled gives EncoderDecoderCache"
    ]
    longer = copy.deepcopy(cache)
    longer.update(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), 2)
    text = compare(cache, longer).describe()
    assert "out.layers: eager gives list of 2, compiled gives list of 3" in text
    assert "missing" not in text


class Holder:
    def __init__(self, value, inner=None, tag="x"):
        self.value = value
        self.inner = inner
        self.tag = tag


class Slotted:
    __slots__ = ("__private", "public", "unset")

    def __init__(self, public, private):
        self.public = public
        self.__private = private


def test_tensors_inside_any_object_are_compared_by_attribute_path():
    eager = Holder(torch.ones(3), Slotted(torch.zeros(2), torch.arange(3.0)))
    twin = copy.deepcopy(eager)
    assert compare(eager, twin).passed
    twin.inner._Slotted__private[2] = 7.0
    twin.tag = "y"
    assert [f.path for f in compare(eager, twin).failures] == ["out.inner.__private", "out.tag"]
    assert "eager gives 'x', compiled gives 'y'" in compare(eager, twin).describe()
    assert (
        "eager gives Tensor, compiled gives Holder"
        in compare(Holder(torch.ones(1)), Holder(Holder(torch.ones(1)))).describe()
    )


def test_cycles_are_walked_once():
    eager = Holder(torch.ones(2))
    eager.inner = eager  # a cycle
    loop = [torch.zeros(1)]
    loop.append(loop)
    eager.tag = loop
    twin = copy.deepcopy(eager)
    leaves, _ = flatten(eager, "out")
    assert sorted(leaves) == ["out.inner", "out.tag[0]", "out.tag[1]", "out.value"]
    assert compare(eager, twin).passed
    twin.tag[0][0] = 1.0
    assert [f.path for f in compare(eager, twin).failures] == ["out.tag[0]"]
    twin.inner = Holder(torch.ones(2))  # no longer a cycle: its own tensors appear
    assert (
        compare(eager, twin)
        .failures[0]
        .describe()
        .startswith("out.inner: eager gives BackRef, compiled gives Holder")
    )


class Plain:  # no tensors, no __eq__: identity would fail every compiled twin
    def __init__(self, n):
        self.n = n


class Valued:
    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, Valued) and self.n == other.n


class Mode(enum.Enum):
    A = 1
    B = 2


def test_objects_without_tensors_compare_by_value_or_type():
    assert compare(Plain(1), Plain(2)).passed  # by type alone
    assert "eager gives Plain, compiled gives Valued" in compare(Plain(1), Valued(1)).describe()
    assert compare(Valued(1), Valued(1)).passed
    failure = compare(Valued(1), Valued(2)).failures[0]
    assert failure.path == "out" and "eager gives <" in failure.problem
    assert compare({"m": Mode.A, "d": torch.float32}, {"m": Mode.A, "d": torch.float32}).passed
    text = compare({"m": Mode.A, "d": torch.float32}, {"m": Mode.B, "d": torch.half}).describe()
    assert "eager gives <Mode.A: 1>, compiled gives <Mode.B: 2>" in text
    assert "eager gives torch.float32, compiled gives torch.float16" in text


def test_modules_and_functions_are_leaves_not_walked():
    eager = Holder(torch.ones(2), torch.nn.Linear(2, 2), tag=lambda x: x)
    twin = Holder(torch.ones(2), torch.nn.Linear(2, 2), tag=lambda x: x + 1)
    leaves, _ = flatten(eager, "out")
    assert sorted(leaves) == ["out.inner", "out.tag", "out.value"]
    assert compare(eager, twin).passed  # other weights, other function: same types


def test_objects_nested_too_deep_fail_only_if_tensors_would_be_lost():
    def chain(leaf, depth):
        node = leaf
        for _ in range(depth):
            node = Holder(node)
        return node

    assert compare(chain(torch.ones(1), MAX_DEPTH), chain(torch.ones(1), MAX_DEPTH)).passed
    deep = compare(chain(torch.ones(1), MAX_DEPTH + 2), chain(torch.ones(1), MAX_DEPTH + 2))
    assert not deep.passed
    assert "holds tensors nested deeper than 8 objects" in deep.describe()
    assert compare(chain(1, MAX_DEPTH + 2), chain(1, MAX_DEPTH + 2)).passed  # nothing lost


class Registered:
    """Keeps its tensors in a list but flattens, for torch's pytree, by name."""

    def __init__(self, a, b):
        self.store = [a, b]


pytree.register_pytree_node(
    Registered,
    lambda r: (r.store, None),
    lambda children, _: Registered(*children),
    flatten_with_keys_fn=lambda r: (
        [(pytree.GetAttrKey("a"), r.store[0]), (pytree.GetAttrKey("b"), r.store[1])],
        None,
    ),
)


def test_pytree_registered_types_open_as_registered():
    eager = Registered(torch.zeros(2), torch.ones(2))
    twin = Registered(torch.zeros(2), torch.full((2,), 2.0))
    assert [f.path for f in compare(eager, twin).failures] == ["out.b"]


# -- same()'s judgement, all of it -------------------------------------------------------------


@pytest.mark.parametrize(
    ("eager", "tol", "multiplier", "rule"),
    [
        (torch.zeros(2000, dtype=torch.float16), 1e-3, 3.0, "float16 result"),
        (torch.zeros(2000, dtype=torch.bfloat16), 1e-3, 3.0, "bfloat16 result"),
        (torch.zeros(999), 1e-4, 3.0, "fewer than 1000 elements"),
        (torch.zeros(4, 256, 1, 1), 1e-4, 3.0, "4-D with a 1x1 spatial shape"),
        (torch.zeros(4, 256, 1, 2), 1e-4, 2.0, ""),
        (torch.zeros(2000), 2e-2, 3.0, "tol 0.02 >= 2e-2"),
        (torch.zeros(2000), 1e-2, 2.0, ""),
        (torch.zeros(1000), 1e-4, 2.0, ""),
    ],
)
def test_fp64_multiplier_follows_same(eager, tol, multiplier, rule):
    judgement = judge_fp64(eager, eager, eager.double(), tol)
    assert (judgement.multiplier, judgement.rule) == (multiplier, rule)
    assert f"{multiplier:g} x RMSE(eager, fp64)=0{f' ({rule})' if rule else ''} +" in (
        judgement.describe()
    )


def test_compiled_without_eagers_nan_passes_when_it_agrees_with_fp64():
    ref = torch.linspace(1, 2, 10, dtype=torch.float64)
    eager = ref.float()
    eager[3] = float("nan")
    compiled = (ref * 1.01).float()  # within same()'s loose 4e-2 of fp64
    result = compare(eager, compiled, reference=lambda: ref)
    assert result.passed and result.leaves[0].fp64.better_than_eager
    assert "compiled is better than eager" in result.leaves[0].fp64.describe()
    assert not compare(eager, (ref * 1.1).float(), reference=lambda: ref).passed
    with_nan = (ref * 1.01).float()
    with_nan[0] = float("nan")
    assert not compare(eager, with_nan, reference=lambda: ref).passed


# -- each leaf judged against its own scale ----------------------------------------------------

SCALES = [1e-10, 1e-4, 1.0, 1e3]


def _reference(scale, n=4096):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, dtype=torch.float64, generator=generator) * scale


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("factor", [1.5, 1.01])
def test_a_wrong_backend_is_caught_at_any_scale(scale, factor):
    ref = _reference(scale)
    eager, compiled = ref.float(), (ref * factor).float()
    assert not compare(eager, compiled).passed
    judged = compare(eager, compiled, reference=lambda: ref)
    assert not judged.passed and "exceeds" in judged.describe()
    value = float(ref[0])
    assert not compare(value, value * factor).passed
    assert not compare(value, value * factor, reference=lambda: value).passed


@pytest.mark.parametrize("scale", SCALES)
def test_float32_rounding_noise_passes_at_any_scale(scale):
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(64, 256, generator=generator)
    b = (torch.randn(256, 64, dtype=torch.float64, generator=generator) * scale / 16).float()
    ref = a.double() @ b.double()
    eager = a @ b
    reordered = a[:, :128] @ b[:128] + a[:, 128:] @ b[128:]  # other summation orders
    elementwise = (a[:, :, None] * b[None]).sum(1)
    for compiled in (reordered, elementwise):
        assert compare(eager, compiled, reference=lambda: ref).passed
        # above 1 atol is not scaled, and (as in same()) only the fp64 judgement passes it
        assert compare(eager, compiled).passed == (scale <= 1)
    value = float(ref[0, 0])
    assert compare(value, value * (1 + 1e-6)).passed


@pytest.mark.parametrize("scale", SCALES)
def test_a_relative_perturbation_keeps_its_scale_one_verdict_below_one(scale):
    """fp64 rounded to float32, then perturbed by ~1e-6: ten times eager's own error, so
    only the slack tol/10 lets it pass. Below 1 the slack shrinks with the leaf and the
    verdict stays that of scale 1; above 1 it stays same()'s, which rejects it."""
    ref = _reference(scale)
    generator = torch.Generator().manual_seed(2)
    noise = 1 + 1e-6 * torch.randn(ref.shape, dtype=torch.float64, generator=generator)
    eager, compiled = ref.float(), (ref * noise).float()
    assert compare(eager, compiled, reference=lambda: ref).passed == (scale <= 1)


def test_the_message_shows_the_scaled_tolerance_and_why():
    ref = _reference(1e-10)
    result = compare(ref.float(), (ref * 1.5).float(), reference=lambda: ref)
    leaf = result.leaves[0]
    assert leaf.scale == pytest.approx(1e-10, rel=0.05)
    assert leaf.effective_atol == pytest.approx(1e-5 * leaf.scale)
    text = result.describe()
    assert re.search(r"\(atol 1e-05, scaled to 1e-15 by the leaf's RMS 1e-10\)", text), text
    assert "+ tol/10 (1e-05, scaled to 1e-13 by the leaf's RMS)" in text  # 100x headroom
    unscaled = compare(torch.ones(3) * 2, torch.ones(3) * 3).describe()
    assert "(atol 1e-05)" in unscaled


def test_float16_tolerance_stops_at_its_subnormal_spacing():
    tiny = torch.full((8,), 1e-6, dtype=torch.float16)
    tiny[0] = 2e-6
    one_ulp = tiny + torch.finfo(torch.float16).tiny * torch.finfo(torch.float16).eps
    assert compare(tiny, one_ulp).passed
    assert not compare(tiny, tiny * 1.5).passed


# -- vacuous leaves ----------------------------------------------------------------------------


def test_leaves_that_cannot_show_an_error_are_marked_vacuous():
    eager = {
        "zeros": torch.zeros(2, 10),
        "loss": torch.tensor(0.0),
        "uniform": torch.full((4,), 0.5),
        "one": torch.tensor([0.5]),
        "real": torch.tensor([0.5, 0.25]),
        "ids": torch.zeros(3, dtype=torch.long),
        "mask": torch.zeros(3, dtype=torch.bool),
        "value": 0.0,
        "count": 0,
    }
    compiled = {k: v * 1.5 if k not in ("ids", "mask", "count") else v for k, v in eager.items()}
    result = compare(eager, compiled)
    assert not result.passed  # the wrong backend shows only where eager is not degenerate
    assert {leaf.path: leaf.vacuous for leaf in result.vacuous} == {
        'out["zeros"]': "all zeros in eager",
        'out["loss"]': "zero in eager",
        'out["uniform"]': "constant (every element 0.5) in eager",
        'out["value"]': "zero in eager",
    }
    assert {leaf.path for leaf in result.failures} == {
        'out["uniform"]',
        'out["one"]',
        'out["real"]',
    }
    assert "note: this leaf is constant (every element 0.5) in eager" in result.describe()


def test_only_non_constant_tensors_can_show_a_wrong_result():
    """None, ints and flags beside an all-zero output make no check informative, and an
    output with no finite value compares NaN with NaN: nothing."""
    zeros = torch.zeros(4, 3)
    result = compare((zeros, None, 3, True), (zeros * 1.5, None, 3, True))
    assert result.passed and not any(leaf.informative for leaf in result.leaves)
    nan = torch.full((4,), float("nan"))
    (leaf,) = compare(nan, nan.clone()).leaves
    assert leaf.passed and leaf.vacuous == "without a finite value in eager"
    assert not leaf.informative
    (real,) = compare(torch.randn(4), torch.randn(4)).leaves
    assert real.tensor and real.informative
