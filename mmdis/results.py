r"""The paper's published numbers beside ours, computed verdicts on its claims, and the figures of the
results notebooks (04 reconstruction, 05 robustness, 06 ablation).

Inputs are the tidy result table of :mod:`mmdis.evaluation.report` (``method, case, subset, region,
metric, value``) or one case's :class:`~mmdis.inference.SubsetPrediction`. A claim is judged
by :func:`verdict` from a difference :math:`\Delta` (reference minus competitor, Dice points or dB) and,
where one exists, a paired Wilcoxon p-value: ``"supported"`` if :math:`\Delta > \tau` (and
:math:`p < \alpha`), ``"not supported"`` if :math:`\Delta < -\tau` (and :math:`p < \alpha`), else
``"inconclusive"``. :math:`\tau` (``tol``) and :math:`\alpha` (``alpha``) are arguments. The verdicts
describe the run they are computed from: a barely trained model says nothing about the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmdis.conventions import MODALITIES, MODALITY_NAMES, REGIONS, SUBSETS, subset_dots, subset_name
from mmdis.evaluation.report import AVERAGE, DOT_COLUMNS, RESULT_COLUMNS, read_results, table2, wilcoxon_tests

#: Where :data:`PAPER_TABLE2` comes from.
PAPER_SOURCE = ("Chen et al., MICCAI 2019, Table 2: Dice (%) on the test split of the BRATS 2015 training "
                "set; the HeMIS and MLP-imputation columns are quoted there from Havaei et al., MICCAI 2016")
#: Column order of the rows of :data:`PAPER_TABLE2` (the paper's: Ours, HeMIS, MLP per region).
PAPER_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (m, r) for r in REGIONS for m in ("robustseg", "hemis", "imputation"))
#: The paper's Table 2, row by row: availability dots (FLAIR, T1, T1c, T2) and 9 Dice values (%).
PAPER_TABLE2: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("○○○●", (85.49, 58.48, 61.50, 58.66, 40.18, 37.32, 37.66, 20.31, 18.62)),
    ("○○●○", (71.86, 33.46, 2.04, 72.87, 44.55, 17.70, 70.22, 49.93, 32.92)),
    ("○●○○", (68.40, 33.22, 2.07, 50.00, 17.42, 10.52, 22.67, 4.67, 10.78)),
    ("●○○○", (83.02, 71.26, 63.81, 46.67, 37.45, 34.26, 28.30, 5.57, 15.90)),
    ("○○●●", (87.53, 67.59, 64.97, 78.46, 63.39, 49.38, 76.82, 65.38, 60.30)),
    ("○●●○", (74.59, 45.93, 1.99, 76.40, 55.06, 26.55, 73.95, 62.40, 40.93)),
    ("●●○○", (87.66, 80.28, 78.13, 60.17, 49.52, 48.97, 35.28, 22.26, 25.18)),
    ("○●○●", (87.87, 69.56, 66.88, 64.88, 47.26, 43.66, 41.05, 23.56, 26.37)),
    ("●○○●", (89.08, 82.10, 81.35, 63.51, 53.42, 52.41, 39.72, 23.19, 25.01)),
    ("●○●○", (88.01, 79.80, 81.13, 78.09, 66.12, 65.51, 76.62, 67.12, 66.19)),
    ("●●●○", (87.73, 80.88, 82.19, 80.68, 69.26, 69.34, 78.81, 71.30, 70.93)),
    ("●●○●", (89.07, 83.87, 80.40, 65.99, 57.76, 53.46, 43.04, 28.46, 28.34)),
    ("●○●●", (89.06, 82.78, 83.37, 79.47, 70.62, 70.45, 78.07, 70.52, 70.56)),
    ("○●●●", (88.26, 70.98, 67.85, 80.84, 66.60, 55.40, 78.56, 67.84, 64.81)),
    ("●●●●", (89.07, 83.15, 82.43, 81.19, 72.50, 71.46, 79.13, 75.37, 72.08)),
)
#: The "Average" row of Table 2 as published (method -> region -> Dice %).
PAPER_AVERAGES: dict[str, dict[str, float]] = {
    "robustseg": {"WT": 84.45, "TC": 69.19, "ET": 57.33},
    "hemis": {"WT": 68.22, "TC": 54.07, "ET": 43.86},
    "imputation": {"WT": 60.01, "TC": 47.09, "ET": 41.93},
}
#: Sec. 3, ablation study: subsets (of 15) where the full model is the best of the three variants. The bar
#: heights of Fig. 3a are not printed in the text, so they are not transcribed.
PAPER_ABLATION_WINS: dict[str, int] = {"WT": 10, "TC": 13, "ET": 11}
#: How the book names each method.
METHOD_LABELS: dict[str, str] = {"robustseg": "RobustSeg", "hemis": "HeMIS", "imputation": "imputation",
                                 "ablation-mean": "mean fusion", "ablation-mean-dis": "mean + dis."}
#: Contour colours of Fig. 2: whole tumour yellow, core red, enhancing blue.
REGION_COLOURS: dict[str, str] = {"WT": "yellow", "TC": "red", "ET": "deepskyblue"}
VERDICT_COLUMNS = ["claim", "region", "evidence", "verdict"]
_MASKS = {subset_name(s): s for s in SUBSETS}


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """The tidy table ``results_dir/results.csv`` written by :func:`mmdis.pipeline.reproduce`."""
    return read_results(Path(results_dir) / "results.csv")


def paper_results() -> pd.DataFrame:
    """:data:`PAPER_TABLE2` as a tidy table (one pseudo-case ``"paper"``, Dice as a fraction), so every
    function that takes our results takes the paper's too."""
    names = {subset_dots(s): subset_name(s) for s in SUBSETS}
    rows = [(m, "paper", names[dots], r, "dice", v / 100)
            for dots, values in PAPER_TABLE2 for (m, r), v in zip(PAPER_COLUMNS, values)]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 in the layout of :func:`~mmdis.evaluation.report.table2` (15 rows + Average)."""
    return table2(paper_results())


def _values(table: pd.DataFrame) -> pd.DataFrame:
    return table[[c for c in table.columns if c not in DOT_COLUMNS]].astype(float)


def _differences(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    values, out = _values(table), table[list(DOT_COLUMNS)].copy()
    for col in [c for c in values.columns if not c.startswith(f"{reference} ")]:
        region = col.rsplit(" ", 1)[1]
        out[f"{region} vs {col.rsplit(' ', 1)[0]}"] = values[f"{reference} {region}"] - values[col]
    return out


def compare_with_paper(ours: pd.DataFrame, paper: pd.DataFrame, reference: str = "robustseg") -> pd.DataFrame:
    """The paper's margins of ``reference`` over each baseline beside ours (absolute Dice on a phantom
    cannot be set against BraTS; margins can): dot columns, then ``"<region> vs <method> (paper)"`` and
    ``"... (ours)"`` for every margin both :func:`table2` outputs have, rows in the paper's order."""
    mine, theirs = _differences(ours, reference), _differences(paper, reference)
    out = theirs[list(DOT_COLUMNS)].copy()
    for col in theirs.columns.drop(list(DOT_COLUMNS)):
        if col in mine:
            out[f"{col} (paper)"], out[f"{col} (ours)"] = theirs[col], mine[col].reindex(theirs.index)
    return out


