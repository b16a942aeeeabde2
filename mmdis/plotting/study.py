"""The training-budget study in one figure: Dice, gate selectivity, reconstruction and the ablation's
ordering against training steps (:func:`mmdis.study.study_summary` is the input)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from mmdis.plotting.base import method_label

REGIONS = ("WT", "TC", "ET")
_STYLES = {"WT": "-", "TC": "--", "ET": ":"}


def _legend(ax, **kwargs) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _steps_axis(ax, steps) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(steps), [str(s) for s in sorted(steps)])
    ax.minorticks_off()
    ax.set_xlabel("training step")


def plot_study(summary: pd.DataFrame, gated: str = "robustseg",
               ablation: tuple[str, ...] = ("ablation-mean", "ablation-mean-dis", "robustseg")) -> Figure:
    """Four panels against steps (log scale): (a) the 15-subset average Dice of every method, one line
    style per region; (b) the mean gate of each sequence in each tumour region for ``gated``; (c) the PSNR
    of missing sequences above the flat image; (d) the 15-subset average Dice over WT, TC and ET of the
    three ablation methods.

    Args:
        summary: the long table of :func:`~mmdis.study.study_summary`.
        gated: the method whose gates panel (b) draws.
        ablation: the ablation's methods, weakest expected first.
    """
    fig = Figure(figsize=(12, 10), layout="constrained")
    (ax_dice, ax_gate), (ax_rec, ax_abl) = fig.subplots(2, 2)
    steps = summary["step"].unique()
    dice = summary[summary["quantity"] == "dice"]
    colours = {}
    for (method, region), d in dice.groupby(["method", "region"], sort=False):
        line = ax_dice.plot(d["step"], 100 * d["value"], _STYLES.get(region, "-"), marker="o", markersize=3,
                            color=colours.get(method), label=f"{method_label(method)} {region}")[0]
        colours.setdefault(method, line.get_color())
    ax_dice.set(ylabel="Dice (%), 15-subset average", title="(a) segmentation, every method")
    _legend(ax_dice, fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))

    gates = summary[(summary["quantity"] == "mean_gate") & (summary["method"] == gated)]
    split = gates["region"].str.split("/", expand=True)
    if not gates.empty:
        gates = gates.assign(tumour=split[0], sequence=split[1])
        for (tumour, sequence), d in gates.groupby(["tumour", "sequence"], sort=False):
            style = {"edema": "-", "core": "--", "enhancing": ":"}[tumour]
            line = ax_gate.plot(d["step"], d["value"], style, marker="o", markersize=3,
                                color=colours.get(sequence), label=f"{sequence} in {tumour}")[0]
            colours.setdefault(sequence, line.get_color())
    ax_gate.set(ylabel="mean gate (stage 0, all inputs)", ylim=(0, 1),
                title=f"(b) gate of each sequence per region, {method_label(gated)}")
    _legend(ax_gate, fontsize=6, ncol=3)

    rec = summary[summary["quantity"] == "psnr_missing_above_floor"]
    rec = rec[rec["method"].isin([gated, "ablation-mean-dis"])]
    for (method, sequence), d in rec.groupby(["method", "region"], sort=False):
        style = "-" if method == gated else "--"
        ax_rec.plot(d["step"], d["value"], style, marker="o", markersize=3, color=colours.get(sequence),
                    label=f"{sequence}, {method_label(method)}")
    ax_rec.axhline(0, color="grey", linewidth=0.8)
    ax_rec.set(ylabel="PSNR above a flat image (dB)", title="(c) reconstruction of a missing sequence")
    _legend(ax_rec, fontsize=6, ncol=2)

    for method in ablation:
        d = dice[dice["method"] == method].groupby("step")["value"].mean()
        ax_abl.plot(d.index, 100 * d.values, marker="o", color=colours.get(method),
                    label=method_label(method))
    ax_abl.set(ylabel="Dice (%), mean of WT, TC, ET", title="(d) the ablation of Fig. 3a")
    _legend(ax_abl, fontsize=7)
    for ax in (ax_dice, ax_gate, ax_rec, ax_abl):
        _steps_axis(ax, steps)
    return fig
