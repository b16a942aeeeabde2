"""Timing a call as :mod:`timeit` advises (the fastest of the repetitions that fit in a budget), and the
progress messages printed while the benchmarks run."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA), so that a clock reading covers them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_repeated(fn: Callable[[], None], seconds: float, device: torch.device) -> float:
    """Seconds of the fastest call of ``fn`` (already warmed up), calling it at least once and until
    ``seconds`` have passed. The fastest, as :mod:`timeit` advises: the slower calls were slowed by
    something else (on a shared machine, other processes taking the cores)."""
    best, start = math.inf, time.perf_counter()
    while best == math.inf or time.perf_counter() - start < seconds:
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def say(message: str) -> None:
    """A time-stamped progress line on stderr (the table goes to stdout)."""
    print(f"bench {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)
