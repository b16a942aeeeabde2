"""``mmdis bench``: throughput measurements printed as a table (never asserted in a timed test).

Rows:

- data loader: training patches per second from a prepared cache (random crop, flips, intensity
  augmentation), for 0, 1 and 2 loader workers;
- training step: seconds per optimiser step of RobustSeg on the same patch size (forward, backward,
  Adam), i.e. how many patches per second training consumes;
- the ratio of the two, with the target that loading is at least 5x faster than consumption.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mmdis.data.cache import Cache, PrepareConfig, prepare
from mmdis.data.datasets import PatchConfig, PatchDataset

LOADER_TARGET = 5.0


def _phantom_cache(root: Path, cases: int = 4) -> Path:
    from mmdis.data.phantom import PhantomConfig, write_phantom

    write_phantom(root / "phantom", PhantomConfig(cases=cases, seed=0, spacing=2.0), progress=False)
    prepare(root / "phantom", root / "cache", PrepareConfig(), progress=False)
    return root / "cache"


def bench_loader(cache_dir: Path, patch: int, workers: int, seconds: float) -> float:
    """Patches per second delivered by a :class:`DataLoader` (batch 1), after one warm-up batch."""
    cache = Cache.open(cache_dir)
    ids = cache.case_ids("train") or cache.case_ids()
    ds = PatchDataset(cache_dir, ids, samples_per_epoch=100000, config=PatchConfig(patch_size=(patch,) * 3))
    loader = DataLoader(ds, batch_size=1, num_workers=workers, persistent_workers=False)
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(it)
        n += 1
    rate = n / (time.perf_counter() - t0)
    del it
    return rate


def bench_train_step(patch: int, channels: int, seconds: float) -> float | None:
    """Seconds per RobustSeg training step at batch 1, or ``None`` if the model is unavailable."""
    try:
        from mmdis.losses import LossConfig, total_loss
        from mmdis.models import build_model
    except ImportError:
        return None
    model = build_model("robustseg", base_channels=channels)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(1, 4, patch, patch, patch)
    y = torch.randint(0, 4, (1, patch, patch, patch))
    available = torch.ones(1, 4, dtype=torch.bool)

    def step():
        out = model(x, available)
        loss = total_loss(out, x, y, LossConfig())["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return (time.perf_counter() - t0) / n


def run_benchmarks(patch: int = 80, cache_dir: str | None = None, seconds: float = 10.0,
                   channels: int = 16) -> list[tuple[str, str]]:
    """Measure and print the table; returns its rows as ``(name, value)`` strings."""
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(cache_dir) if cache_dir else _phantom_cache(Path(tmp))
        rates = {}
        for workers in (0, 1, 2):
            rates[workers] = bench_loader(cache, patch, workers, seconds)
            rows.append((f"loader patches/s ({workers} workers, {patch}^3)", f"{rates[workers]:.1f}"))
    step = bench_train_step(patch, channels, seconds)
    if step is not None:
        consume = 1.0 / step
        rows.append((f"RobustSeg train step s (C={channels}, {patch}^3, batch 1)", f"{step:.3f}"))
        rows.append(("training consumes patches/s", f"{consume:.2f}"))
        best = max(rates.values())
        rows.append((f"loader / consumption (target >= {LOADER_TARGET:.0f}x)", f"{best / consume:.1f}x"))
    rows.append(("torch threads", str(torch.get_num_threads())))
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  value")
    print(f"{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return rows
