r"""The training loop: Adam, poly decay, seeded patches, validation, metrics and resumable checkpoints.

One epoch is ``iters_per_epoch`` steps on patches of the train split; after it the learning rate decays
by the paper's poly rule

.. math:: \eta_e = \eta_0 \left(1 - \frac{e}{E}\right)^{0.9},

the WT Dice on the val split is measured every ``val_every`` epochs, the epoch's rows are appended to
``metrics.csv`` and ``last.pt`` is rewritten atomically. Everything random is seeded: the patch sampler is
a pure function of ``(seed, epoch, index)`` and the torch RNG (modality dropout, appearance sampling) is
saved in the checkpoint, so on CPU a run resumed between epochs ends with exactly the weights of an
uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import random
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmdis.conventions import REGIONS
from mmdis.data.cache import Cache
from mmdis.data.datasets import PatchDataset, VolumeDataset
from mmdis.data.io import atomic_path, save_json
from mmdis.losses import LossConfig, total_loss
from mmdis.models.networks import SIZE_MULTIPLE, MultimodalSegNet
from mmdis.training.checkpoint import load_checkpoint, save_checkpoint
from mmdis.training.config import TrainConfig

LOSS_TERMS = ("total", "seg", "dice", "ce", "rec", "kl")
METRIC_COLUMNS = ("step", "epoch", "lr", *LOSS_TERMS, "seconds", "elapsed", "val_dice_wt")
#: Fields that may change when a run is resumed; any other difference is refused.
RESUMABLE_CHANGES = ("epochs", "val_every", "device", "num_workers")


def poly_factor(epoch: int, epochs: int, power: float = 0.9) -> float:
    r"""The poly decay :math:`(1 - e / E)^{p}` of the learning rate at epoch ``e`` (0-based)."""
    return max(1.0 - epoch / epochs, 0.0) ** power


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA with ``auto`` (where supported) and anywhere with ``bf16``; otherwise ``None``."""
    if amp == "bf16":
        return torch.bfloat16
    if amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def train_step(model: MultimodalSegNet, batch: dict, optimizer: torch.optim.Optimizer,
               loss_config: LossConfig, device: torch.device,
               amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """One optimiser step on a batch of :class:`~mmdis.data.datasets.PatchDataset` items.

    ``present = batch["available"]``: a modality absent from the data is neither fused nor a
    reconstruction or KL target. The losses are computed in float32 outside autocast.

    Returns:
        The loss terms of :func:`~mmdis.losses.total_loss` as floats.
    """
    model.train()
    x = batch["image"].to(device, non_blocking=True)  # (B, M, D, H, W)
    y = batch["label"].to(device, non_blocking=True)  # (B, D, H, W)
    mask = batch["mask"].to(device, non_blocking=True)  # (B, D, H, W)
    present = batch["available"].to(device, non_blocking=True).bool()  # (B, M)
    with _autocast(device, amp_dtype):
        out = model(x, present)
    out = replace(out, seg=out.seg.float(),
                  recon=None if out.recon is None else out.recon.float(),
                  kl=None if out.kl is None else out.kl.float())
    losses = total_loss(out, x, y, loss_config, present=present, mask=mask)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


@torch.no_grad()
def validate(model: MultimodalSegNet, cache_dir: str | Path, case_ids: list[str], device: torch.device,
             amp_dtype: torch.dtype | None = None) -> float:
    r"""Mean whole-tumour Dice over whole volumes, with every available modality.

    .. math:: \mathrm{Dice}_{WT} = \frac{2 |P \cap G|}{|P| + |G|}, \quad
              P = \{\arg\max_k \hat Y \in WT\},\ G = \{Y \in WT\}

    (1 when both are empty). Each volume is zero-padded at the far end to a multiple of 8 and segmented
    in one pass with a plain argmax; the sliding-window evaluator is :mod:`mmdis.evaluation`'s job.
    """
    model.eval()
    wt = torch.tensor(REGIONS["WT"], device=device)
    scores = []
    for item in VolumeDataset(cache_dir, case_ids):
        image = item["image"].to(device)  # (M, D, H, W)
        shape = image.shape[1:]
        pad = [(-s) % SIZE_MULTIPLE for s in shape]
        image = F.pad(image, (0, pad[2], 0, pad[1], 0, pad[0]))  # (M, D', H', W')
        available = item["available"].to(device)[None]  # (1, M)
        with _autocast(device, amp_dtype):
            logits = model(image[None], available).seg  # (1, K, D', H', W')
        pred = logits[0, :, : shape[0], : shape[1], : shape[2]].argmax(0)  # (D, H, W)
        p, g = torch.isin(pred, wt), torch.isin(item["label"].to(device), wt)
        denom = int(p.sum() + g.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom)
    return float(np.mean(scores)) if scores else math.nan


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, hardware and the git commit of the code, for ``env.json``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__,
           "platform": platform.platform(), "device": str(device), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "git_commit": commit}
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (third-party code may draw from the global generator)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _check_resumable(run_dir: Path, config: TrainConfig) -> None:
    import json

    path = run_dir / "config.json"
    if not path.is_file():
        return
    old, new = json.loads(path.read_text()), config.to_dict()
    differ = [k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k]]
    if differ:
        raise ValueError(f"cannot resume {run_dir}: its config.json differs in {differ} "
                         f"(only {list(RESUMABLE_CHANGES)} may change)")


