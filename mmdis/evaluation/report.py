"""The figures of a reproduction's report, written next to its tables in ``results/figures/``.

- ``table2_dice.png``: the paper's Table 2 as a heatmap (subsets x method and region);
- ``average_dice.png``: 15-subset average Dice per method and region (the paper's headline comparison);
- ``ablation.png``: the paper's Fig. 3a, average Dice of mean fusion, + disentanglement, + gating;
- ``training.png``: training loss and validation Dice of every run against the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmdis.evaluation.tables import ABLATION_METHODS, table2
from mmdis.evaluation.tidy import read_results
from mmdis.plotting.base import save_figure
from mmdis.plotting.scores import plot_average_dice, plot_table2_heatmap
from mmdis.plotting.training import plot_training_curves


def write_figures(results_dir: str | Path, run_dirs: Sequence[str | Path] = ()) -> list[Path]:
    """Write the figures of the module docstring from ``results_dir/results.csv``; returns their paths."""
    results_dir = Path(results_dir)
    df = read_results(results_dir / "results.csv")
    out = results_dir / "figures"
    paths = []
    seg = df[df["metric"] == "dice"]
    paths.append(save_figure(plot_table2_heatmap(table2(seg)), out / "table2_dice.png"))
    paths.append(save_figure(plot_average_dice(df), out / "average_dice.png"))
    if all(m in set(df["method"]) for m in ABLATION_METHODS):
        ablation = df[df["method"].isin(ABLATION_METHODS)]
        paths.append(save_figure(plot_average_dice(ablation, ABLATION_METHODS), out / "ablation.png"))
    if run_dirs:
        paths.append(save_figure(plot_training_curves(run_dirs), out / "training.png"))
    return paths
