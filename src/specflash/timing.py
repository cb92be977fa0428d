"""Wall-clock timing of work on a device: CUDA runs asynchronously, so a clock read waits for it first."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """perf_counter seconds once the device's queued work is done."""
    synchronize(device)
    return time.perf_counter()


def timings(run: Callable[[], object], device: torch.device, repeats: int, warm_up: bool = True) -> list[float]:
    """Seconds of each of `repeats` calls of `run`, after an untimed one if `warm_up`."""
    if warm_up:
        run()
    seconds = []
    for _ in range(repeats):
        start = now(device)
        run()
        seconds.append(now(device) - start)
    return seconds
