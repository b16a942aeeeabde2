r"""Exact Shapley contributions of the four sequences to a segmentation score.

With all 15 non-empty subsets evaluated, each case and region defines a cooperative game on the
sequences :math:`N = \{\mathrm{FLAIR}, \mathrm{T1}, \mathrm{T1c}, \mathrm{T2}\}`: the worth
:math:`v(S)` of a subset :math:`S` is the Dice the model reaches from :math:`S` alone, and the empty set
is worth :math:`v(\emptyset) = 0` (no input, no segmentation). The Shapley value of sequence :math:`i` is
its marginal gain averaged over every order in which the sequences could arrive:

.. math::

    \phi_i(v) = \sum_{S \subseteq N \setminus \{i\}} \frac{|S|!\,(n - |S| - 1)!}{n!}
                \big[v(S \cup \{i\}) - v(S)\big], \qquad n = |N| = 4.

It is the one attribution that is *efficient* (:math:`\sum_i \phi_i = v(N)`, the values share out the
full-set Dice), *symmetric* (two sequences that are interchangeable in every subset get the same value),
gives a sequence that never changes the score nothing, and adds over games. With four players the sum
has eight terms per sequence, so it is computed exactly, never sampled.

Names: ``phi`` is :math:`\phi_i`, ``game`` holds :math:`v` over the :math:`2^n` subsets indexed by the
bit mask of their members (bit ``i`` for modality ``i`` of :data:`~mmdis.conventions.MODALITIES`).
Confidence intervals come from a seeded percentile bootstrap over cases (:func:`bootstrap_shapley`).
"""

from __future__ import annotations

from math import factorial

import numpy as np
import pandas as pd

from mmdis.conventions import MODALITIES, MODALITY_NAMES, SUBSETS, subset_name
from mmdis.evaluation.tidy import check_results

#: Subset name -> its availability mask, for the 15 subsets of :data:`~mmdis.conventions.SUBSETS`.
_MASKS = {subset_name(s): s for s in SUBSETS}


def _bits(mask) -> int:
    """The bit mask of an availability tuple: bit ``i`` set when modality ``i`` is present."""
    return sum(1 << i for i, present in enumerate(mask) if present)


def shapley_weights(n: int) -> np.ndarray:
    r"""The matrix ``W`` (``2**n``, ``n``) with :math:`\phi = v\,W` for a game ``v`` over bit-mask subsets.

    Row ``T`` holds :math:`+w(|T| - 1)` for each member ``i`` of ``T`` (the term where ``T = S \cup \{i\}``)
    and :math:`-w(|T|)` for each non-member (the term where ``T = S``), with
    :math:`w(s) = s!\,(n - s - 1)!/n!`.
    """
    w = [factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)]
    weights = np.zeros((2**n, n))
    for t in range(2**n):
        size = t.bit_count()
        for i in range(n):
            weights[t, i] = w[size - 1] if t >> i & 1 else -w[size]
    return weights


def shapley_values(game: np.ndarray) -> np.ndarray:
    """Exact Shapley values of games given over all ``2**n`` subsets.

    Args:
        game: ``(..., 2**n)``, the worth of each subset indexed by its bit mask; entry 0 (the empty set)
            is the game's baseline, and :math:`\\phi` depends only on differences, so any baseline works.

    Returns:
        ``(..., n)``: :math:`\\phi_i` per player, in bit order.

    Raises:
        ValueError: if the last axis is not a power of two of at least 2.
    """
    game = np.asarray(game, dtype=float)
    size = game.shape[-1]
    n = size.bit_length() - 1
    if size < 2 or size != 2**n:
        raise ValueError(f"a game over n players has 2**n subset values; got {size}")
    return game @ shapley_weights(n)


