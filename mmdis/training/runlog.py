"""What a run records beside its checkpoint: the environment, the metrics table, TensorBoard, peak memory.

A run folder holds, besides ``last.pt`` (:mod:`.checkpoint`), files written by rank 0 alone:

``config.json``
    The resolved :class:`~mmdis.training.config.TrainConfig`. A resumed run must have the same one,
    except for the fields in :data:`RESUMABLE_CHANGES` (:func:`check_resumable`).
``env.json``
    Versions, hardware and the git commit (:func:`environment`), plus the number of processes, the
    process-group backend and the resolved autocast dtype.
``metrics.csv``
    One row per step, columns :data:`METRIC_COLUMNS`; rewritten atomically after every epoch
    (:func:`write_metrics`). A resumed run keeps the rows of the epochs its checkpoint holds and drops
    those an interrupted run logged after it (:func:`read_metrics`).
``tb/``
    When ``torch.utils.tensorboard`` imports (the ``tensorboard`` package is installed; it is not a
    dependency), rank 0 also writes the loss terms, the learning rate, the step time and the val Dice to
    ``run_dir/tb`` (``tensorboard --logdir runs``); otherwise only ``metrics.csv``
    (:func:`tensorboard_writer`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mmdis.runtime.files import atomic_path
from mmdis.training.config import TrainConfig

LOSS_TERMS = ("total", "seg", "dice", "ce", "rec", "kl")
METRIC_COLUMNS = ("step", "epoch", "lr", *LOSS_TERMS, "seconds", "elapsed", "val_dice_wt")
#: Fields that may change when a run is resumed; any other difference is refused.
RESUMABLE_CHANGES = ("epochs", "val_every", "device", "num_workers", "deterministic")


def check_resumable(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume ``run_dir`` with a config that differs from its ``config.json`` in a field
    outside :data:`RESUMABLE_CHANGES` (nothing to check without a ``config.json``).

    Raises:
        ValueError: naming the fields that differ.
    """
    path = run_dir / "config.json"
    if not path.is_file():
        return
    old, new = json.loads(path.read_text()), config.to_dict()
    differ = [k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k]]
    if differ:
        raise ValueError(f"cannot resume {run_dir}: its config.json differs in {differ} "
                         f"(only {list(RESUMABLE_CHANGES)} may change)")


# ------------------------------------------------------------------------------------- metrics
def read_metrics(path: Path, before_epoch: int) -> list[dict[str, str]]:
    """Rows of an existing ``metrics.csv`` for epochs already in the checkpoint."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) < before_epoch]


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``metrics.csv`` atomically: the header :data:`METRIC_COLUMNS`, then ``rows``."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def tensorboard_writer(log_dir: str | Path, purge_step: int | None = None) -> Any | None:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``, or ``None`` without TensorBoard.

    ``purge_step``: on resuming, events an interrupted run wrote at or after this step are hidden.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ImportError without the package; a broken install can raise others
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)