def margin_by_subset_size(df: pd.DataFrame, reference: str = "robustseg",
                          baselines: Sequence[str] = ("hemis", "imputation"),
                          metric: str = "dice") -> pd.DataFrame:
    """Columns ``modalities, region, method, margin``: the mean margin (points) of ``reference`` over each
    baseline among the subsets with 1, 2, 3 and 4 modalities."""
    values = _values(table2(df, metric)).drop(AVERAGE)
    size = pd.Series([sum(_MASKS[s]) for s in values.index], index=values.index)
    rows = [(k, r, m, float((values[f"{reference} {r}"] - values[f"{m} {r}"])[size == k].mean()))
            for r in REGIONS for m in baselines for k in sorted(set(size))
            if f"{m} {r}" in values and f"{reference} {r}" in values]
    return pd.DataFrame(rows, columns=["modalities", "region", "method", "margin"])


def verdict(difference: float, p_value: float | None = None, tol: float = 1.0, alpha: float = 0.05) -> str:
    """``"supported"``, ``"not supported"`` or ``"inconclusive"`` (module docstring); a NaN difference or
    p-value (a test that could not run) is inconclusive."""
    if not np.isfinite(difference) or abs(difference) <= tol:
        return "inconclusive"
    if p_value is not None and not p_value < alpha:
        return "inconclusive"
    return "supported" if difference > 0 else "not supported"


