r"""Paired significance tests on the tidy result table: Wilcoxon signed-rank of one method against others.

For a reference method and another one, the pairs are the (case, subset) cells both have, and the test
asks whether the differences :math:`d_i = x^{\mathrm{ref}}_i - x^{\mathrm{other}}_i` are symmetric about 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from mmdis.evaluation.tidy import first_seen, region_order, select_metric

#: Columns of :func:`wilcoxon_tests`.
WILCOXON_COLUMNS: tuple[str, ...] = (
    "region", "method", "n", "mean_difference", "statistic", "p_value", "note",
)


def wilcoxon_tests(df: pd.DataFrame, reference: str = "robustseg", metric: str = "dice",
                   min_pairs: int = 6) -> pd.DataFrame:
    r"""Paired two-sided Wilcoxon signed-rank tests of ``reference`` against every other method.

    For each region and each other method the pairs are the (case, subset) cells both methods have; the
    test (``scipy.stats.wilcoxon``, zero differences dropped as in Wilcoxon's original procedure) asks
    whether the differences :math:`d_i = x^{\mathrm{ref}}_i - x^{\mathrm{other}}_i` are symmetric about 0.
    Note that the 15 subsets of one case are not independent samples; the p-value is descriptive.

    Args:
        df: tidy result table.
        reference: the method every other one is compared with.
        metric: the metric to compare.
        min_pairs: fewer pairs than this give NaN (6 is the smallest n for which an exact two-sided test can
            reach p < 0.05).

    Returns:
        Columns ``region, method, n, mean_difference, statistic, p_value, note``; ``mean_difference`` is
        the mean of :math:`d_i` in the metric's units (positive: the reference is higher); ``note`` says why
        a test was not run (``"fewer than 6 pairs"``) or is trivial (``"all differences zero"``: p = 1).

    Raises:
        ValueError: if ``reference`` has no rows of ``metric``.
    """
    d = select_metric(df, metric)
    methods = first_seen(d["method"])
    if reference not in methods:
        raise ValueError(f"reference method {reference!r} has no {metric!r} rows; methods: {methods}")
    wide = d.set_index(["region", "case", "subset", "method"])["value"].unstack("method")
    rows = []
    for region in region_order(d["region"]):
        per_region = wide.xs(region, level="region")
        for method in methods:
            if method == reference:
                continue
            pair = per_region[[reference, method]].dropna()
            diff = (pair[reference] - pair[method]).to_numpy()
            row = {"region": region, "method": method, "n": len(pair),
                   "mean_difference": float(diff.mean()) if len(diff) else np.nan,
                   "statistic": np.nan, "p_value": np.nan, "note": ""}
            if len(pair) < min_pairs:
                row["note"] = f"fewer than {min_pairs} pairs"
            elif not np.any(diff):
                row.update(statistic=0.0, p_value=1.0, note="all differences zero")
            else:
                res = stats.wilcoxon(pair[reference], pair[method], zero_method="wilcox",
                                     alternative="two-sided")
                row.update(statistic=float(res.statistic), p_value=float(res.pvalue))
            rows.append(row)
    return pd.DataFrame(rows, columns=list(WILCOXON_COLUMNS))
