"""``mmdis bench --native``: one case of a dataset segmented on its own grid (no resampling)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from benchmarks.table import Row, make_row
from benchmarks.timing import sync
from mmdis.data.layouts import discover_cases, read_case
from mmdis.data.preprocess import preprocess_case, restore_prediction
from mmdis.inference import predict_subsets
from mmdis.models import build_model
from mmdis.runtime.memory import PeakMemory


def bench_native(case_dir: str | Path, patch: int, channels: int, dev: torch.device) -> list[Row]:
    """Segment the first case of a dataset folder on its own grid (no resampling), every subset it can
    form, with ``patch``-sided windows at 50 % overlap: the seconds and the peak memory above the loaded
    volumes (untrained weights; the cost does not depend on them)."""
    raw = read_case(discover_cases(case_dir)[0], allow_missing=True)
    model = build_model("robustseg", base_channels=channels).to(dev).eval()
    with PeakMemory(dev) as mem:
        tick = time.perf_counter()
        case = preprocess_case(raw)
        pred = predict_subsets(model, case.image, case.available, roi_size=patch, overlap=0.5,
                               with_recon=False, device=dev)
        restore_prediction(pred.labels[-1], case.crop)
        sync(dev)
        seconds = time.perf_counter() - tick
    what = (f"native {'x'.join(map(str, raw.shape))} case, {len(pred.subsets)} subsets, {patch}^3 windows, "
            f"C={channels}")
    return [make_row(f"{what}: time", seconds, "s"), make_row(f"{what}: peak memory", mem.mib, "MiB")]
