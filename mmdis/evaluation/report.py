"""Result tables, significance tests and the ablation summary, from one tidy table of per-case metrics.

Every evaluation writes rows of a long ("tidy") table with the columns :data:`RESULT_COLUMNS`:

==========  ===================================================================================
column      meaning
==========  ===================================================================================
method      model name, e.g. ``"robustseg"``, ``"hemis"``, ``"ablation-mean"``
case        case id (read back as a string, so ``"001"`` stays ``"001"``)
subset      available modalities as :func:`mmdis.conventions.subset_name` spells them (``"FLAIR+T1c"``)
region      ``WT``, ``TC``, ``ET``; for reconstruction rows the reconstructed modality
metric      ``dice``, ``sensitivity``, ``precision``, ``hd95``, ``psnr``, ``ssim``, ...
value       the number, in the metric's own units (Dice as a fraction in [0, 1], HD95 in mm)
==========  ===================================================================================

Aggregation follows the field's practice and the paper's Table 2: the mean over test cases per subset, then
the plain mean of those 15 subset means (the "Average" row).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mmdis.conventions import MODALITIES, MODALITY_NAMES, REGIONS, SUBSETS, subset_dots, subset_name

RESULT_COLUMNS: tuple[str, ...] = ("method", "case", "subset", "region", "metric", "value")
#: Metrics that are fractions and are shown as percentages in the tables (84.45 for a Dice of 0.8445).
PERCENT_METRICS = frozenset({"dice", "sensitivity", "precision"})
#: Subset names in the row order of the paper's Table 2.
SUBSET_ORDER: tuple[str, ...] = tuple(subset_name(s) for s in SUBSETS)
#: The dot columns of Table 2 (FLAIR, T1, T1c, T2), one per modality.
DOT_COLUMNS: tuple[str, ...] = tuple(MODALITY_NAMES[m] for m in MODALITIES)
#: Label of the 15-subset mean row.
AVERAGE = "Average"
#: Columns of :func:`wilcoxon_tests`.
WILCOXON_COLUMNS: tuple[str, ...] = (
    "region", "method", "n", "mean_difference", "statistic", "p_value", "note",
)
#: The paper's ablation (Fig. 3a): mean fusion, mean fusion + disentanglement, the full model.
ABLATION_METHODS: tuple[str, ...] = ("ablation-mean", "ablation-mean-dis", "robustseg")
_DOTS = {name: subset_dots(s) for name, s in zip(SUBSET_ORDER, SUBSETS)}
_STRING_COLUMNS = ("method", "case", "subset", "region", "metric")


def check_results(df: pd.DataFrame) -> pd.DataFrame:
    """Validate a tidy result table; return a copy with string keys and float values.

    Raises:
        ValueError: if a column is missing, a subset is not one of the 15 names, a value is not numeric,
            or a (method, case, subset, region, metric) key occurs twice (it would be double-counted).
    """
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"result table lacks columns {missing}; expected {list(RESULT_COLUMNS)}")
    out = df.loc[:, list(RESULT_COLUMNS)].copy()
    for c in _STRING_COLUMNS:
        out[c] = out[c].astype(str)
    unknown = sorted(set(out["subset"]) - set(SUBSET_ORDER))
    if unknown:
        raise ValueError(f"unknown subsets {unknown}; subsets are named like {SUBSET_ORDER[-1]!r}")
    try:
        out["value"] = pd.to_numeric(out["value"]).astype(float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"column 'value' must be numeric: {err}") from None
    dup = out.duplicated(list(_STRING_COLUMNS), keep=False)
    if dup.any():
        raise ValueError(f"{int(dup.sum())} rows repeat a key, e.g.\n{out[dup].head(3).to_string()}")
    return out.reset_index(drop=True)


def metric_rows(metrics: dict[str, dict[str, float]], method: str, case: str,
                subset: str | Sequence[bool]) -> list[dict]:
    """Tidy rows from ``{region: {metric: value}}``.

    That is what :func:`~mmdis.metrics.segmentation_metrics` returns; ``subset`` is a name or an
    availability mask.
    """
    name = subset if isinstance(subset, str) else subset_name(tuple(subset))
    return [{"method": method, "case": str(case), "subset": name, "region": region, "metric": metric,
             "value": float(value)}
            for region, values in metrics.items() for metric, value in values.items()]


def _atomic_write_text(path: Path, text: str) -> None:
    # Write beside the target and rename, so a reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate and write a tidy result table as CSV, atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    _atomic_write_text(path, check_results(df).to_csv(index=False))
    return path


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV written by :func:`write_results` (keys as strings, values as floats) and validate it."""
    df = pd.read_csv(path, dtype={c: str for c in _STRING_COLUMNS}, keep_default_na=False,
                     na_values={"value": ["", "nan", "NaN"]})
    return check_results(df)


