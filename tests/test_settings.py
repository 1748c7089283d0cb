"""Validated settings: every bad value is an error that names the setting."""

import pytest

from pytest_torchcompile import CompileSettings, SettingsError
from pytest_torchcompile.markers import parse_dims, parse_marker
from pytest_torchcompile.settings import parse_modes


def test_defaults_are_inductor_default_mode():
    s = CompileSettings()
    assert (s.mode, s.backend, s.examples, s.grad, s.fallback) == (
        "default",
        "inductor",
        20,
        False,
        True,
    )


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"rtol": -1.0, "atol": 1e-5}, "rtol must be >= 0"),
        ({"examples": 0}, "examples must be >= 1"),
        ({"min_speedup": 0}, "min_speedup must be > 0"),
        ({"max_graph_breaks": -1}, "max_graph_breaks must be >= 0"),
        ({"fullgraph": "yes"}, "fullgraph must be True or False"),
        ({"rtol": 1e-3}, "rtol and atol go together"),
        ({"rtol": 0, "atol": 0}, "bit-identical"),
        ({"options": ["x"]}, "options must be a dict"),
        ({"max_time": float("nan")}, "max_time must be finite"),
    ],
)
def test_bad_values_name_the_setting(changes, named):
    with pytest.raises(SettingsError, match=named):
        CompileSettings(**changes)


def test_from_dict_rejects_unknown_keys_and_lists_allowed():
    with pytest.raises(SettingsError, match=r"unknown settings key 'modee'.*allowed: .*mode"):
        CompileSettings.from_dict({"modee": "default"})


def test_from_dict_fills_defaults_and_checks_names():
    s = CompileSettings.from_dict({"mode": "max-autotune", "atol": 1e-4, "rtol": 1e-4})
    assert s.mode == "max-autotune" and s.backend == "inductor" and s.examples == 20
    with pytest.raises(SettingsError, match="unknown compile mode 'fastest'; valid modes: default"):
        CompileSettings.from_dict({"mode": "fastest"})
    with pytest.raises(SettingsError, match="unknown compile backend 'tensorrt_nope'"):
        CompileSettings.from_dict({"backend": "tensorrt_nope"})


def test_mode_needs_inductor():
    with pytest.raises(SettingsError, match="configures inductor"):
        CompileSettings(mode="max-autotune", backend="eager").validate_names()


def test_parse_modes_dedupes_and_validates():
    assert parse_modes(" default, max-autotune ,default") == ("default", "max-autotune")
    with pytest.raises(SettingsError, match="unknown compile mode 'turbo'"):
        parse_modes("default,turbo")


def test_parse_marker_names_unknown_argument():
    with pytest.raises(SettingsError, match=r"unknown @compile_equivalent argument 'exmaples'"):
        parse_marker("compile_equivalent", (), {"exmaples": 3})
    with pytest.raises(SettingsError, match="keyword arguments only"):
        parse_marker("compile_equivalent", (1,), {})
    with pytest.raises(SettingsError, match="needs min_speedup"):
        parse_marker("compile_faster", (), {"inputs": []})
    with pytest.raises(SettingsError, match="min_speedup"):  # not a faster argument elsewhere
        parse_marker("compile_equivalent", (), {"min_speedup": 2})


def test_parse_dims():
    assert parse_dims({"batch": (1, 4), "seq": 8}) == {"batch": (1, 4), "seq": (8, 8)}
    with pytest.raises(SettingsError, match=r"dims\['batch'\] must be an inclusive range"):
        parse_dims({"batch": (5, 1)})
