"""The contention meter's arithmetic and the thread setting, without timing anything."""

import os
import threading

import pytest
import torch

from pytest_torchcompile.timing import Meter, RunQueue, torch_threads


def test_run_queue_delay_is_summed_over_threads_per_second_of_block():
    meter = Meter(threads=2, device="cpu")
    before = (10.0, {"1": 0, "2": 5_000_000})
    # Over a 10 ms block: thread 2 waited 4 ms, a thread born mid-block 1 ms; 15 ms of CPU.
    after = (10.015, {"1": 0, "2": 9_000_000, "3": 1_000_000})
    wait, served = meter.block(before, after, 0.010)
    assert wait == pytest.approx(0.5) and served == pytest.approx(0.75)


def test_without_schedstat_cpu_time_stands_in_on_the_cpu_only():
    meter = Meter(threads=2, device="cpu")
    wait, served = meter.block((0.0, None), (0.015, None), 0.010)
    assert wait == pytest.approx(0.5) and served == pytest.approx(0.75)
    fully_served = meter.block((0.0, None), (0.021, None), 0.010)
    assert fully_served[0] == 0.0  # more CPU than threads x wall: helper threads, no wait
    gpu = Meter(threads=2, device="meta")  # CPU time says nothing about a device's work
    assert gpu.block((0.0, None), (0.001, None), 0.010) == (None, None)


def test_threads_are_set_for_the_block_and_restored_also_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1) as used:
        assert used == 1 == torch.get_num_threads()
        raise RuntimeError
    assert torch.get_num_threads() == before
    with torch_threads(None) as used:
        assert used == before


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="Linux's schedstat only")
def test_the_run_queue_is_read_per_thread_and_its_files_released():
    run_queue = RunQueue()
    delays = run_queue.read()
    assert delays is not None and str(threading.get_native_id()) in delays
    assert all(isinstance(ns, int) and ns >= 0 for ns in delays.values())
    run_queue.close()
    assert run_queue.files == {}