def _paired(df: pd.DataFrame, hi: str, lo: str, region: str, avg: pd.Series, tol: float, alpha: float):
    """(evidence, verdict) for "``hi`` has a higher 15-subset average than ``lo`` in ``region``"."""
    tests = wilcoxon_tests(df[df["method"].isin([hi, lo])], reference=hi)
    p, n = tests.set_index(["region", "method"]).loc[(region, lo), ["p_value", "n"]]
    a, b = avg[f"{hi} {region}"], avg[f"{lo} {region}"]
    evidence = f"{a:.1f} vs {b:.1f} (Δ {a - b:+.1f}; Wilcoxon p = {p:.2g}, n = {int(n)})"
    return evidence, verdict(a - b, p, tol, alpha)


def claim_verdicts(df: pd.DataFrame, reference: str = "robustseg",
                   baselines: Sequence[str] = ("hemis", "imputation"), tol: float = 1.0,
                   alpha: float = 0.05) -> pd.DataFrame:
    """The robustness claims of Sec. 3 (Table 2, Fig. 2) judged on a tidy Dice table.

    Per region: ``reference`` beats each baseline on the 15-subset average (Wilcoxon over (case, subset)
    pairs); it beats both in every subset (smallest margin); its margin grows as modalities go missing
    (mean margin with one modality minus with four). Then: FLAIR and T2 are the best single inputs for
    WT, T1c for ET (worst expected minus best other single modality).

    Returns:
        Columns ``claim, region, evidence, verdict``.
    """
    d = df[(df["metric"] == "dice") & df["method"].isin([reference, *baselines])]
    values = _values(table2(d))
    avg, per = values.loc[AVERAGE], values.drop(AVERAGE)
    margins = margin_by_subset_size(d, reference, baselines).set_index(["region", "method", "modalities"])
    ref, rows = _label(reference), []
    for r in REGIONS:
        for m in baselines:
            rows.append((f"{ref} beats {_label(m)} on the 15-subset average", r,
                         *_paired(d, reference, m, r, avg, tol, alpha)))
        lead = per[f"{reference} {r}"] - per[[f"{m} {r}" for m in baselines]].max(axis=1)
        rows.append((f"{ref} beats every baseline in every subset", r,
                     f"best in {int((lead > 0).sum())} of {len(lead)}; smallest margin {lead.min():+.1f} "
                     f"({lead.idxmin()})", verdict(lead.min(), None, tol)))
        for m in baselines:
            one, four = (margins.loc[(r, m, k), "margin"] for k in (1, 4))
            rows.append((f"the margin over {_label(m)} grows as modalities go missing", r,
                         f"{one:+.1f} with one modality, {four:+.1f} with four",
                         verdict(one - four, None, tol)))
    singles = per.loc[[MODALITY_NAMES[m] for m in MODALITIES]]
    for r, best in (("WT", ["FLAIR", "T2"]), ("ET", ["T1c"])):
        scores = singles[f"{reference} {r}"]
        gap = scores[best].min() - scores.drop(best).max()
        rows.append((f"{' and '.join(best)} {'are' if len(best) > 1 else 'is'} the most informative alone "
                     f"({ref})", r, ", ".join(f"{s} {v:.1f}" for s, v in scores.sort_values()[::-1].items()),
                     verdict(gap, None, tol)))
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def ablation_verdicts(df: pd.DataFrame, tol: float = 1.0, alpha: float = 0.05) -> pd.DataFrame:
    """The ablation claims of Fig. 3a per region: disentanglement improves mean fusion, gating improves it
    further (averages, as :func:`claim_verdicts`), and the full model is the best of the three in most
    subsets: ``k`` strict wins of ``n`` support it if ``k > n/2``, contradict it if ``k <= n/3`` (chance for
    one of three).

    Returns:
        Columns ``claim, region, evidence, verdict``.
    """
    names = ("ablation-mean", "ablation-mean-dis", "robustseg")
    d = df[(df["metric"] == "dice") & df["method"].isin(names)]
    values = _values(table2(d))
    avg, per = values.loc[AVERAGE], values.drop(AVERAGE)
    rows = []
    for r in REGIONS:
        for lo, hi, claim in ((0, 1, "disentanglement improves mean fusion"),
                              (1, 2, "gating improves mean fusion + disentanglement")):
            rows.append((claim, r, *_paired(d, names[hi], names[lo], r, avg, tol, alpha)))
        n = len(per)
        wins = int((per[f"robustseg {r}"] > per[[f"{m} {r}" for m in names[:2]]].max(axis=1)).sum())
        rows.append(("the full model is the best variant in most subsets", r,
                     f"best in {wins} of {n} (paper: {PAPER_ABLATION_WINS[r]} of 15)",
                     "supported" if wins > n / 2 else "not supported" if wins <= n / 3 else "inconclusive"))
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def summarize_verdicts(verdicts: pd.DataFrame) -> str:
    """One sentence counting the verdicts of a verdict table, for the prose of a notebook."""
    n = verdicts["verdict"].value_counts()
    return (f"Of {len(verdicts)} checks, {n.get('supported', 0)} supported, {n.get('not supported', 0)} not "
            f"supported and {n.get('inconclusive', 0)} inconclusive.")


