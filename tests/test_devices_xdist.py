"""--compile-devices: one CUDA device per xdist worker, on a CPU machine with a faked
device count (the assignment, the header, the skip reasons, the usage errors). No compile
runs here: every check in these suites skips before compiling."""

from __future__ import annotations

import pytest

from conftest import run
from pytest_torchcompile import devices
from pytest_torchcompile.devices import DevicePlan, parse_devices, worker_index
from pytest_torchcompile.errors import SettingsError
from pytest_torchcompile.session import XDIST_CPU_SKIP, PluginState, xdist_timing_skip
from pytest_torchcompile.settings import CompileSettings


def two() -> int:
    return 2


def test_auto_takes_every_device_and_none_on_a_cpu_machine():
    assert parse_devices("auto", two) == ("cuda:0", "cuda:1")
    assert parse_devices("auto", lambda: 0) == ()


def test_a_list_is_checked_against_the_machine(monkeypatch):
    monkeypatch.setattr(devices, "cuda_device_count", two)
    assert parse_devices(" cuda:1, cuda:0 ") == ("cuda:1", "cuda:0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cuda:2", "cuda:2 does not exist: this machine has 2 CUDA device(s) (cuda:0 to cuda:1)"),
        ("gpu0", "'gpu0' is not a CUDA device; give auto, or indexed devices like cuda:0"),
        ("cuda", "'cuda' is not a CUDA device"),
        ("cuda:0,cuda:0", "names cuda:0 twice"),
        (" , ", "--compile-devices is empty"),
    ],
)
def test_unknown_devices_are_refused(text, message):
    with pytest.raises(SettingsError, match="--compile-devices") as error:
        parse_devices(text, two)
    assert message in str(error.value)


def test_each_worker_owns_a_device_or_they_share_round_robin():
    owned = DevicePlan(("cuda:0", "cuda:1"), workers=2)
    assert [owned.device_of(i) for i in range(2)] == ["cuda:0", "cuda:1"]
    assert owned.exclusive
    shared = DevicePlan(("cuda:0", "cuda:1"), workers=3)
    assert [shared.device_of(i) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert not shared.exclusive
    assert "3 workers share 2 device(s): speed checks skip" in shared.describe()
    assert DevicePlan((), workers=2).device_of(0) is None
    assert not DevicePlan((), workers=2).exclusive
    assert DevicePlan(("cuda:1",)).describe().startswith("torchcompile device: cuda:1")
    assert worker_index("gw12") == 12


def _state(worker: str | None, plan: DevicePlan | None) -> PluginState:
    state = PluginState(("default",), CompileSettings(), None, None)
    state.worker, state.devices = worker, plan
    if plan is not None and worker is not None:
        state.device = plan.device_of(worker_index(worker))
    return state


def test_a_worker_times_only_on_the_gpu_it_owns_alone():
    owned = DevicePlan(("cuda:0", "cuda:1"), workers=2)
    gw1 = _state("gw1", owned)
    assert xdist_timing_skip(gw1, "cuda:1") is None
    assert xdist_timing_skip(gw1, "cpu") == XDIST_CPU_SKIP  # the CPU is still shared
    assert "cuda:0 is another worker's device" in str(xdist_timing_skip(gw1, "cuda:0"))
    shared = _state("gw2", DevicePlan(("cuda:0", "cuda:1"), workers=3))
    assert "3 xdist workers share 2 GPU(s)" in str(xdist_timing_skip(shared, "cuda:0"))
    assert xdist_timing_skip(_state("gw0", None), "cuda") == XDIST_CPU_SKIP  # a CPU worker
    assert xdist_timing_skip(_state(None, owned), "cpu") is None  # not under xdist


# Fakes a machine with two CUDA devices for the plugin; each worker writes down the device
# it was given (the CPU build cannot make it current).
FAKE_GPUS = """
import os
from pytest_torchcompile import devices

devices.cuda_device_count = lambda: int(os.environ.get("FAKE_GPUS", "2"))
devices.use_device = lambda device: os.environ.__setitem__("FAKE_CURRENT_DEVICE", device)
"""

SUITE = """
import os
from models import MLP, PointwiseChain
from pytest_torchcompile import TensorSpec, compile_equivalent, compile_faster

def test_where(request):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (request.config.rootpath / f"{worker}.device").write_text(
        os.environ.get("FAKE_CURRENT_DEVICE", "none"))

@compile_equivalent(inputs=[TensorSpec(2, 128)], examples=1, device="cuda")
def test_on_this_workers_gpu():
    return MLP().eval()

@compile_faster(min_speedup=1.1, inputs=[TensorSpec(1024)])
def test_speed_on_the_cpu():
    return PointwiseChain()
"""


@pytest.fixture
def gpus(suite: pytest.Pytester) -> pytest.Pytester:
    suite.makeconftest(FAKE_GPUS)
    suite.makepyfile(test_devices=SUITE)
    return suite


def test_each_worker_gets_its_own_device(gpus):
    """device="cuda" means the worker's own (the CPU build cannot run it: the skip names
    it); a CPU speed check keeps the xdist skip."""
    result = run(gpus, "-n", "2", "--compile-devices=auto", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        ["torchcompile devices: gw0 cuda:0, gw1 cuda:1 (one per worker: speed checks time *)"]
    )
    result.stdout.fnmatch_lines(["SKIPPED *device 'cuda:[01]' is not available*"])
    result.stdout.fnmatch_lines([f"SKIPPED *{XDIST_CPU_SKIP[:60]}*"])
    written = {p.stem: p.read_text() for p in gpus.path.glob("*.device")}
    assert set(written.values()) <= {"cuda:0", "cuda:1"} and written, written
    assert all(device == f"cuda:{name[2:]}" for name, device in written.items()), written


def test_xdist_auto_starts_one_worker_per_device(gpus, monkeypatch):
    monkeypatch.setenv("FAKE_GPUS", "1")  # fewer than this machine's cores
    result = run(gpus, "-n", "auto", "--compile-devices=auto", "-k", "where")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["torchcompile devices: gw0 cuda:0 (one per worker*", "created: 1/1 *"]
    )