def _read_metrics(path: Path, before_epoch: int) -> list[dict[str, str]]:
    """Rows of an existing ``metrics.csv`` for epochs already in the checkpoint."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) < before_epoch]


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def train(config: TrainConfig, cache_dir: str | Path, run_dir: str | Path, resume: bool = False,
          progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``config.method`` on the train split of a prepared cache.

    Writes to ``run_dir``: ``config.json`` and ``env.json`` at the start, ``metrics.csv`` (one row per
    step: ``step, epoch, lr``, the loss terms, ``seconds`` of the step, ``elapsed`` training seconds and
    ``val_dice_wt`` on the last step of a validated epoch) and ``last.pt`` after every epoch.

    Args:
        config: the run; see :func:`~mmdis.training.config.make_config`.
        cache_dir: a folder written by :func:`mmdis.data.cache.prepare`.
        run_dir: output folder (created).
        resume: continue from ``run_dir/last.pt`` (a fresh start when there is none yet).
        progress: show a tqdm bar with the loss and the speed.
        stop_after: return once this many epochs are complete, as if interrupted (``last.pt`` then
            resumes the run); ``None`` trains all ``config.epochs``.

    Returns:
        ``run_dir``, ``epoch`` and ``step`` reached, the ``last`` step's loss terms, the latest
        ``val_dice_wt`` (``None`` if never validated), ``elapsed`` training seconds and ``checkpoint``.

    Raises:
        FileExistsError: ``run_dir`` already holds a checkpoint and ``resume`` is False.
        ValueError: resuming with a different config, or a checkpoint of another method.
    """
    cache = Cache.open(cache_dir)
    train_ids, val_ids = cache.case_ids("train"), cache.case_ids("val")
    run_dir = Path(run_dir)
    last_path = run_dir / "last.pt"
    if last_path.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a checkpoint; resume it or choose another run folder")
    resuming = resume and last_path.is_file()
    if resuming:
        _check_resumable(run_dir, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    amp_dtype = autocast_dtype(config.amp, device)
    save_json(config.to_dict(), run_dir / "config.json")
    save_json(environment(device), run_dir / "env.json")

    _seed_everything(config.seed)
    model = config.build_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr,
                                 weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: poly_factor(e, config.epochs, config.optim.poly_power))
    start_epoch, step, elapsed, val_dice = 0, 0, 0.0, None
    if resuming:
        ckpt = load_checkpoint(last_path, model, optimizer, scheduler, method=config.method,
                               map_location=device)
        start_epoch, step = ckpt["epoch"], ckpt["step"]
        elapsed, val_dice = ckpt["extra"].get("elapsed", 0.0), ckpt["extra"].get("val_dice_wt")
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs):
            # A resumed run may have more epochs: the schedule follows the current E.
            group["lr"] = base_lr * poly_factor(start_epoch, config.epochs, config.optim.poly_power)
    rows = _read_metrics(run_dir / "metrics.csv", start_epoch) if resuming else []
    _write_metrics(run_dir / "metrics.csv", rows)

    samples = config.iters_per_epoch * config.batch_size
    dataset = PatchDataset(cache.root, train_ids, samples_per_epoch=samples, config=config.patch,
                           seed=config.seed)
    end_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    bar = tqdm(total=config.epochs * config.iters_per_epoch, initial=step, disable=not progress,
               desc=f"train {config.method}", unit="it", dynamic_ncols=True)
    last: dict[str, float] = {}
    for epoch in range(start_epoch, end_epoch):
        dataset.set_epoch(epoch)
        # Its own generator, so the loader never draws from (and shifts) the global torch RNG.
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False,
                            num_workers=config.num_workers, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        lr = optimizer.param_groups[0]["lr"]
        epoch_rows = []
        tick = time.perf_counter()
        for batch in loader:
            last = train_step(model, batch, optimizer, config.loss, device, amp_dtype)
            if not all(math.isfinite(v) for v in last.values()):
                raise FloatingPointError(f"non-finite loss at step {step} (epoch {epoch}): {last}")
            now = time.perf_counter()
            seconds, tick = now - tick, now
            elapsed += seconds
            step += 1
            epoch_rows.append({"step": step, "epoch": epoch, "lr": lr, **last, "seconds": round(seconds, 4),
                               "elapsed": round(elapsed, 2), "val_dice_wt": ""})
            bar.set_postfix(loss=f"{last['total']:.4f}", lr=f"{lr:.2e}", epoch=epoch, refresh=False)
            bar.update(1)
        scheduler.step()
        if config.val_every and (epoch + 1) % config.val_every == 0 and val_ids:
            val_dice = validate(model, cache.root, val_ids, device, amp_dtype)
            epoch_rows[-1]["val_dice_wt"] = round(val_dice, 5)
            bar.write(f"epoch {epoch + 1}/{config.epochs}: val WT Dice {val_dice:.4f}")
        rows.extend(epoch_rows)
        _write_metrics(run_dir / "metrics.csv", rows)
        save_checkpoint(last_path, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch + 1,
                        step=step, method=config.method,
                        extra={"elapsed": elapsed, "val_dice_wt": val_dice, "config": config.to_dict()})
    bar.close()
    return {"run_dir": str(run_dir), "epoch": max(end_epoch, start_epoch), "step": step, "last": last,
            "val_dice_wt": val_dice, "elapsed": elapsed, "checkpoint": str(last_path)}