def recon_summary(df: pd.DataFrame, method: str = "robustseg") -> pd.DataFrame:
    """Columns ``subset, modality, input, modalities, psnr, ssim``: mean PSNR (dB) and SSIM over cases of
    each modality rebuilt from each subset, whether it was an input, and the subset size (Table-2 order).

    Raises:
        ValueError: if ``method`` has no reconstruction rows.
    """
    d = df[(df["method"] == method) & df["metric"].isin(["psnr", "ssim"])]
    if d.empty:
        raise ValueError(f"{method!r} has no psnr/ssim rows; methods with them: "
                         f"{sorted(set(df.loc[df['metric'] == 'psnr', 'method']))}")
    out = d.groupby(["subset", "region", "metric"])["value"].mean().unstack("metric").reset_index()
    out = out.rename(columns={"region": "modality"}).rename_axis(columns=None)
    out["input"] = [mod in s.split("+") for s, mod in zip(out["subset"], out["modality"])]
    out["modalities"] = [sum(_MASKS[s]) for s in out["subset"]]
    order = {"subset": list(_MASKS), "modality": [MODALITY_NAMES[m] for m in MODALITIES]}
    out = out.sort_values(["subset", "modality"], key=lambda c: c.map(order[c.name].index))
    return out[["subset", "modality", "input", "modalities", "psnr", "ssim"]].reset_index(drop=True)


