"""``mmdis bench``: how fast this machine trains and evaluates RobustSeg, printed as a table.

Rows, in the order printed: training steps and convolution throughput (:mod:`benchmarks.steps`), the
evaluation of the 15 modality subsets (:mod:`benchmarks.evaluation`), the data loader
(:mod:`benchmarks.loader`) and, when asked for, one case on its own grid (:mod:`benchmarks.native`).
Above the table: the machine (:func:`mmdis.runtime.machine.environment_line`) and how peak memory is
read (:func:`mmdis.runtime.memory.memory_method`).

``python -m benchmarks.run ARGS`` is ``mmdis bench ARGS``.
"""

from __future__ import annotations

import sys

import torch

from benchmarks.evaluation import evaluation_rows
from benchmarks.loader import loader_rows
from benchmarks.native import bench_native
from benchmarks.steps import conv_rows, training_rows
from benchmarks.table import Row, format_table
from benchmarks.timing import say
from mmdis.profiles import get_profile
from mmdis.runtime.device import resolve_device
from mmdis.runtime.machine import environment_line
from mmdis.runtime.memory import memory_method


def run_benchmarks(patch: int = 80, cache_dir: str | None = None, seconds: float = 10.0,
                   channels: int = 16, *, profile: str | None = "cpu", eval_size: int | None = None,
                   device: str = "auto", threads: int | None = None,
                   native: str | None = None) -> list[Row]:
    """Measure, print the table (with the environment above it) and return its rows.

    Args:
        patch: training patch and evaluation window side, a multiple of 8 (paper: 80).
        cache_dir: a prepared cache for the loader (default: a 4-case phantom made in a temporary folder).
        seconds: time spent per measurement (each runs at least once after a warm-up).
        channels: ``C`` of the network (paper: 16).
        profile: the :data:`~mmdis.profiles.PROFILES` entry whose configuration gets its own
            training-step rows (``None``: none).
        eval_size: cube side of the evaluated volume (default: ``patch``, one window).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``.
        native: a dataset folder whose first case is also segmented on its own grid (e.g. the BraTS 2015
            sample at 240 x 240 x 155): its time and peak memory (``None``: skipped).
        threads: torch's intra-op threads during the run (default: as torch set them). On a machine
            whose cores other processes also use, fewer threads than cores can be many times faster:
            every parallel region waits for its slowest thread.

    Raises:
        ValueError: for a patch that is not a multiple of 8, an unknown profile, ``threads`` < 1 or an
            ``eval_size`` smaller than ``patch``.
    """
    if patch < 8 or patch % 8:
        raise ValueError(f"patch {patch} must be a positive multiple of 8")
    if profile is not None:
        get_profile(profile)  # raises for an unknown profile
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if eval_size is not None and eval_size < patch:
        raise ValueError(f"eval_size {eval_size} must be at least the window side (patch {patch})")
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(patch, cache_dir, seconds, channels, profile, eval_size, resolve_device(device), native)
    finally:
        torch.set_num_threads(saved)


def _run(patch: int, cache_dir: str | None, seconds: float, channels: int, profile: str | None,
         eval_size: int | None, dev: torch.device, native: str | None = None) -> list[Row]:
    print(environment_line(dev))
    print(f"peak memory: {memory_method(dev)}", flush=True)
    paper = get_profile("paper").train
    is_paper = (patch,) * 3 == tuple(paper["patch_size"]) and channels == paper["base_channels"]
    tag = "paper" if is_paper else "custom"

    rows, steps = training_rows(patch, channels, seconds, profile, tag, dev)
    rows += conv_rows(patch, channels, seconds, steps[0], tag, dev)
    rows += evaluation_rows(patch, channels, seconds, eval_size, dev)
    rows += loader_rows(patch, cache_dir, seconds, steps)
    if native is not None:
        say(f"segmenting the first case of {native} on its own grid ...")
        rows += bench_native(native, patch, channels, dev)
    print(format_table(rows), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """``mmdis bench`` with these arguments (the command line's own parser and error handling)."""
    from mmdis.cli import main as mmdis_main

    return mmdis_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
