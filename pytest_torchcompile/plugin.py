"""pytest hooks, markers and fixtures. Thin: options are declared and read in ``options``,
the engine lives in the core modules.

No torch at import time: ``pytest --help`` and suites without compile checks stay fast.
Torch loads when a mode or backend must be validated or a check runs.
"""

from __future__ import annotations

import inspect
import os
import shutil
from typing import Any

import pytest

from .benchmark import benchmark_session, record_entries, speed_skip_reason
from .errors import (
    CompileCheckError,
    CompileFailedError,
    ModelError,
    SettingsError,
)
from .markers import MarkerArgs, marker_doc, parse_marker
from .options import add_options, read_baseline, read_state, set_cache_dir
from .records import PROPERTY_NAME, CheckRecord
from .session import Controller, PluginState, Worker, setup_run, xdist_timing_skip
from .settings import DEFAULT_BACKEND, DEFAULT_MODE, MARKERS, check_options, is_target

MARKER_DOCS = {marker: marker_doc(marker) for marker in MARKERS}
STATE = pytest.StashKey["PluginState"]()
PARSED = pytest.StashKey[dict[int, tuple[Any, MarkerArgs]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for doc in MARKER_DOCS.values():
        config.addinivalue_line("markers", doc)
    try:
        state = read_state(config)
        config.stash[STATE] = state
        set_cache_dir(config)
        setup_run(config, state)  # this process's device, before anything touches CUDA
        if hasattr(config, "workerinput"):
            config.pluginmanager.register(Worker(config, state), "torchcompile-worker")
        else:
            state.baseline = read_baseline(config)
            config.pluginmanager.register(Controller(config, state), "torchcompile-controller")
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.cold_root:
        shutil.rmtree(state.cold_root, ignore_errors=True)


def _marker_args(item: Any) -> list[MarkerArgs]:
    """Each marker parsed once: an item shares its Mark objects with the definition that
    ``pytest_generate_tests`` parsed, so the call reuses that parse."""
    cache = item.config.stash.setdefault(PARSED, {})
    found = []
    for name in MARKERS:
        marker = item.get_closest_marker(name)
        if marker is None:
            continue
        hit = cache.get(id(marker))
        if hit is None or hit[0] is not marker:  # holding the Mark keeps its id from reuse
            hit = cache[id(marker)] = (marker, parse_marker(name, marker.args, marker.kwargs))
        found.append(hit[1])
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
        if mode != DEFAULT_MODE and not is_target(mode) and backend != DEFAULT_BACKEND:
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
        package_dir=lambda: _package_dir(item.config),
    )


def _package_dir(config: pytest.Config) -> str | None:
    """AOTInductor packages are kept with pytest's cache (``--cache-clear`` drops them)."""
    cache = getattr(config, "cache", None)
    return str(cache.mkdir("torchcompile-aoti")) if cache is not None else None


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
        elif (
            marker.marker == "compile_equivalent"
            and "diagnose" not in overrides
            and pyfuncitem.get_closest_marker("xfail")
            and not pyfuncitem.config.getoption("runxfail", False)
        ):
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
