"""Result tables from the tidy table of :mod:`mmdis.evaluation.tidy`: the paper's Table 2, the ablation
summary (Fig. 3a), the reconstruction summary (Fig. 3b) and the margins by number of modalities.

Aggregation follows the field's practice and the paper's Table 2: the mean over test cases per subset, then
the plain mean of those 15 subset means (the "Average" row).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmdis.conventions import MODALITIES, MODALITY_NAMES, REGIONS, SUBSETS, subset_dots, subset_name
from mmdis.evaluation.tidy import SUBSET_ORDER, first_seen, region_order, select_metric
from mmdis.metrics import MetricConfig
from mmdis.runtime.files import write_text

#: Metrics that are fractions and are shown as percentages in the tables (84.45 for a Dice of 0.8445).
PERCENT_METRICS = frozenset({"dice", "sensitivity", "precision"})
#: The dot columns of Table 2 (FLAIR, T1, T1c, T2), one per modality.
DOT_COLUMNS: tuple[str, ...] = tuple(MODALITY_NAMES[m] for m in MODALITIES)
#: Label of the 15-subset mean row.
AVERAGE = "Average"
#: The paper's ablation (Fig. 3a): mean fusion, mean fusion + disentanglement, the full model.
ABLATION_METHODS: tuple[str, ...] = ("ablation-mean", "ablation-mean-dis", "robustseg")
_DOTS = {name: subset_dots(s) for name, s in zip(SUBSET_ORDER, SUBSETS)}
_MASKS = {subset_name(s): s for s in SUBSETS}


def _subset_means(d: pd.DataFrame, metric: str, percent: bool | None) -> tuple[pd.DataFrame, bool]:
    """Mean over cases of one metric's rows: rows subset (Table 2 order, present ones only), columns
    (method, region)."""
    percent = metric in PERCENT_METRICS if percent is None else percent
    scale = 100.0 if percent else 1.0
    means = d.groupby(["subset", "method", "region"], sort=False)["value"].mean() * scale
    wide = means.unstack(["method", "region"])
    rows = [s for s in SUBSET_ORDER if s in wide.index]
    methods = first_seen(d["method"])
    regions = region_order(d["region"])
    cols = [(m, r) for m in methods for r in regions if (m, r) in wide.columns]
    return wide.loc[rows, cols], percent


def table2(df: pd.DataFrame, metric: str = "dice", percent: bool | None = None,
           definitions: MetricConfig | str | None = None) -> pd.DataFrame:
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
        df: tidy result table (:mod:`mmdis.evaluation.tidy`).
        metric: which metric to tabulate.
        percent: show values x 100; by default for :data:`PERCENT_METRICS` only.
        definitions: how the scores were computed (HD95 definition, empty-mask convention, ET rule): a
            :class:`~mmdis.metrics.MetricConfig` or its :meth:`~mmdis.metrics.MetricConfig.describe` line;
            recorded as ``attrs["definitions"]`` and written under the Markdown table.

    Returns:
        The table; ``table.attrs`` records ``metric``, ``percent``, ``cases`` (method -> number of
        distinct cases) and, if given, ``definitions``, for captions.

    Raises:
        ValueError: if ``df`` is not a valid result table or has no row of ``metric``.
    """
    d = select_metric(df, metric)
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
    if definitions is not None:
        table.attrs["definitions"] = caption_line(definitions)
    return table


def caption_line(definitions: MetricConfig | str) -> str:
    """The line saying how a table's scores were computed (:meth:`~mmdis.metrics.MetricConfig.describe`)."""
    return definitions.describe() if isinstance(definitions, MetricConfig) else str(definitions)


def table2_values(table: pd.DataFrame) -> pd.DataFrame:
    """The number columns of a :func:`table2` (all but the dot columns), as floats."""
    return table[[c for c in table.columns if c not in DOT_COLUMNS]].astype(float)


def _format_markdown(table: pd.DataFrame, floatfmt: str) -> str:
    # Fallback for when tabulate is missing: a GitHub pipe table, numbers right-aligned.
    header = [str(table.index.name or ""), *map(str, table.columns)]
    numeric = [False] + [c not in DOT_COLUMNS for c in table.columns]
    body = [[str(idx)] + ["" if isinstance(v, float) and np.isnan(v) else
                          format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in row]
            for idx, row in zip(table.index, table.itertuples(index=False))]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def table2_markdown(table: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A :func:`table2` as a Markdown pipe table (values with ``floatfmt``, empty cells for NaN), followed
    by its ``attrs["definitions"]`` line when it has one."""
    note = table.attrs.get("definitions")
    footer = f"\n{note}\n" if note else ""
    try:
        import tabulate  # noqa: F401  (DataFrame.to_markdown needs it)
    except ImportError:
        return _format_markdown(table, floatfmt) + footer
    # tabulate leaves NaN as "nan"; None is what it treats as missing.
    cells = table.astype(object).where(table.notna(), None)
    return cells.to_markdown(floatfmt=floatfmt, missingval="") + "\n" + footer


def write_table2(table: pd.DataFrame, path: str | os.PathLike, floatfmt: str = ".2f") -> tuple[Path, Path]:
    """Write a :func:`table2` as ``<path>.csv`` and ``<path>.md`` (atomically); returns both paths."""
    path = Path(path)
    csv, md = path.with_suffix(".csv"), path.with_suffix(".md")
    write_text(csv, table.to_csv())
    write_text(md, table2_markdown(table, floatfmt))
    return csv, md


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
    means, _ = _subset_means(select_metric(df, metric), metric, None)
    present = set(means.columns.get_level_values("method"))
    absent = [m for m in methods if m not in present]
    if absent:
        raise ValueError(f"methods {absent} have no {metric!r} rows; present: {sorted(present)}")
    regions = region_order(means.columns.get_level_values("region"))
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


def margin_by_subset_size(df: pd.DataFrame, reference: str = "robustseg",
                          baselines: Sequence[str] = ("hemis", "imputation"),
                          metric: str = "dice") -> pd.DataFrame:
    """Columns ``modalities, region, method, margin``: the mean margin (points) of ``reference`` over each
    baseline among the subsets with 1, 2, 3 and 4 modalities."""
    values = table2_values(table2(df, metric)).drop(AVERAGE)
    size = pd.Series([sum(_MASKS[s]) for s in values.index], index=values.index)
    rows = [(k, r, m, float((values[f"{reference} {r}"] - values[f"{m} {r}"])[size == k].mean()))
            for r in REGIONS for m in baselines for k in sorted(set(size))
            if f"{m} {r}" in values and f"{reference} {r}" in values]
    return pd.DataFrame(rows, columns=["modalities", "region", "method", "margin"])


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
