"""The Shapley contribution of each sequence to each region's score, as a heatmap (sequence x region)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mmdis.conventions import MODALITIES, MODALITY_NAMES, REGIONS


def plot_shapley_heatmap(summary: pd.DataFrame, method: str | None = None, scale: float = 100.0,
                         regions: Sequence[str] = tuple(REGIONS), ax: Axes | None = None,
                         cmap: str = "RdBu_r") -> Figure:
    """Heatmap of mean Shapley values with their confidence intervals: sequences as rows, regions as
    columns, each cell annotated ``mean`` and ``[low, high]`` (the mean alone when no interval has a
    width, e.g. for the paper's table, one pseudo-case).

    Args:
        summary: rows of :func:`mmdis.evaluation.shapley.bootstrap_shapley` (``method``, ``region``,
            ``modality``, ``mean``, ``low``, ``high``, ``cases``, ``level``).
        method: the method to draw; may be omitted when ``summary`` holds one.
        scale: multiplies the values (100: Dice points).
        regions: the columns, in order.
        ax: axes to draw on; a new figure is made when ``None``.
        cmap: a diverging colour map, centred on zero (a sequence that lowers the score is blue).

    Returns:
        The figure drawn on (nothing is shown).

    Raises:
        ValueError: if ``method`` is omitted and ``summary`` holds several methods.
    """
    methods = list(pd.unique(summary["method"]))
    if method is None:
        if len(methods) != 1:
            raise ValueError(f"summary holds methods {methods}: name one")
        method = methods[0]
    d = summary[summary["method"] == method].set_index(["modality", "region"])
    rows = [MODALITY_NAMES[m] for m in MODALITIES]
    cols = [r for r in regions if r in set(d.index.get_level_values("region"))]
    grid = {k: np.array([[d.loc[(m, r), k] * scale for r in cols] for m in rows]) for k in ("mean", "low",
                                                                                             "high")}
    if ax is None:
        fig = Figure(figsize=(1.6 * len(cols) + 2.2, 3.6), layout="constrained")
        ax = fig.subplots()
    limit = float(np.nanmax(np.abs(grid["mean"]))) or 1.0
    image = ax.imshow(grid["mean"], cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    intervals = bool((grid["high"] > grid["low"]).any())  # a single (pseudo-)case has none
    for i in range(len(rows)):
        for j in range(len(cols)):
            strong = abs(grid["mean"][i, j]) > 0.6 * limit
            text = f"{grid['mean'][i, j]:.1f}"
            if intervals:
                text += f"\n[{grid['low'][i, j]:.1f}, {grid['high'][i, j]:.1f}]"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if strong else "black")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("region")
    ax.set_ylabel("sequence")
    cases = int(d["cases"].max())
    unit = " (Dice points)" if scale == 100 else ""
    level = float(d["level"].iloc[0]) if "level" in d else 0.95
    what = f"mean of {cases} cases [{level:.0%} CI]" if intervals else f"{cases} case"
    ax.set_title(f"{method}: Shapley value{unit}, {what}", fontsize=9)
    ax.figure.colorbar(image, ax=ax, label=f"Shapley value{unit}")
    return ax.figure
