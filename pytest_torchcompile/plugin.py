"""pytest hooks, options, markers and fixtures. Thin: the engine lives in the core modules.

No torch at import time: ``pytest --help`` and suites without compile checks stay fast.
Torch loads when a mode or backend must be validated or a check runs.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from typing import Any

import pytest

from .benchmark import benchmark_session, record_entries, speed_skip_reason
from .errors import (
    CompileCheckError,
    CompileFailedError,
    ModelError,
    SettingsError,
)
from .records import PROPERTY_NAME, CheckRecord
from .report import DEFAULT_TOLERANCE, check_tolerance, read_report
from .session import Controller, PluginState, Worker, setup_run, xdist_timing_skip
from .settings import (
    DEFAULT_BACKEND,
    DEFAULT_MODE,
    DIAGNOSE_LEVELS,
    CompileSettings,
    check_options,
    parse_marker,
)

MARKERS = ("compile_equivalent", "compile_faster")
MARKER_DOCS = {
    "compile_equivalent": (
        "compile_equivalent(inputs=..., dims=..., modes=..., backend=..., dynamic=..., "
        "fullgraph=..., options=..., rtol=..., atol=..., examples=20, grad=False, seed=..., "
        "device='cpu', max_graph_breaks=..., max_recompiles=..., max_compile_time=..., "
        "max_cudagraph_skips=...): the "
        "test returns a model (or (model, inputs)); it is compiled under every "
        "--compile-modes mode and checked against eager on Hypothesis-drawn shapes; a "
        "failure is diagnosed (diagnose='auto', 'deep' or 'off')."
    ),
    "compile_faster": (
        "compile_faster(min_speedup=..., inputs=..., dims=..., max_time=5.0, "
        "max_memory_ratio=..., grad=False, ...): the test returns a model; compiled must be "
        "at least min_speedup times faster than eager, by paired interleaved timing with a "
        "95% confidence interval."
    ),
}
STATE = pytest.StashKey["PluginState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchcompile", "torch.compile checks (pytest-torchcompile)")
    group.addoption(
        "--compile-modes",
        metavar="MODES",
        help="comma-separated torch.compile modes to check every marked test under, "
        "e.g. default,max-autotune (default: ini compile_modes, else 'default')",
    )
    group.addoption(
        "--compile-backend",
        metavar="NAME",
        help="torch.compile backend (default: ini compile_backend, else 'inductor')",
    )
    group.addoption(
        "--compile-examples",
        type=int,
        metavar="N",
        help="Hypothesis examples per equivalence check; overrides the markers' "
        "examples= (default 20)",
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
        help="draw fresh Hypothesis examples every run and replay saved failures (default: "
        "the examples are derived from the test id and mode, the same every run, so "
        "baselines compare like with like; ini compile_explore)",
    )
    group.addoption(
        "--compile-threads",
        type=int,
        metavar="N",
        help="torch threads for both sides while speed checks time them (the user's setting "
        "is restored after); overrides the markers' threads= (ini compile_threads)",
    )
    group.addoption(
        "--compile-diagnose",
        choices=DIAGNOSE_LEVELS,
        help="on a failed equivalence check, find where it goes wrong: 'auto' (default) "
        "checks eager against itself, climbs the stage ladder (eager, aot_eager, "
        "aot_eager_decomp_partition, the backend) and searches for the first diverging "
        "submodule; 'deep' adds inductor's compiler bisector (tens of compiles: minutes); "
        "'off' skips it (ini compile_diagnose; overrides the markers' diagnose=)",
    )
    group.addoption(
        "--compile-diagnose-time",
        type=float,
        metavar="SECONDS",
        help="time one failed check's diagnosis may take (default 120); what does not "
        "finish is reported as not reached",
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
        "compile_modes", "default torch.compile modes (comma-separated)", default=DEFAULT_MODE
    )
    parser.addini("compile_backend", "default torch.compile backend", default=DEFAULT_BACKEND)
    parser.addini(
        "compile_explore", "fresh Hypothesis examples every run (bool)", type="bool", default=False
    )
    parser.addini("compile_threads", "torch threads while timing speed checks", default="")
    parser.addini("compile_cache_artifacts", "file of portable compile-cache artifacts", default="")
    parser.addini("compile_devices", "CUDA devices for xdist workers: auto or a list", default="")
    parser.addini(
        "compile_diagnose", "diagnosis of failed checks: off, auto or deep", default="auto"
    )


def pytest_configure(config: pytest.Config) -> None:
    for doc in MARKER_DOCS.values():
        config.addinivalue_line("markers", doc)
    modes_text = config.getoption("compile_modes") or config.getini("compile_modes")
    backend = config.getoption("compile_backend") or config.getini("compile_backend")
    examples = config.getoption("compile_examples")
    explore = config.getoption("compile_explore")
    if explore is None:
        explore = config.getini("compile_explore")
    threads = config.getoption("compile_threads")
    try:
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
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    cold_root = (
        tempfile.mkdtemp(prefix="torchcompile-cold-") if config.getoption("compile_cold") else None
    )
    state = PluginState(modes, settings, examples, cold_root, threads)
    state.diagnose_override = diagnose is not None
    config.stash[STATE] = state
    _set_cache_dir(config)
    try:
        setup_run(config, state)  # this process's device, before anything touches CUDA
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    if hasattr(config, "workerinput"):
        config.pluginmanager.register(Worker(config, state), "torchcompile-worker")
    else:
        try:
            state.baseline = _read_baseline(config)
        except SettingsError as error:
            raise pytest.UsageError(str(error)) from None
        config.pluginmanager.register(Controller(config, state), "torchcompile-controller")


def _read_baseline(config: pytest.Config) -> list[CheckRecord] | None:
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


def _set_cache_dir(config: pytest.Config) -> None:
    """Keep inductor's cache with pytest's, so a second run (and CI's cache) is warm."""
    chosen = config.getoption("compile_cache_dir")
    if chosen:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(chosen)
    elif "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
        if cache is not None:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache.mkdir("torchcompile-inductor"))


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.cold_root:
        shutil.rmtree(state.cold_root, ignore_errors=True)


