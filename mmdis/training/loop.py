r"""The training loop: Adam, poly decay, seeded patches, validation, metrics and resumable checkpoints.

One epoch is ``iters_per_epoch`` steps on patches of the train split; after it the learning rate decays
by the paper's poly rule

.. math:: \eta_e = \eta_0 \left(1 - \frac{e}{E}\right)^{0.9},

the WT Dice on the val split is measured every ``val_every`` epochs, the epoch's rows are appended to
``metrics.csv`` and ``last.pt`` is rewritten atomically. Everything random is seeded: the patch sampler is
a pure function of ``(seed, epoch, index)`` and the torch RNG (modality dropout, appearance sampling) is
saved in the checkpoint, so on CPU a run resumed between epochs ends with exactly the weights of an
uninterrupted one.

The loop calls on modules of its own for the rest, each documented there:

- :mod:`.distributed`: several processes (DDP) under ``torchrun``: the process group, each rank's
  patches, validation cases and RNG stream, barriers, the ``DistributedDataParallel`` wrapper.
- :mod:`.runlog`: ``config.json``, ``metrics.csv``, TensorBoard events.
- :mod:`.checkpoint`: ``last.pt``.
- :mod:`mmdis.runtime`: the device, mixed precision (``config.amp``: autocast, the fp16 ``GradScaler``),
  the deterministic switch (``config.deterministic``), ``env.json`` and peak memory.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmdis.data.cache import Cache
from mmdis.data.datasets import PatchDataset
from mmdis.losses import LossConfig, total_loss
from mmdis.models.networks import SIZE_MULTIPLE
from mmdis.runtime.device import (
    autocast,
    cpu_bf16_warning,
    deterministic_algorithms,
    dtype_name,
    make_grad_scaler,
    resolve_amp,
)
from mmdis.runtime.files import atomic_path, save_json
from mmdis.runtime.machine import environment
from mmdis.runtime.memory import peak_memory_mb
from mmdis.training import distributed, runlog
from mmdis.training.checkpoint import load_checkpoint, rng_state, save_checkpoint
from mmdis.training.config import TrainConfig
from mmdis.training.validation import wt_dice_scores


def poly_factor(epoch: int, epochs: int, power: float = 0.9) -> float:
    r"""The poly decay :math:`(1 - e / E)^{p}` of the learning rate at epoch ``e`` (0-based)."""
    return max(1.0 - epoch / epochs, 0.0) ** power


# ------------------------------------------------------------------------------------ one step
def train_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer,
               loss_config: LossConfig, device: torch.device,
               amp_dtype: torch.dtype | None = None,
               scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One optimiser step on a batch of :class:`~mmdis.data.datasets.PatchDataset` items.

    ``present = batch["available"]``: a modality absent from the data is neither fused nor a
    reconstruction or KL target. The losses are computed in float32 outside autocast.

    Args:
        model: a :class:`~mmdis.models.networks.MultimodalSegNet`, possibly in ``DistributedDataParallel``.
        amp_dtype: autocast dtype (``None``: float32), see :func:`~mmdis.runtime.device.resolve_amp`.
        scaler: the fp16 loss scaler (``None`` or a disabled one: a plain backward pass and step).

    Returns:
        The loss terms of :func:`~mmdis.losses.total_loss` as floats.
    """
    model.train()
    x = batch["image"].to(device, non_blocking=True)  # (B, M, D, H, W)
    y = batch["label"].to(device, non_blocking=True)  # (B, D, H, W)
    mask = batch["mask"].to(device, non_blocking=True)  # (B, D, H, W)
    present = batch["available"].to(device, non_blocking=True).bool()  # (B, M)
    with autocast(device, amp_dtype):
        out = model(x, present)
    out = replace(out, seg=out.seg.float(),
                  recon=None if out.recon is None else out.recon.float(),
                  kl=None if out.kl is None else out.kl.float())
    losses = total_loss(out, x, y, loss_config, present=present, mask=mask)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        losses["total"].backward()
        optimizer.step()
    else:
        scaler.scale(losses["total"]).backward()
        scaler.step(optimizer)  # unscales first; skips the step if a gradient overflowed
        scaler.update()
    return {k: float(v.detach()) for k, v in losses.items()}


