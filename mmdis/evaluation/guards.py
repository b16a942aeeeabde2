"""Checks before a trained run is used: is it finished, and were the cases it is scored on unseen by it?

``mmdis evaluate`` and ``mmdis predict`` call these so that a number never comes silently from a run that
stopped early or from cases the network was trained on:

- :func:`run_state` reads the epoch and step a run's weights reached and the epochs its config asks for;
  every output records it, and :func:`warn_unfinished` warns when the run stopped short.
- :func:`check_no_leakage` refuses to score a split that shares cases with the run's training split
  (recorded in ``data.json`` by :func:`mmdis.pipeline.train_run`, or in a shipped model's
  ``record.json``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def run_state(config: Any, meta: dict) -> dict[str, Any]:
    """``{"epoch", "step", "epochs", "finished"}`` of a run from its config and its weights' metadata
    (``meta`` as :func:`~mmdis.evaluation.evaluate.load_run` returns it)."""
    epoch = int(meta.get("epoch", 0))
    return {"epoch": epoch, "step": int(meta.get("step", 0)), "epochs": int(config.epochs),
            "finished": epoch >= int(config.epochs)}


def warn_unfinished(state: dict[str, Any], run_dir: str | Path) -> bool:
    """Warn (and return True) when a run's weights stopped before its last epoch."""
    if state["finished"]:
        return False
    warnings.warn(f"{run_dir} is unfinished: its weights are from epoch {state['epoch']} of "
                  f"{state['epochs']} (step {state['step']}); resume it with `mmdis train ... --resume` "
                  "before trusting its numbers", stacklevel=3)
    return True


def training_split(run_dir: str | Path) -> list[str] | None:
    """The case ids a run was trained on, or ``None`` where the run does not record them."""
    run_dir = Path(run_dir)
    for name, keys in (("data.json", ("splits", "train")), ("record.json", ("data", "splits", "train"))):
        path = run_dir / name
        if not path.is_file():
            continue
        value: Any = json.loads(path.read_text())
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, list):
            return [str(v) for v in value]
    return None


def check_no_leakage(run_dir: str | Path, case_ids: Sequence[str], split: str,
                     allow_overlap: bool = False) -> list[str]:
    """Refuse to evaluate ``case_ids`` with a run that was trained on some of them.

    Args:
        run_dir: the training run.
        case_ids: the cases about to be scored.
        split: their split's name, for the message.
        allow_overlap: only warn (``mmdis evaluate --allow-train-overlap``), e.g. to measure the fit on
            the training cases on purpose.

    Returns:
        The overlapping case ids (empty when there are none).

    Raises:
        ValueError: naming the run, the split and the cases, when they overlap and ``allow_overlap`` is
            False.
    """
    train = training_split(run_dir)
    if train is None:
        warnings.warn(f"{run_dir} does not record its training split, so the {split!r} cases cannot be "
                      "checked against it", stacklevel=3)
        return []
    overlap = sorted(set(train) & set(case_ids))
    if overlap:
        message = (f"{len(overlap)} of the {len(case_ids)} {split!r} cases were in the training split of "
                   f"{run_dir}: {overlap[:5]}{' ...' if len(overlap) > 5 else ''}")
        if not allow_overlap:
            raise ValueError(message + "; evaluate on cases the run has not seen (or pass "
                             "--allow-train-overlap to measure the fit on purpose)")
        warnings.warn(message, stacklevel=3)
    return overlap
