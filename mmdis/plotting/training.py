"""Training curves of runs: the smoothed training loss and the validation WT Dice against the step."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure


def plot_training_curves(run_dirs: Sequence[str | Path]) -> Figure:
    """Training loss (per-step, smoothed) and validation WT Dice of several runs.

    Reads each run's ``metrics.csv`` and the method from its ``config.json``; a run without metrics is
    left out.
    """
    fig = Figure(figsize=(9, 3.2), layout="tight")
    ax_loss, ax_val = fig.subplots(1, 2)
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.csv"
        if not path.is_file():
            continue
        method = json.loads((Path(run_dir) / "config.json").read_text())["method"]
        m = pd.read_csv(path)
        window = max(1, len(m) // 20)
        ax_loss.plot(m["step"], m["total"].rolling(window, min_periods=1).mean(), label=method)
        val = m.dropna(subset=["val_dice_wt"])
        if not val.empty:
            ax_val.plot(val["step"], val["val_dice_wt"], marker="o", label=method)
    ax_loss.set(xlabel="step", ylabel="total loss (smoothed)", title="training")
    ax_val.set(xlabel="step", ylabel="WT Dice", title="validation (all modalities)", ylim=(0, 1))
    ax_loss.legend(fontsize=8)
    return fig
