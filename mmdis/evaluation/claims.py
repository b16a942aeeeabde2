r"""Computed verdicts on the paper's claims (Sec. 3: Table 2, Fig. 2, Fig. 3a, Fig. 3b).

Inputs are the tidy result table of :mod:`mmdis.evaluation.tidy` (``method, case, subset, region, metric,
value``). A claim is judged by :func:`verdict` from a difference :math:`\Delta` (reference minus
competitor, Dice points or dB) and, where one exists, a paired Wilcoxon p-value: ``"supported"`` if
:math:`\Delta > \tau` (and :math:`p < \alpha`), ``"not supported"`` if :math:`\Delta < -\tau` (and
:math:`p < \alpha`), else ``"inconclusive"``. :math:`\tau` (``tol``) and :math:`\alpha` (``alpha``) are
arguments. The verdicts describe the run they are computed from: a barely trained model says nothing about
the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmdis.conventions import MODALITIES, MODALITY_NAMES, REGIONS
from mmdis.data.cache import Cache
from mmdis.evaluation.paper import PAPER_ABLATION_WINS
from mmdis.evaluation.stats import wilcoxon_tests
from mmdis.evaluation.tables import AVERAGE, margin_by_subset_size, table2, table2_values
from mmdis.metrics import reconstruction_metrics
from mmdis.plotting.base import method_label

VERDICT_COLUMNS = ["claim", "region", "evidence", "verdict"]


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
    values = table2_values(table2(d))
    avg, per = values.loc[AVERAGE], values.drop(AVERAGE)
    margins = margin_by_subset_size(d, reference, baselines).set_index(["region", "method", "modalities"])
    ref, rows = method_label(reference), []
    for r in REGIONS:
        for m in baselines:
            rows.append((f"{ref} beats {method_label(m)} on the 15-subset average", r,
                         *_paired(d, reference, m, r, avg, tol, alpha)))
        lead = per[f"{reference} {r}"] - per[[f"{m} {r}" for m in baselines]].max(axis=1)
        rows.append((f"{ref} beats every baseline in every subset", r,
                     f"best in {int((lead > 0).sum())} of {len(lead)}; smallest margin {lead.min():+.1f} "
                     f"({lead.idxmin()})", verdict(lead.min(), None, tol)))
        for m in baselines:
            one, four = (margins.loc[(r, m, k), "margin"] for k in (1, 4))
            rows.append((f"the margin over {method_label(m)} grows as modalities go missing", r,
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
    values = table2_values(table2(d))
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


def flat_image_floor(cache_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """Columns ``modality, psnr, ssim``: a flat image (0, the brain mean after z-scoring) scored against
    each modality, averaged over a split's cases. A reconstruction must beat it to carry information."""
    cache, rows = Cache.open(cache_dir), []
    for case_id in cache.case_ids(split):
        case = cache.load(case_id, mmap=False)
        rows += [{"modality": MODALITY_NAMES[m],
                  **reconstruction_metrics(np.zeros_like(case.image[i]), case.image[i], case.mask)}
                 for i, m in enumerate(MODALITIES) if case.available[i]]
    return pd.DataFrame(rows).groupby("modality", sort=False).mean().reset_index()


def recon_verdicts(summary: pd.DataFrame, floor: pd.DataFrame, tol: float = 0.5) -> pd.DataFrame:
    """Fig. 3b's claim per modality: rebuilt from the subsets *without* it (mean PSNR of
    :func:`~mmdis.evaluation.tables.recon_summary`), it beats the flat image of :func:`flat_image_floor`
    by more than ``tol`` dB.

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