# ------------------------------------------------------------------------------------- train
def train(config: TrainConfig, cache_dir: str | Path, run_dir: str | Path, resume: bool = False,
          progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``config.method`` on the train split of a prepared cache, in this process or, under
    ``torchrun``, in every process of a DDP run (see :mod:`mmdis.training.distributed`).

    Writes to ``run_dir`` (rank 0): ``config.json`` and ``env.json`` at the start, ``metrics.csv`` (one
    row per step: ``step, epoch, lr``, the loss terms, ``seconds`` of the step, ``elapsed`` training
    seconds and ``val_dice_wt`` on the last step of a validated epoch), ``last.pt`` after every epoch,
    and TensorBoard events in ``tb/`` when TensorBoard is installed. Prints (rank 0) the val Dice of each
    validated epoch and, at the end, the seconds a step, the patches a second and the peak memory.

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
        ``val_dice_wt`` (``None`` if never validated), ``elapsed`` training seconds, ``checkpoint``;
        ``seconds_per_step`` (mean over the steps of this call; ``None`` if it made none),
        ``samples_per_second`` (patches of the global batch a second), ``peak_memory_mb`` (see
        :func:`~mmdis.runtime.memory.peak_memory_mb`; the largest over the ranks), ``amp`` (the
        resolved dtype: ``bfloat16``, ``float16`` or ``float32``), ``rank`` and ``world_size``. Under
        DDP the step, the losses and the Dice are the same on every rank; the times are each rank's own.

    Raises:
        FileExistsError: ``run_dir`` already holds a checkpoint and ``resume`` is False.
        ValueError: resuming with a different config, or a checkpoint of another method.
        FloatingPointError: a loss became NaN or infinite.
    """
    cache = Cache.open(cache_dir)
    run_dir = Path(run_dir)
    last_path = run_dir / "last.pt"
    if last_path.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a checkpoint; resume it or choose another run folder")
    resuming = resume and last_path.is_file()
    if resuming:
        runlog.check_resumable(run_dir, config)
    ddp, device = distributed.init_distributed(config.device)
    try:
        with deterministic_algorithms(config.deterministic):
            return _train(config, cache, run_dir, resuming, progress, stop_after, ddp, device)
    finally:
        ddp.close()


def _train(config: TrainConfig, cache: Cache, run_dir: Path, resuming: bool, progress: bool,
           stop_after: int | None, ddp: distributed.Distributed, device: torch.device) -> dict[str, Any]:
    """The body of :func:`train`, once the process group and the determinism flags are set."""
    train_ids, val_ids = cache.case_ids("train"), cache.case_ids("val")
    last_path = run_dir / "last.pt"
    amp_dtype, needs_scaler = resolve_amp(config.amp, device, config.bottom_depth)
    if hazard := cpu_bf16_warning(device, amp_dtype, config.patch_size, SIZE_MULTIPLE):
        warnings.warn(hazard, stacklevel=3)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_json(config.to_dict(), run_dir / "config.json")
        env = environment(device)
        env.update(world_size=ddp.world_size, backend=ddp.backend, amp=dtype_name(amp_dtype))
        save_json(env, run_dir / "env.json")
    ddp.barrier(device)

    distributed.seed_everything(config.seed)
    module = config.build_model().to(device)  # the same initialisation on every rank
    optimizer = torch.optim.Adam(module.parameters(), lr=config.optim.lr,
                                 weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: poly_factor(e, config.epochs, config.optim.poly_power))
    scaler = make_grad_scaler(device, needs_scaler)
    start_epoch, step, elapsed, val_dice, ckpt = 0, 0, 0.0, None, None
    if resuming:
        ckpt = load_checkpoint(last_path, module, optimizer, scheduler, method=config.method,
                               map_location=device, scaler=scaler, restore_rng=not ddp.active)
        start_epoch, step = ckpt["epoch"], ckpt["step"]
        elapsed, val_dice = ckpt["extra"].get("elapsed", 0.0), ckpt["extra"].get("val_dice_wt")
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs):
            # A resumed run may have more epochs: the schedule follows the current E.
            group["lr"] = base_lr * poly_factor(start_epoch, config.epochs, config.optim.poly_power)
        saved_world = ckpt["extra"].get("world_size", 1)
        if saved_world != ddp.world_size and ddp.main:
            warnings.warn(f"resuming a run of {saved_world} process(es) with {ddp.world_size}: it continues, "
                          "but not with the patches and random draws of an uninterrupted run", stacklevel=3)
    if ddp.active:
        distributed.seed_rank_stream(ddp, config.seed, start_epoch, ckpt)
    model = ddp.wrap(module, device)

    rows: list[dict[str, Any]] = []
    writer = None
    if ddp.main:
        rows = runlog.read_metrics(run_dir / "metrics.csv", start_epoch) if resuming else []
        runlog.write_metrics(run_dir / "metrics.csv", rows)
        # Resumed: hide what an interrupted run logged after its checkpoint (steps are 1-based).
        writer = runlog.tensorboard_writer(run_dir / "tb", purge_step=step + 1 if resuming else None)

    per_rank = config.iters_per_epoch * config.batch_size
    dataset = PatchDataset(cache.root, train_ids, samples_per_epoch=per_rank * ddp.world_size,
                           config=config.patch, seed=config.seed)
    shard = ddp.shard(dataset, per_rank)
    end_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    beyond = [s for s in config.snapshots if s > config.epochs * config.iters_per_epoch]
    if beyond and ddp.main:
        warnings.warn(f"snapshots {beyond} lie beyond the run's last step "
                      f"{config.epochs * config.iters_per_epoch}; they will not be written", stacklevel=2)
    bar = tqdm(total=config.epochs * config.iters_per_epoch, initial=step, desc=f"train {config.method}",
               disable=not (progress and ddp.main), unit="it", dynamic_ncols=True)
    last: dict[str, float] = {}
    step_seconds: list[float] = []
    try:
        for epoch in range(start_epoch, end_epoch):
            dataset.set_epoch(epoch)
            # Its own generator, so the loader never draws from (and shifts) the global torch RNG.
            loader = DataLoader(shard, batch_size=config.batch_size, shuffle=False,
                                num_workers=config.num_workers, pin_memory=device.type == "cuda",
                                generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
            lr = optimizer.param_groups[0]["lr"]
            epoch_rows = []
            tick = time.perf_counter()
            for batch in loader:
                # Averaged over the ranks, so that every rank sees (and fails on) the same numbers.
                last = ddp.mean(train_step(model, batch, optimizer, config.loss, device, amp_dtype, scaler),
                                device)
                if not all(math.isfinite(v) for v in last.values()):
                    bad = ", ".join(f"{k}={v}" for k, v in last.items() if not math.isfinite(v))
                    raise FloatingPointError(
                        f"non-finite loss at step {step + 1} (epoch {epoch + 1}) on cases "
                        f"{list(batch.get('case_id', []))}: {bad}; lower optim.lr or check those cases")
                now = time.perf_counter()
                seconds, tick = now - tick, now
                elapsed += seconds
                step += 1
                step_seconds.append(seconds)
                epoch_rows.append({"step": step, "epoch": epoch, "lr": lr, **last,
                                   "seconds": round(seconds, 4), "elapsed": round(elapsed, 2),
                                   "val_dice_wt": ""})
                if writer is not None:
                    for name, value in last.items():
                        writer.add_scalar(f"loss/{name}", value, step)
                    writer.add_scalar("lr", lr, step)
                    writer.add_scalar("time/seconds_per_step", seconds, step)
                bar.set_postfix(loss=f"{last['total']:.4f}", lr=f"{lr:.2e}", epoch=epoch, refresh=False)
                bar.update(1)
            scheduler.step()
            if config.val_every and (epoch + 1) % config.val_every == 0 and val_ids:
                # Each rank segments every W-th case; the mean runs over all of them in case order.
                mine = wt_dice_scores(module, cache.root, ddp.cases(val_ids), device, amp_dtype,
                                      config.profile)
                val_dice = float(np.mean(ddp.gather_cases(mine)))
                epoch_rows[-1]["val_dice_wt"] = round(val_dice, 5)
                if writer is not None:
                    writer.add_scalar("val/dice_wt", val_dice, step)
                if ddp.main:
                    bar.write(f"epoch {epoch + 1}/{config.epochs}: val WT Dice {val_dice:.4f}")
            rows.extend(epoch_rows)
            # Gathered by every rank at the same point, so that each resumes its own streams.
            rank_rng = ddp.all_gather(rng_state()) if ddp.active else None
            if ddp.main:
                runlog.write_metrics(run_dir / "metrics.csv", rows)
                save_checkpoint(last_path, model=module, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, rank_rng=rank_rng, epoch=epoch + 1, step=step,
                                method=config.method,
                                extra={"elapsed": elapsed, "val_dice_wt": val_dice,
                                       "world_size": ddp.world_size, "config": config.to_dict()})
                if step in config.snapshots:
                    snapshot = run_dir / "snapshots" / f"step_{step:06d}.pt"
                    snapshot.parent.mkdir(exist_ok=True)
                    with atomic_path(snapshot) as tmp:
                        shutil.copyfile(last_path, tmp)
                if writer is not None:
                    writer.flush()
            ddp.barrier(device)
    finally:
        bar.close()
        if writer is not None:
            writer.close()

    peaks = [p for p in ddp.all_gather(peak_memory_mb(device)) if p is not None]
    per_step = float(np.mean(step_seconds)) if step_seconds else None
    result = {"run_dir": str(run_dir), "epoch": max(end_epoch, start_epoch), "step": step, "last": last,
              "val_dice_wt": val_dice, "elapsed": elapsed, "checkpoint": str(last_path),
              "seconds_per_step": per_step,
              "samples_per_second": ddp.world_size * config.batch_size / per_step if per_step else None,
              "peak_memory_mb": max(peaks) if peaks else None,
              "amp": dtype_name(amp_dtype),
              "rank": ddp.rank, "world_size": ddp.world_size}
    if ddp.main and per_step:
        memory = f"{result['peak_memory_mb']:.0f} MiB" if peaks else "unknown"
        tqdm.write(f"{config.method}: {len(step_seconds)} steps, {per_step:.3f} s/step, "
                   f"{result['samples_per_second']:.2f} patches/s, peak memory {memory}")
    return result