def case_shapley(df: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Each sequence's exact Shapley value per method, case and region, from a tidy result table.

    Args:
        df: tidy results (:mod:`mmdis.evaluation.tidy`) with ``metric`` rows for all 15 subsets of every
            (method, case, region) used; the empty subset counts as 0.
        metric: the score to share out (a fraction, e.g. Dice in [0, 1]).

    Returns:
        Columns ``method``, ``case``, ``region``, ``modality`` (display name, FLAIR, T1, T1c, T2),
        ``shapley`` (in the metric's units) and ``full`` (the score of all four, which the four values of
        a case and region sum to).

    Raises:
        ValueError: if a (method, case, region) lacks one of the 15 subsets, or ``df`` has no ``metric``.
    """
    d = check_results(df)
    d = d[(d["metric"] == metric) & d["subset"].isin(list(_MASKS))]
    if d.empty:
        raise ValueError(f"no {metric!r} rows for the 15 subsets")
    wide = d.pivot_table(index=["method", "case", "region"], columns="subset", values="value",
                         aggfunc="first", sort=False)
    incomplete = wide.columns.size < len(_MASKS) or wide.isna().any(axis=1).any()
    if incomplete:
        bad = wide.index[wide.reindex(columns=list(_MASKS)).isna().any(axis=1)][:3].tolist()
        raise ValueError(f"exact Shapley values need all 15 subsets; missing for e.g. {bad}")
    game = np.zeros((len(wide), 2 ** len(MODALITIES)))  # (cases x regions, 16), v(empty) = 0
    for name, mask in _MASKS.items():
        game[:, _bits(mask)] = wide[name].to_numpy()
    phi = shapley_values(game)  # (cases x regions, M)
    names = [MODALITY_NAMES[m] for m in MODALITIES]
    out = pd.DataFrame(phi, index=wide.index, columns=pd.Index(names, name="modality"))
    out = out.stack().rename("shapley").reset_index()
    full = wide[subset_name((True,) * len(MODALITIES))].rename("full").reset_index()
    return out.merge(full, on=["method", "case", "region"])


def bootstrap_shapley(per_case: pd.DataFrame, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> pd.DataFrame:
    """Mean Shapley value over cases with a percentile bootstrap confidence interval.

    Cases are resampled with replacement, the same draws for every sequence and region of a method, so
    the intervals of one bootstrap describe one resampled test set.

    Args:
        per_case: the output of :func:`case_shapley`.
        n_boot: bootstrap resamples.
        level: coverage of the interval (0.95: the 2.5 and 97.5 percentiles).
        seed: seeds ``numpy.random.default_rng``; the same seed gives the same intervals.

    Returns:
        Columns ``method``, ``region``, ``modality``, ``mean``, ``low``, ``high`` (metric units),
        ``cases`` and ``level``, in the order the rows first appear.
    """
    rows = []
    for method, d in per_case.groupby("method", sort=False):
        cases = pd.unique(d["case"])
        wide = d.pivot_table(index="case", columns=["region", "modality"], values="shapley", sort=False)
        wide = wide.loc[cases]  # (cases, regions x M)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(cases), size=(n_boot, len(cases)))
        means = wide.to_numpy()[draws].mean(axis=1)  # (n_boot, regions x M)
        low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
        for k, (region, modality) in enumerate(wide.columns):
            rows.append({"method": method, "region": region, "modality": modality,
                         "mean": float(wide.iloc[:, k].mean()), "low": float(low[k]), "high": float(high[k]),
                         "cases": len(cases), "level": level})
    return pd.DataFrame(rows)


def shapley_table(summary: pd.DataFrame, scale: float = 100.0, fmt: str = ".1f") -> pd.DataFrame:
    """A :func:`bootstrap_shapley` summary as text cells ``"mean [low, high]"`` (values times ``scale``),
    one row per method and sequence, one column per region, in the summary's order."""
    cells = summary.assign(cell=[f"{scale * m:{fmt}} [{scale * lo:{fmt}}, {scale * hi:{fmt}}]"
                                 for m, lo, hi in zip(summary["mean"], summary["low"], summary["high"])])
    wide = cells.pivot(index=["method", "modality"], columns="region", values="cell")
    order = pd.MultiIndex.from_frame(summary[["method", "modality"]].drop_duplicates())
    return wide.reindex(index=order, columns=list(pd.unique(summary["region"])))


def contribution_share(summary: pd.DataFrame, method: str, sequences: list[str], region: str) -> float:
    """The part (%) of ``method``'s full-set score in ``region`` that ``sequences`` receive together: their
    mean Shapley values over the sum of all four (efficiency makes that sum the full-set score); NaN when
    the full-set score is zero, where there is nothing to share."""
    d = summary[(summary["method"] == method) & (summary["region"] == region)].set_index("modality")["mean"]
    total = float(d.sum())
    return float(100 * d.loc[sequences].sum() / total) if total > 0 else float("nan")
