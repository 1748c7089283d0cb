"""Each setting is declared once; the faces derived from it (validation, marker arguments,
marker docs, option help, ``safe_compile``'s keywords) must agree with the declarations."""

import dataclasses
from typing import Any

import pytest

from pytest_torchcompile import CompileSettings, SettingsError
from pytest_torchcompile.markers import MARKER_ARGS, marker_doc, parse_marker
from pytest_torchcompile.runtime import safe_compile, signature_drift
from pytest_torchcompile.settings import (
    _VALIDATORS,
    MARKERS,
    SAFE_COMPILE_ARGS,
    SETTING_NAMES,
    _flag,
    _setting,
    declarations,
    setting_help,
)

_CHECK = {"inputs", "dims", "modes"}
_COMMON = {
    "backend",
    "dynamic",
    "fullgraph",
    "options",
    "device",
    "seed",
    "grad",
    "max_graph_breaks",
    "max_recompiles",
    "max_compile_time",
    "max_cudagraph_skips",
    "strict",
    "rtol",
    "atol",
}


def test_every_field_is_declared_with_a_validator_and_help():
    declared = declarations()
    assert tuple(declared) == tuple(f.name for f in dataclasses.fields(CompileSettings))
    assert set(_VALIDATORS) == set(SETTING_NAMES) == set(declared)
    for name, d in declared.items():
        assert callable(d.validate), name
        assert d.help and "\n" not in d.help, name
        assert set(d.markers) <= set(MARKERS), name


def test_validators_come_from_the_declarations():
    with pytest.raises(SettingsError, match="strict must be True or False"):
        CompileSettings(strict="yes")
    with pytest.raises(SettingsError, match="threads must be >= 1"):
        CompileSettings(threads=0)


def test_mode_help_names_the_deployment_targets():
    assert "export" in setting_help("mode") and "aoti" in setting_help("mode")
    assert setting_help("strict")


def test_marker_args_are_derived_as_before():
    assert set(MARKER_ARGS["compile_equivalent"]) == _CHECK | _COMMON | {"examples", "diagnose"}
    assert set(MARKER_ARGS["compile_faster"]) == _CHECK | _COMMON | {
        "min_speedup",
        "max_time",
        "max_memory_ratio",
        "threads",
    }
    for args in MARKER_ARGS.values():
        assert len(args) == len(set(args))


@pytest.mark.parametrize("marker", MARKERS)
def test_marker_doc_mentions_every_argument(marker):
    doc = marker_doc(marker)
    assert doc.startswith(f"{marker}(")
    signature = doc.split("): ", 1)[0]
    for arg in MARKER_ARGS[marker]:
        assert f"{arg}=" in signature, arg
    assert "mode=" not in signature.replace("modes=", "")  # not a marker argument


def test_marker_doc_leads_with_what_pytest_markers_shows():
    assert marker_doc("compile_equivalent").startswith(
        "compile_equivalent(inputs=..., dims=..., modes=..., backend="
    )
    faster = marker_doc("compile_faster")
    assert faster.startswith("compile_faster(min_speedup=..., inputs=...")
    assert "max_time=5.0" in faster and "95% confidence interval" in faster


def test_plugin_marker_docs_are_rendered_from_the_declarations():
    from pytest_torchcompile.plugin import MARKER_DOCS

    assert {m: marker_doc(m) for m in MARKERS} == MARKER_DOCS


def test_required_marker_argument_keeps_its_message():
    with pytest.raises(SettingsError, match=r"@compile_faster needs min_speedup=, e\.g\."):
        parse_marker("compile_faster", (), {"inputs": []})


def test_safe_compile_signature_matches_the_declarations():
    assert set(SAFE_COMPILE_ARGS) == {
        "mode",
        "backend",
        "dynamic",
        "fullgraph",
        "options",
        "rtol",
        "atol",
        "fallback",
        "benchmark",
        "min_speedup",
    }
    assert signature_drift(safe_compile) == []


def test_signature_drift_catches_a_planted_field():
    planted = dataclasses.make_dataclass(
        "Planted",
        [("turbo", "bool", _setting(False, _flag, "a new setting", safe_compile=True))],
        bases=(CompileSettings,),
        frozen=True,
    )
    assert signature_drift(safe_compile, planted) == [
        "turbo: declared for safe_compile, not a keyword"
    ]


def test_signature_drift_catches_a_stray_or_mistyped_keyword():
    def stray(
        model: Any,
        example_inputs: Any,
        *,
        settings: Any = None,
        mode: int = 0,
        turbo: bool = False,
    ) -> None: ...

    drift = signature_drift(stray)
    assert "turbo: a keyword, not declared for safe_compile" in drift
    assert "backend: declared for safe_compile, not a keyword" in drift
    assert any(d.startswith("mode: annotated") for d in drift)
    assert any(d.startswith("mode: defaults to 0") for d in drift)