def test_more_workers_than_devices_share_round_robin_with_a_warning(gpus):
    result = run(gpus, "-n", "3", "--compile-devices=cuda:1,cuda:0", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "torchcompile devices: gw0 cuda:1, gw1 cuda:0, gw2 cuda:1 (3 workers share 2 *)",
            "*PytestConfigWarning: --compile-devices: 3 xdist workers share 2 device(s) round "
            "robin, so speed checks skip; use -n 2*",
        ]
    )


def test_without_xdist_the_process_takes_the_first_device(gpus):
    result = run(gpus, "--compile-devices=cuda:1", "-k", "where")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["torchcompile device: cuda:1 (device='cuda' means it)"])
    assert (gpus.path / "main.device").read_text() == "cuda:1"


@pytest.mark.parametrize(
    ("value", "message"),
    [("cuda:2", "cuda:2 does not exist: this machine has 2"), ("gpu", "'gpu' is not a CUDA")],
)
def test_an_unknown_device_is_a_usage_error_at_start_up(gpus, value, message):
    result = run(gpus, "-n", "2", f"--compile-devices={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--compile-devices*{message}*"])


class _Config:
    def __init__(self, devices: str) -> None:
        self.devices = devices

    def getoption(self, name: str) -> str:
        return self.devices

    def getini(self, name: str) -> str:
        return ""


def test_the_xdist_hook_counts_devices(monkeypatch):
    from pytest_torchcompile.plugin import pytest_xdist_auto_num_workers

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 3)
    assert pytest_xdist_auto_num_workers(_Config("auto")) == 3
    assert pytest_xdist_auto_num_workers(_Config("cuda:0,cuda:2")) == 2
    assert pytest_xdist_auto_num_workers(_Config("")) is None  # xdist's own count
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 0)
    assert pytest_xdist_auto_num_workers(_Config("auto")) is None