def _marker_args(item: Any) -> list:
    found = []
    for name in MARKERS:
        marker = item.get_closest_marker(name)
        if marker is not None:
            found.append(parse_marker(name, marker.args, marker.kwargs))
    return found


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash[STATE]
    try:
        markers = _marker_args(metafunc.definition)
        for args in markers:
            backend = args.overrides.get("backend", state.settings.backend)
            check_options(backend, args.overrides.get("options"))
        problem = None
    except SettingsError as error:
        markers, problem = [], f"{metafunc.definition.nodeid}: {error}"
    if problem:
        pytest.fail(problem, pytrace=False)
    if not markers and "compile_mode" not in metafunc.fixturenames:
        return
    modes = [m for m in state.modes if all(a.modes is None or m in a.modes for a in markers)]
    if "compile_mode" not in metafunc.fixturenames:
        metafunc.fixturenames.append("compile_mode")
    if modes:
        params = [_mode_param(mode, markers, state.settings.backend) for mode in modes]
        metafunc.parametrize("compile_mode", params, ids=modes)
        return
    wanted = sorted({m for a in markers for m in (a.modes or ())})
    reason = (
        f"marker modes {wanted} do not intersect --compile-modes "
        f"{list(state.modes)}: nothing to run"
    )
    metafunc.parametrize(
        "compile_mode",
        [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
        ids=["no-mode"],
    )


def _mode_param(mode: str, markers: list, default_backend: str) -> Any:
    """A mode, or a skipped item where a marker's backend cannot take this inductor mode."""
    for args in markers:
        backend = args.overrides.get("backend", default_backend)
        if mode != DEFAULT_MODE and backend != DEFAULT_BACKEND:
            reason = (
                f"mode {mode!r} configures inductor and cannot apply to backend {backend!r}; "
                f'add modes=("{DEFAULT_MODE}",) to the marker to run it once'
            )
            return pytest.param(mode, marks=pytest.mark.skip(reason=reason))
    return mode


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Speed tests use pytest-benchmark's fixture, so its --benchmark-only/-skip/-disable and
    xdist handling treat them as the benchmarks they are (before its own hook looks)."""
    if benchmark_session(config) is None:
        return
    for item in items:
        names = getattr(item, "fixturenames", None)
        if not isinstance(names, list) or not item.get_closest_marker("compile_faster"):
            continue
        if "benchmark" not in names:
            names.append("benchmark")


@pytest.fixture
def compile_mode(request: pytest.FixtureRequest) -> str:
    """The torch.compile mode this test runs under; parametrizes it over --compile-modes."""
    return getattr(request, "param", request.config.stash[STATE].modes[0])


def _checker(item: Any, mode: str) -> Any:
    from .checker import CompileChecker

    state = item.config.stash[STATE]

    def on_record(record: CheckRecord) -> None:
        item.user_properties.append((PROPERTY_NAME, record.to_json()))

    def on_timing(record: CheckRecord, timing: Any) -> None:
        fixture = item.funcargs.get("benchmark")
        if fixture is not None and benchmark_session(item.config) is not None:
            record_entries(fixture, record, timing)

    return CompileChecker(
        state.settings.replace(mode=mode),
        test_id=item.nodeid,
        cache_dir=state.cache_dir,
        on_record=on_record,
        on_timing=on_timing,
        timing_skip=lambda device: (
            xdist_timing_skip(state, _worker_device(device, state))
            or speed_skip_reason(item.config)
        ),
        skip=_skip_at_test,
        repro=lambda: _repro_target(item),
    )


def _repro_target(item: Any) -> Any:
    """Where this item's repro folder goes, and how a script rebuilds its model: by calling
    the test itself where it takes no arguments (a plain function returning the model)."""
    from .repro import ReproTarget

    chosen = item.config.getoption("compile_repro_dir")
    cache = getattr(item.config, "cache", None)
    if chosen:
        root = os.path.abspath(chosen)
    elif cache is not None:
        root = str(cache.mkdir("torchcompile-repro"))
    else:
        return None
    paths = (str(item.path.parent), str(item.config.rootpath))
    factory = None
    if not item._fixtureinfo.argnames and getattr(item, "cls", None) is None:
        factory = {
            "file": str(item.path),
            "module": item.module.__name__,
            "function": item.obj.__name__,
            "paths": list(paths),
        }
    return ReproTarget(root, item.nodeid, factory, paths)


def _worker_device(device: str, state: PluginState) -> str:
    """``device="cuda"`` means this xdist worker's own GPU, where it owns one."""
    return state.device if device == "cuda" and state.device else device


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """With --compile-devices, ``-n auto`` starts one worker per device (before xdist's
    own answer, the CPU count)."""
    text = config.getoption("compile_devices") or config.getini("compile_devices")
    if not text:
        return None
    from .devices import parse_devices

    try:
        return len(parse_devices(text)) or None
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None


def _skip_at_test(reason: str) -> None:
    """A skip reported at the test's own location, not at the plugin line that raised it."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


@pytest.fixture
def torchcompile(request: pytest.FixtureRequest, compile_mode: str) -> Any:
    """The engine, bound to this test's mode: ``.compile``, ``.assert_equivalent``,
    ``.assert_faster``; every check it runs is recorded like a marker's."""
    return _checker(request.node, compile_mode)


def split_returned(returned: Any) -> tuple[Any, Any]:
    """A marked test returns the model, or (model, inputs)."""
    if isinstance(returned, tuple) and len(returned) == 2 and callable(returned[0]):
        return returned
    if callable(returned) and not isinstance(returned, type):
        return returned, None
    raise CompileCheckError(
        f"a test marked for compile checks must return the model under test (an nn.Module or "
        f"any callable) or (model, inputs); it returned {_short(returned)}"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"a {type(value).__name__}"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    markers = _marker_args(pyfuncitem)
    if not markers:
        return None
    state = pyfuncitem.config.stash[STATE]
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    returned = pyfuncitem.obj(**args)
    if inspect.isawaitable(returned):
        raise CompileCheckError("compile checks need a plain (not async) test function")
    model, returned_inputs = split_returned(returned)
    checker = _checker(pyfuncitem, str(pyfuncitem.callspec.params["compile_mode"]))
    for marker in markers:
        overrides = dict(marker.overrides)
        if overrides.get("device") == "cuda" and state.device is not None:
            overrides["device"] = state.device  # --compile-devices: this worker's own
        if state.examples_override is not None:
            overrides.pop("examples", None)
        if state.threads_override is not None:
            overrides.pop("threads", None)
        if state.diagnose_override:
            overrides.pop("diagnose", None)
        elif "diagnose" not in overrides and pyfuncitem.get_closest_marker("xfail"):
            overrides["diagnose"] = "off"  # an expected failure needs no diagnosis each run
        inputs = returned_inputs if returned_inputs is not None else marker.inputs
        check = (
            checker.assert_equivalent
            if marker.marker == "compile_equivalent"
            else checker.assert_faster
        )
        try:
            check(model, inputs, dims=marker.dims, **overrides)
        except SettingsError as error:
            raise CompileCheckError(f"@{marker.marker}: {error}") from None
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    marked = any(item.get_closest_marker(name) for name in MARKERS)
    if not marked:
        return report
    excinfo = call.excinfo
    ours = excinfo is not None and excinfo.errisinstance(CompileCheckError)
    if ours and excinfo is not None and item.config.getoption("tbstyle", "auto") != "long":
        long_helps = excinfo.errisinstance((CompileFailedError, ModelError))
        hint = "\n(full traceback with --tb=long)" if long_helps else ""
        report.longrepr = str(excinfo.value) + hint
    if report.skipped and not any(n == PROPERTY_NAME for n, _ in report.user_properties):
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("compile_mode") if callspec else None
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        for name in MARKERS:
            if item.get_closest_marker(name):
                record = CheckRecord(
                    item.nodeid,
                    name.removeprefix("compile_"),
                    mode or "-",
                    "",
                    "",
                    "skipped",
                    reason.removeprefix("Skipped: "),
                )
                report.user_properties.append((PROPERTY_NAME, record.to_json()))
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    import torch

    machine_info["torch"] = torch.__version__
    machine_info["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        machine_info["gpus"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
