"""``mmdis bench --native``: one case of a dataset segmented on its own grid (no resampling).

Two measurements, each from the loaded volumes to labels pasted back onto the case's grid:

- one ``predict``: what ``mmdis predict`` does for the case, one subset (every sequence the case has);
- the evaluation of the case: every subset it can form, each modality's encoders run once per window.
"""

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


def _segment(raw, model, patch: int, dev: torch.device, every_subset: bool) -> tuple[float, float, int]:
    # seconds, peak MiB above what was allocated before, subsets segmented
    with PeakMemory(dev) as mem:
        tick = time.perf_counter()
        case = preprocess_case(raw)
        available = tuple(bool(a) for a in case.available)
        pred = predict_subsets(model, case.image, available, subsets=None if every_subset else [available],
                               roi_size=patch, overlap=0.5, with_recon=False, device=dev)
        restore_prediction(pred.labels[-1], case.crop)
        sync(dev)
        seconds = time.perf_counter() - tick
    return seconds, mem.mib, len(pred.subsets)


def bench_native(case_dir: str | Path, patch: int, channels: int, dev: torch.device) -> list[Row]:
    """Segment the first case of a dataset folder on its own grid (no resampling) with ``patch``-sided
    windows at 50 % overlap, once as one ``predict`` (all its sequences) and once for every subset it can
    form: the seconds and the peak memory above the loaded volumes of each (untrained weights; the cost
    does not depend on them)."""
    raw = read_case(discover_cases(case_dir)[0], allow_missing=True)
    model = build_model("robustseg", base_channels=channels).to(dev).eval()
    grid = f"native {'x'.join(map(str, raw.shape))} case"
    rows = []
    for every_subset in (False, True):
        seconds, mib, n = _segment(raw, model, patch, dev, every_subset)
        what = (f"{grid}, {n} subsets" if every_subset else
                f"{grid}, one predict ({len(raw.images)} sequences)") + f", {patch}^3 windows, C={channels}"
        rows += [make_row(f"{what}: time", seconds, "s"), make_row(f"{what}: peak memory", mib, "MiB")]
    return rows
