"""Result tables as figures: Table 2 as a heatmap, subset-average Dice as bars (the headline comparison and
Fig. 3a), and PSNR/SSIM of the reconstructions per subset (Fig. 3b's numbers)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mmdis.conventions import SUBSETS, subset_dots, subset_name

_MASKS = {subset_name(s): s for s in SUBSETS}


def plot_table2_heatmap(table: pd.DataFrame, ax: Axes | None = None, cmap: str = "viridis",
                        fmt: str = ".1f") -> Figure:
    """Heatmap of a :func:`~mmdis.evaluation.tables.table2`: subsets (with their dots) as rows,
    method/region as columns, annotated.

    Args:
        table: a Table-2 layout (the Average row is kept as the last row): text dot columns, then numbers.
        ax: axes to draw on; a new figure is made when ``None``.
        cmap: colour map name.
        fmt: number format of the annotations.

    Returns:
        The figure drawn on (nothing is shown).
    """
    values = table.select_dtypes("number").astype(float)
    dots = table.drop(columns=values.columns).astype(str).agg("".join, axis=1)  # "" in the Average row
    if ax is None:
        fig = Figure(figsize=(1.1 * values.shape[1] + 3.0, 0.35 * values.shape[0] + 1.5))
        ax = fig.subplots()
    labels = [f"{d}  {s}" if d else str(s) for s, d in zip(values.index, dots)]
    metric = table.attrs.get("metric", "")
    unit = " (%)" if table.attrs.get("percent") else ""
    sns.heatmap(values, annot=True, fmt=fmt, cmap=cmap, ax=ax, yticklabels=labels,
                cbar_kws={"label": f"{metric}{unit}"})
    ax.set_xlabel("method / region")
    ax.set_ylabel("available modalities (FLAIR, T1, T1c, T2)")
    return ax.figure


def plot_average_dice(df: pd.DataFrame, methods: Sequence[str] | None = None) -> Figure:
    """Bar chart of the 15-subset average Dice (%) per method and region, from a tidy result table."""
    seg = df[df["metric"] == "dice"]
    per_subset = seg.groupby(["method", "region", "subset"])["value"].mean().mul(100).reset_index()
    avg = per_subset.groupby(["method", "region"])["value"].mean().reset_index()
    order = [m for m in (methods or avg["method"].unique()) if m in set(avg["method"])]
    fig = Figure(figsize=(7, 3.5), layout="tight")
    ax = fig.subplots()
    sns.barplot(data=avg, x="region", y="value", hue="method", hue_order=order, order=["WT", "TC", "ET"],
                ax=ax)
    ax.set_ylabel("Dice (%), mean of the subsets")
    ax.set_xlabel("")
    ax.set_ylim(0, 100)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=7)
    ax.legend(fontsize=8, ncols=min(len(order), 3), loc="upper right")
    return fig


def plot_recon_heatmap(summary: pd.DataFrame) -> Figure:
    """PSNR and SSIM of :func:`~mmdis.evaluation.tables.recon_summary` as heatmaps (subsets x modalities);
    cells of modalities that were inputs are framed, the others were rebuilt without their own image."""
    fig = Figure(figsize=(9.0, 6.0), layout="constrained")
    for ax, metric, fmt in zip(fig.subplots(1, 2), ("psnr", "ssim"), (".1f", ".2f")):
        grid = summary.pivot(index="subset", columns="modality", values=metric)
        grid = grid.loc[[s for s in _MASKS if s in grid.index], [m for m in summary["modality"].unique()]]
        labels = [f"{subset_dots(_MASKS[s])} {s}" for s in grid.index] if metric == "psnr" else False
        sns.heatmap(grid, annot=True, fmt=fmt, cmap="magma", ax=ax, yticklabels=labels,
                    cbar_kws={"label": "PSNR (dB)" if metric == "psnr" else "SSIM"})
        for (i, s), (j, mod) in ((a, b) for a in enumerate(grid.index) for b in enumerate(grid.columns)):
            if mod in s.split("+"):
                ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="white", lw=2))
        ax.set(xlabel="reconstructed modality", ylabel="input subset" if metric == "psnr" else "")
    return fig
