"""Part 4 of ``mmdis bench``: training patches per second from a prepared cache (random crop, flips,
intensity augmentation) for 0, 1 and 2 workers, against the patches per second the training step at the
same patch size consumes (target: the loader at least 5 x faster)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from benchmarks.steps import StepResult
from benchmarks.table import LOADER_TARGET, Row, make_row
from benchmarks.timing import say
from mmdis.data.cache import Cache, PrepareConfig, prepare
from mmdis.data.datasets import PatchConfig, PatchDataset
from mmdis.data.phantom import PhantomConfig, write_phantom


def phantom_cache(root: Path, cases: int = 4) -> Path:
    """A prepared cache of ``cases`` phantom cases at 2 mm under ``root`` (its path)."""
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
    while n < 1 or time.perf_counter() - t0 < seconds:
        next(it)
        n += 1
    rate = n / (time.perf_counter() - t0)
    del it
    return rate


def loader_rows(patch: int, cache_dir: str | None, seconds: float, steps: list[StepResult]) -> list[Row]:
    """Rows of part 4: the loader at 0, 1 and 2 workers against the fastest training step."""
    rows, rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if cache_dir:
            cache = Path(cache_dir)
        else:
            say("writing a 4-case phantom cache")
            cache = phantom_cache(Path(tmp))
        for workers in (0, 1, 2):
            plural = "" if workers == 1 else "s"
            say(f"data loader, {workers} worker{plural}")
            rates.append(bench_loader(cache, patch, workers, seconds))
            rows.append(make_row(f"loader, {workers} worker{plural} ({patch}^3 patches)", rates[-1],
                                 "patches/s"))
    consume = max(s.batch / s.seconds for s in steps)
    rows += [make_row(f"training consumes ({patch}^3, fastest step above)", consume, "patches/s"),
             make_row("best loader / consumption", max(rates) / consume, "x", at_least=LOADER_TARGET)]
    return rows
