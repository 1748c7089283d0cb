"""The plugin's command-line options and ini keys, and how start-up turns them into the
run's settings: CLI over ini over defaults, validated before any test runs.

Torch-free: default modes and backend need no torch to check, so ``pytest --help`` and
runs that keep the defaults start fast. ``plugin`` calls these from its hooks.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from .errors import SettingsError
from .records import CheckRecord
from .report import DEFAULT_TOLERANCE, check_tolerance, read_report
from .session import PluginState
from .settings import (
    DEFAULT_BACKEND,
    DEFAULT_MODE,
    DIAGNOSE_LEVELS,
    CompileSettings,
    setting_help,
)

_DEFAULTS = CompileSettings()  # the declared defaults the help and ini text quote


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchcompile", "torch.compile checks (pytest-torchcompile)")
    group.addoption(
        "--compile-modes",
        metavar="MODES",
        help="comma-separated torch.compile modes, or the deployment targets export and aoti, "
        "to check every marked test under, e.g. default,max-autotune,aoti (default: ini "
        "compile_modes, else 'default')",
    )
    group.addoption(
        "--compile-backend",
        metavar="NAME",
        help=f"{setting_help('backend')} (default: ini compile_backend, else 'inductor')",
    )
    group.addoption(
        "--compile-examples",
        type=int,
        metavar="N",
        help=f"{setting_help('examples')}; overrides the markers' examples= (default "
        f"{_DEFAULTS.examples})",
    )
    group.addoption(
        "--compile-report",
        metavar="PATH",
        help="write a JSON report of every compile check and the environment",
    )
    group.addoption(
        "--compile-baseline",
        metavar="PATH",
        help="compare with a saved --compile-report; regressions fail the session",
    )
    group.addoption(
        "--compile-baseline-tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="FRACTION",
        help=f"compile-time growth tolerated against the baseline (default {DEFAULT_TOLERANCE:g})",
    )
    group.addoption(
        "--compile-cache-dir",
        metavar="PATH",
        help="inductor cache directory (default: under .pytest_cache, or "
        "TORCHINDUCTOR_CACHE_DIR if set)",
    )
    group.addoption(
        "--compile-explore",
        action="store_true",
        default=None,
        help=f"{setting_help('explore')} (default: the examples are derived from the test id "
        "and mode, the same every run, so baselines compare like with like; ini compile_explore)",
    )
    group.addoption(
        "--compile-threads",
        type=int,
        metavar="N",
        help=f"{setting_help('threads')}; overrides the markers' threads= (ini compile_threads)",
    )
    group.addoption(
        "--compile-diagnose",
        choices=DIAGNOSE_LEVELS,
        help=f"{setting_help('diagnose')}. 'auto' checks eager against itself, climbs the "
        "stage ladder (eager, aot_eager, aot_eager_decomp_partition, the backend) and "
        "searches for the first diverging submodule; 'deep' adds the bisector (tens of "
        "compiles: minutes) (ini compile_diagnose; overrides the markers' diagnose=)",
    )
    group.addoption(
        "--compile-diagnose-time",
        type=float,
        metavar="SECONDS",
        help=setting_help("diagnose_time"),
    )
    group.addoption(
        "--compile-repro-dir",
        metavar="PATH",
        help="where failed checks write their repro folders (default: under .pytest_cache)",
    )
    group.addoption(
        "--compile-cold",
        action="store_true",
        help="compile every check in a fresh, empty cache: honest cold compile times",
    )
    group.addoption(
        "--compile-cache-artifacts",
        metavar="PATH",
        help="load torch's portable compile-cache artifacts from PATH at the start (if it "
        "exists) and save this run's, merged with them, at the end: a fresh CI runner with "
        "an empty cache starts warm (ini compile_cache_artifacts)",
    )
    group.addoption(
        "--compile-devices",
        metavar="auto|cuda:0,cuda:1",
        help="with xdist (-n N), give each worker its own CUDA device; device='cuda' in a "
        "marker means that worker's, and speed checks run when every worker owns one "
        "(auto: every CUDA device here; -n auto then starts one worker per device; "
        "ini compile_devices)",
    )
    parser.addini(
        "compile_modes",
        "default torch.compile modes and deployment targets (comma-separated)",
        default=DEFAULT_MODE,
    )
    parser.addini("compile_backend", setting_help("backend"), default=DEFAULT_BACKEND)
    parser.addini("compile_explore", setting_help("explore"), type="bool", default=False)
    parser.addini("compile_threads", setting_help("threads"), default="")
    parser.addini("compile_cache_artifacts", "file of portable compile-cache artifacts", default="")
    parser.addini("compile_devices", "CUDA devices for xdist workers: auto or a list", default="")
    parser.addini("compile_diagnose", setting_help("diagnose"), default=_DEFAULTS.diagnose)


def read_state(config: pytest.Config) -> PluginState:
    """The run's modes and settings from the CLI and ini; raises ``SettingsError`` for a
    value no check could run with. Torch loads only to validate a non-default mode or
    backend."""
    modes_text = config.getoption("compile_modes") or config.getini("compile_modes")
    backend = config.getoption("compile_backend") or config.getini("compile_backend")
    examples = config.getoption("compile_examples")
    explore = config.getoption("compile_explore")
    if explore is None:
        explore = config.getini("compile_explore")
    threads = config.getoption("compile_threads")
    if threads is None and str(config.getini("compile_threads")).strip():
        threads = _int_ini("compile_threads", config.getini("compile_threads"))
    if modes_text.strip() == DEFAULT_MODE and backend == DEFAULT_BACKEND:
        modes: tuple[str, ...] = (DEFAULT_MODE,)  # nothing to validate: no torch yet
        settings = CompileSettings()
    else:
        from .settings import check_backend, parse_modes

        modes = parse_modes(modes_text)
        settings = CompileSettings(backend=check_backend(backend))
        for mode in modes:
            settings.replace(mode=mode).validate_names()
    if examples is not None:
        settings = settings.replace(examples=examples)
    settings = settings.replace(explore=bool(explore), threads=threads)
    diagnose = config.getoption("compile_diagnose")
    settings = settings.replace(diagnose=diagnose or config.getini("compile_diagnose"))
    diagnose_time = config.getoption("compile_diagnose_time")
    if diagnose_time is not None:
        settings = settings.replace(diagnose_time=diagnose_time)
    cold_root = (
        tempfile.mkdtemp(prefix="torchcompile-cold-") if config.getoption("compile_cold") else None
    )
    state = PluginState(modes, settings, examples, cold_root, threads)
    state.diagnose_override = diagnose is not None
    return state


def read_baseline(config: pytest.Config) -> list[CheckRecord] | None:
    """Read and validate the baseline before any test runs, so a bad path or file costs
    seconds, not a whole suite."""
    tolerance = config.getoption("compile_baseline_tolerance")
    check_tolerance(tolerance, "--compile-baseline-tolerance")
    path = config.getoption("compile_baseline")
    return read_report(path) if path else None


def _int_ini(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"ini {name} must be a whole number, got {text!r}") from None


def set_cache_dir(config: pytest.Config) -> None:
    """Keep inductor's cache with pytest's, so a second run (and CI's cache) is warm."""
    chosen = config.getoption("compile_cache_dir")
    if chosen:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(chosen)
    elif "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
        if cache is not None:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache.mkdir("torchcompile-inductor"))
