"""Figures of a reproduction, written next to its tables in ``results/figures/``.

- ``table2_dice.png``: the paper's Table 2 as a heatmap (subsets x method and region);
- ``average_dice.png``: 15-subset average Dice per method and region (the paper's headline comparison);
- ``ablation.png``: the paper's Fig. 3a, average Dice of mean fusion, + disentanglement, + gating;
- ``training.png``: training loss and validation Dice of every run against the step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mmdis.evaluation.report import ABLATION_METHODS, plot_table2_heatmap, read_results, table2  # noqa: E402
from mmdis.viz import save_figure  # noqa: E402


def plot_average_dice(df: pd.DataFrame, methods: Sequence[str] | None = None):
    """Bar chart of the 15-subset average Dice (%) per method and region, from tidy results."""
    seg = df[df["metric"] == "dice"]
    per_subset = seg.groupby(["method", "region", "subset"])["value"].mean().mul(100).reset_index()
    avg = per_subset.groupby(["method", "region"])["value"].mean().reset_index()
    order = [m for m in (methods or avg["method"].unique()) if m in set(avg["method"])]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(data=avg, x="region", y="value", hue="method", hue_order=order, order=["WT", "TC", "ET"],
                ax=ax)
    ax.set_ylabel("Dice (%), mean of the subsets")
    ax.set_xlabel("")
    ax.set_ylim(0, 100)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=7)
    ax.legend(fontsize=8, ncols=min(len(order), 3), loc="upper right")
    fig.tight_layout()
    return fig


def plot_training_curves(run_dirs: Sequence[str | Path]):
    """Training loss (per-step, smoothed) and validation WT Dice of several runs."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(9, 3.2))
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
    fig.tight_layout()
    return fig


def write_figures(results_dir: str | Path, run_dirs: Sequence[str | Path] = ()) -> list[Path]:
    """Write the figures of the module docstring from ``results_dir/results.csv``; returns their paths."""
    results_dir = Path(results_dir)
    df = read_results(results_dir / "results.csv")
    out = results_dir / "figures"
    paths = []
    seg = df[df["metric"] == "dice"]
    fig = plot_table2_heatmap(table2(seg))
    paths.append(save_figure(fig, out / "table2_dice.png"))
    paths.append(save_figure(plot_average_dice(df), out / "average_dice.png"))
    if all(m in set(df["method"]) for m in ABLATION_METHODS):
        ablation = df[df["method"].isin(ABLATION_METHODS)]
        paths.append(save_figure(plot_average_dice(ablation, ABLATION_METHODS), out / "ablation.png"))
    if run_dirs:
        paths.append(save_figure(plot_training_curves(run_dirs), out / "training.png"))
    plt.close("all")
    return paths