def flat_image_floor(cache_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """Columns ``modality, psnr, ssim``: a flat image (0, the brain mean after z-scoring) scored against
    each modality, averaged over a split's cases. A reconstruction must beat it to carry information."""
    from mmdis.data.cache import Cache
    from mmdis.metrics import reconstruction_metrics

    cache, rows = Cache.open(cache_dir), []
    for case_id in cache.case_ids(split):
        case = cache.load(case_id, mmap=False)
        rows += [{"modality": MODALITY_NAMES[m],
                  **reconstruction_metrics(np.zeros_like(case.image[i]), case.image[i], case.mask)}
                 for i, m in enumerate(MODALITIES) if case.available[i]]
    return pd.DataFrame(rows).groupby("modality", sort=False).mean().reset_index()


def recon_verdicts(summary: pd.DataFrame, floor: pd.DataFrame, tol: float = 0.5) -> pd.DataFrame:
    """Fig. 3b's claim per modality: rebuilt from the subsets *without* it (mean PSNR of
    :func:`recon_summary`), it beats the flat image of :func:`flat_image_floor` by more than ``tol`` dB.

    Returns:
        Columns ``claim, modality, evidence, verdict``.
    """
    flat, rows = floor.set_index("modality")["psnr"], []
    for mod, g in summary.groupby("modality", sort=False):
        without, with_ = g.loc[~g["input"], "psnr"].mean(), g.loc[g["input"], "psnr"].mean()
        rows.append(("rebuilt without its own image, it beats a flat image", mod,
                     f"{without:.1f} dB without it, {with_:.1f} dB with it, flat image {flat[mod]:.1f} dB",
                     verdict(without - flat[mod], None, tol)))
    return pd.DataFrame(rows, columns=["claim", "modality", "evidence", "verdict"])


def predict_case(model, case, subsets: Sequence[str], profile: str = "smoke", with_recon: bool = False,
                 roi_size: int | None = None):
    """A :class:`~mmdis.inference.SubsetPrediction` of a cached case (``image (M, D, H, W)``,
    ``available (M,)``, ``mask (D, H, W)``) for named subsets (``"T1+T1c"``), with the window of
    :attr:`mmdis.profiles.Profile.eval_window` of ``profile`` (or ``roi_size``): ``labels (S, D, H, W)``
    0 outside the brain as in the evaluation, and ``recon (S, M, D, H, W)`` if ``with_recon``."""
    from mmdis.inference import predict_subsets
    from mmdis.profiles import get_profile

    roi, overlap = get_profile(profile).eval_window
    unknown = [s for s in subsets if s not in _MASKS]
    if unknown:
        raise ValueError(f"unknown subsets {unknown}; names look like {list(_MASKS)[-1]!r}")
    pred = predict_subsets(model, case.image, case.available, subsets=[_MASKS[s] for s in subsets],
                           roi_size=roi_size or roi, overlap=overlap,
                           with_recon=with_recon)
    pred.labels[:, ~np.asarray(case.mask, bool)] = 0
    return pred


def _grey(ax, plane: np.ndarray, reference: np.ndarray | None = None) -> None:
    """A slice in grey, windowed on the 1st-99th percentile of ``reference``'s non-zero pixels."""
    ref = plane if reference is None else reference
    lo, hi = np.percentile(ref[ref != 0], [1, 99]) if (ref != 0).any() else (0.0, 1.0)
    ax.imshow(plane, cmap="gray", origin="lower", vmin=lo, vmax=max(hi, lo + 1e-6), interpolation="nearest")
    ax.set(xticks=[], yticks=[])


def plot_overlays(case, predictions: dict, slice_index: int | None = None) -> Figure:
    """Fig. 2: contours of WT (yellow), TC (red) and ET (blue) over FLAIR on one axial slice (default: the
    most tumour), the ground truth then one column per subset, one row per method.

    Args:
        case: ``image (M, D, H, W)``, canonical ``label (D, H, W)``; predictions: method ->
            :class:`~mmdis.inference.SubsetPrediction`, the same subsets for each.
    """
    from mmdis.viz import best_slice

    z = best_slice(case.label) if slice_index is None else slice_index
    names = next(iter(predictions.values())).names()
    fig = Figure(figsize=(2.1 * (len(names) + 1), 2.3 * len(predictions) + 0.3), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(predictions), len(names) + 1))
    for row, (method, pred) in zip(axes, predictions.items()):
        for ax, title, lab in zip(row, ["ground truth", *names], [case.label, *pred.labels]):
            _grey(ax, case.image[0][:, :, z].T)
            for region, classes in REGIONS.items():
                mask = np.isin(lab[:, :, z].T, classes)
                if mask.any() and not mask.all():
                    ax.contour(mask.astype(float), levels=[0.5], colors=[REGION_COLOURS[region]])
            ax.set_title(title, fontsize=8)
        row[0].set_ylabel(_label(method), fontsize=9)
    return fig


def plot_reconstruction_grid(case, prediction, modalities: Sequence[str] = ("flair", "t2"),
                             slice_index: int | None = None) -> Figure:
    r"""Fig. 3b: the real images (first row), then :math:`\hat x_i = D^r_i(z, a_i)` from each subset (one
    row per subset, one column per modality) on one axial slice, each column in the real image's window.

    Raises:
        ValueError: if ``prediction.recon`` is ``None``.
    """
    from mmdis.viz import best_slice

    if prediction.recon is None:
        raise ValueError("the prediction has no reconstructions: use with_recon=True on a model with them")
    z = best_slice(case.label) if slice_index is None else slice_index
    names, idx = prediction.names(), [MODALITIES.index(m) for m in modalities]
    fig = Figure(figsize=(2.2 * len(idx) + 0.8, 2.1 * (len(names) + 1)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names) + 1, len(idx)))
    for col, i in enumerate(idx):
        real, shown = case.image[i][:, :, z].T, MODALITY_NAMES[MODALITIES[i]]
        _grey(axes[0, col], real)
        axes[0, col].set_title(f"real {shown}", fontsize=9)
        for row, (name, subset) in enumerate(zip(names, prediction.subsets), start=1):
            _grey(axes[row, col], prediction.recon[row - 1, i][:, :, z].T, reference=real)
            axes[row, col].set_title(f"from {name}" + ("" if subset[i] else f" (no {shown})"), fontsize=7,
                                     color="black" if subset[i] else "firebrick")
    return fig


def plot_recon_heatmap(summary: pd.DataFrame) -> Figure:
    """PSNR and SSIM of :func:`recon_summary` as heatmaps (subsets x modalities); cells of modalities that
    were inputs are framed, the others were rebuilt without their own image."""
    import seaborn as sns
    from matplotlib.patches import Rectangle

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