def _ordered(values: Iterable[str], preferred: Sequence[str] = ()) -> list[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def _region_order(regions: Iterable[str]) -> list[str]:
    preferred = [*REGIONS, *MODALITIES, *MODALITY_NAMES.values()]
    return _ordered(regions, preferred)


def _metric_rows(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    df = check_results(df)
    d = df[df["metric"] == metric]
    if d.empty:
        raise ValueError(f"no rows with metric {metric!r}; the table has {sorted(set(df['metric']))}")
    return d


def _subset_means(d: pd.DataFrame, metric: str, percent: bool | None) -> tuple[pd.DataFrame, bool]:
    """Mean over cases of one metric's rows: rows subset (Table 2 order, present ones only), columns
    (method, region)."""
    percent = metric in PERCENT_METRICS if percent is None else percent
    scale = 100.0 if percent else 1.0
    means = d.groupby(["subset", "method", "region"], sort=False)["value"].mean() * scale
    wide = means.unstack(["method", "region"])
    rows = [s for s in SUBSET_ORDER if s in wide.index]
    methods = _ordered(d["method"])
    regions = _region_order(d["region"])
    cols = [(m, r) for m in methods for r in regions if (m, r) in wide.columns]
    return wide.loc[rows, cols], percent


def table2(df: pd.DataFrame, metric: str = "dice", percent: bool | None = None) -> pd.DataFrame:
    """The paper's Table 2: one row per modality subset, one column per method and region.

    Layout (flat columns, so the table writes to CSV and Markdown as it is):

    - index ``subset``: the subset names present in ``df``, in the paper's row order (T2, T1c, T1, FLAIR,
      pairs, triples, all four), then ``"Average"``; a subset absent from the data (e.g. a dataset with
      two modalities) is simply not a row;
    - columns ``FLAIR``, ``T1``, ``T1c``, ``T2``: ``"●"`` if the modality is available, ``"○"`` if not
      (empty in the Average row);
    - then one column ``"<method> <region>"`` (e.g. ``"robustseg WT"``) per method (in order of first
      appearance in ``df``) and region (WT, TC, ET, then others): the mean of ``metric`` over cases.

    The Average row is the mean of the subset rows above it (NaN cells skipped), i.e. the 15-subset average
    when all 15 are present.

    Args:
        df: tidy result table (module docstring).
        metric: which metric to tabulate.
        percent: show values x 100; by default for :data:`PERCENT_METRICS` only.

    Returns:
        The table; ``table.attrs`` records ``metric``, ``percent`` and ``cases`` (method -> number of
        distinct cases), for captions.

    Raises:
        ValueError: if ``df`` is not a valid result table or has no row of ``metric``.
    """
    d = _metric_rows(df, metric)
    means, percent = _subset_means(d, metric, percent)
    values = means.copy()
    values.columns = [f"{m} {r}" for m, r in means.columns]
    values.loc[AVERAGE] = values.mean(axis=0)
    dots = pd.DataFrame(
        {name: [_DOTS[s][i] for s in means.index] + [""] for i, name in enumerate(DOT_COLUMNS)},
        index=values.index,
    )
    table = pd.concat([dots, values], axis=1)
    table.index.name = "subset"
    cases = d.groupby("method", sort=False)["case"].nunique()
    table.attrs = {"metric": metric, "percent": percent, "cases": {m: int(n) for m, n in cases.items()}}
    return table


def _value_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in DOT_COLUMNS]


def _format_markdown(table: pd.DataFrame, floatfmt: str) -> str:
    # Fallback for when tabulate is missing: a GitHub pipe table, numbers right-aligned.
    header = [str(table.index.name or ""), *map(str, table.columns)]
    numeric = [False] + [c in _value_columns(table) for c in table.columns]
    body = [[str(idx)] + ["" if isinstance(v, float) and np.isnan(v) else
                          format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in row]
            for idx, row in zip(table.index, table.itertuples(index=False))]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def table2_markdown(table: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A :func:`table2` as a Markdown pipe table (values with ``floatfmt``, empty cells for NaN)."""
    try:
        import tabulate  # noqa: F401  (DataFrame.to_markdown needs it)
    except ImportError:
        return _format_markdown(table, floatfmt)
    # tabulate leaves NaN as "nan"; None is what it treats as missing.
    cells = table.astype(object).where(table.notna(), None)
    return cells.to_markdown(floatfmt=floatfmt, missingval="") + "\n"


def write_table2(table: pd.DataFrame, path: str | os.PathLike, floatfmt: str = ".2f") -> tuple[Path, Path]:
    """Write a :func:`table2` as ``<path>.csv`` and ``<path>.md`` (atomically); returns both paths."""
    path = Path(path)
    csv, md = path.with_suffix(".csv"), path.with_suffix(".md")
    _atomic_write_text(csv, table.to_csv())
    _atomic_write_text(md, table2_markdown(table, floatfmt))
    return csv, md


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
    d = _metric_rows(df, metric)
    methods = _ordered(d["method"])
    if reference not in methods:
        raise ValueError(f"reference method {reference!r} has no {metric!r} rows; methods: {methods}")
    wide = d.set_index(["region", "case", "subset", "method"])["value"].unstack("method")
    rows = []
    for region in _region_order(d["region"]):
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


def ablation_summary(df: pd.DataFrame, methods: Sequence[str] = ABLATION_METHODS,
                     metric: str = "dice") -> pd.DataFrame:
    """Per method and region: the subset-average score and the number of subsets where it is best (Fig. 3a).

    A subset counts for a method when its case-mean equals the highest among ``methods`` on that subset;
    tied methods all count it. Only subsets that every method has are compared.

    Args:
        df: tidy result table.
        methods: the variants to compare, in report order.
        metric: the metric (higher is better; do not pass HD95).

    Returns:
        Columns ``method, region, average`` (percent for :data:`PERCENT_METRICS`), ``wins``, ``subsets``
        (the number compared), one row per method and region.

    Raises:
        ValueError: if a method has no rows of ``metric``.
    """
    means, _ = _subset_means(_metric_rows(df, metric), metric, None)
    present = set(means.columns.get_level_values("method"))
    absent = [m for m in methods if m not in present]
    if absent:
        raise ValueError(f"methods {absent} have no {metric!r} rows; present: {sorted(present)}")
    regions = _region_order(means.columns.get_level_values("region"))
    rows = []
    for region in regions:
        missing = pd.Series(np.nan, index=means.index)
        scores = pd.DataFrame({m: means.get((m, region), missing) for m in methods})  # (subsets, methods)
        compared = scores.dropna()
        best = compared.eq(compared.max(axis=1), axis=0)  # (subsets, methods) bool
        for m in methods:
            rows.append({"method": m, "region": region, "average": float(scores[m].mean()),
                         "wins": int(best[m].sum()), "subsets": len(compared)})
    return pd.DataFrame(rows, columns=["method", "region", "average", "wins", "subsets"])


def plot_table2_heatmap(table: pd.DataFrame, ax=None, cmap: str = "viridis", fmt: str = ".1f"):
    """Heatmap of a :func:`table2`: subsets (with their dots) as rows, method/region as columns, annotated.

    Args:
        table: output of :func:`table2` (the Average row is kept as the last row).
        ax: matplotlib axes to draw on; a new figure is made when ``None``.
        cmap: colour map name.
        fmt: number format of the annotations.

    Returns:
        The matplotlib figure (nothing is shown).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    values = table[_value_columns(table)].astype(float)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * values.shape[1] + 3.0, 0.35 * values.shape[0] + 1.5))
    labels = [f"{_DOTS[s]}  {s}" if s in _DOTS else str(s) for s in values.index]
    metric = table.attrs.get("metric", "")
    unit = " (%)" if table.attrs.get("percent") else ""
    sns.heatmap(values, annot=True, fmt=fmt, cmap=cmap, ax=ax, yticklabels=labels,
                cbar_kws={"label": f"{metric}{unit}"})
    ax.set_xlabel("method / region")
    ax.set_ylabel("available modalities (FLAIR, T1, T1c, T2)")
    return ax.figure
