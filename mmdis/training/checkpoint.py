"""Checkpoints that resume a run exactly: weights, optimiser, schedule, loss scaler, counters, RNG states.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that it loads with
``torch.load(weights_only=True)``, which cannot execute code from the file. The RNG states are stored in
that form too (Python's Mersenne twister as an ``int64`` tensor, NumPy's likewise). Writing goes to a
temporary file renamed onto the target, so an interruption never leaves a half-written ``last.pt``.

The weights are always those of the bare network: a model wrapped in ``DistributedDataParallel`` is
unwrapped before saving, so a checkpoint of a multi-process run loads into single-process code. Such a
run also stores the RNG states of every rank (``rank_rng``), so that each rank resumes its own streams.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmdis.runtime.files import atomic_path

CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """The Python, NumPy, torch CPU (and CUDA, when available) RNG states, as weights-only-safe data."""
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002 (the global one)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where CUDA is available)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper; else ``model``."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    rank_rng: list[dict[str, Any]] | None = None,
    epoch: int = 0,
    step: int = 0,
    method: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, then ``os.replace``).

    Args:
        path: destination, e.g. ``run_dir / "last.pt"``.
        model: the network, possibly wrapped in ``DistributedDataParallel`` (the bare network's weights
            are stored); its ``config`` (a :class:`~mmdis.models.config.ModelConfig`) is stored too.
        optimizer, scheduler: their state dicts are stored when given.
        scaler: the fp16 loss scaler; its state (scale, growth tracker) is stored when it is enabled.
        rank_rng: :func:`rng_state` of every rank of a multi-process run, indexed by rank (``rng`` is
            always this process's own state).
        epoch: number of completed epochs (training resumes at this epoch).
        step: number of completed optimiser steps.
        method: the training method (default: ``model.config.name``); a checkpoint refuses to load into
            another method.
        extra: more weights-only-safe data (numbers, strings, lists, dicts, tensors).

    Returns:
        ``path``.
    """
    model = unwrap(model)
    config = getattr(model, "config", None)
    payload: dict[str, Any] = {
        "version": CHECKPOINT_VERSION,
        "method": method or (config.name if config is not None else "unknown"),
        "model_config": config.to_dict() if config is not None else {},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "step": int(step),
        "rng": rng_state(),
        "extra": extra or {},
    }
    if rank_rng is not None:
        payload["rank_rng"] = list(rank_rng)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict of a checkpoint file, read with ``torch.load(weights_only=True)`` only.

    Every way a file can fail to be a checkpoint (missing, empty, truncated, random bytes, a pickle of
    arbitrary Python objects, which ``weights_only`` refuses to run) becomes one error naming the file.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if it cannot be read as a checkpoint, or holds no ``model`` weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes): a write was interrupted; delete it and "
                         "train again, or restore it")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling raises many types; all mean the same here
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            why = "it holds Python objects besides tensors, which mmdis refuses to load (they could run code)"
        else:
            why = f"it is truncated or not a PyTorch checkpoint ({type(exc).__name__})"
        raise ValueError(f"checkpoint {path} cannot be read: {why}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"checkpoint {path} is not an mmdis checkpoint (no 'model' weights in it)")
    return ckpt


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    method: str | None = None,
    restore_rng: bool = True,
    map_location: str | torch.device = "cpu",
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (and optimiser, scheduler).

    Only ``torch.load(weights_only=True)`` is used.

    Args:
        path: the checkpoint file.
        model: receives the weights (a ``DistributedDataParallel`` wrapper is unwrapped).
        optimizer, scheduler: receive their states when given.
        scaler: receives the fp16 loss scaler's state when given and the checkpoint holds one.
        method: the method the caller trains (default: ``model.config.name``).
        restore_rng: also restore the Python, NumPy and torch RNG states (to resume exactly).
        map_location: where tensors are loaded before being copied into the model.

    Returns:
        The checkpoint dict (``epoch``, ``step``, ``method``, ``model_config``, ``extra``, ...).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the checkpoint was saved by another method or another model configuration
            (both named in the message).
    """
    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    model = unwrap(model)
    config = getattr(model, "config", None)
    expected = method or (config.name if config is not None else None)
    saved = ckpt.get("method")
    if expected is not None and saved != expected:
        raise ValueError(
            f"checkpoint {path} was saved by method {saved!r}; it cannot be loaded into method {expected!r}"
        )
    if config is not None and ckpt.get("model_config"):
        mine = config.to_dict()
        differ = [f"{k}={v!r} saved, {mine.get(k)!r} here" for k, v in ckpt["model_config"].items()
                  if k != "name" and mine.get(k) != v]
        if differ:
            raise ValueError(f"checkpoint {path} has another model configuration: {'; '.join(differ)}")
    model.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if restore_rng:
        set_rng_state(ckpt["rng"])
    return ckpt
