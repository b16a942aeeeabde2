"""The tidy result table every evaluation writes: its columns, validation, reading and writing.

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
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from mmdis.conventions import MODALITIES, MODALITY_NAMES, REGIONS, SUBSETS, subset_name
from mmdis.runtime.files import write_text

RESULT_COLUMNS: tuple[str, ...] = ("method", "case", "subset", "region", "metric", "value")
#: Subset names in the row order of the paper's Table 2.
SUBSET_ORDER: tuple[str, ...] = tuple(subset_name(s) for s in SUBSETS)
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


def write_results(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate and write a tidy result table as CSV, atomically (:func:`mmdis.runtime.files.write_text`)."""
    return write_text(path, check_results(df).to_csv(index=False))


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV written by :func:`write_results` (keys as strings, values as floats) and validate it."""
    df = pd.read_csv(path, dtype={c: str for c in _STRING_COLUMNS}, keep_default_na=False,
                     na_values={"value": ["", "nan", "NaN"]})
    return check_results(df)


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """The tidy table ``results_dir/results.csv`` written by :func:`mmdis.pipeline.reproduce`."""
    return read_results(Path(results_dir) / "results.csv")


def first_seen(values: Iterable[str], preferred: Sequence[str] = ()) -> list[str]:
    """The distinct ``values``: those in ``preferred`` in its order, then the others as first seen."""
    seen = list(dict.fromkeys(values))
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def region_order(regions: Iterable[str]) -> list[str]:
    """Regions in report order: WT, TC, ET, then reconstructed modalities, then anything else."""
    preferred = [*REGIONS, *MODALITIES, *MODALITY_NAMES.values()]
    return first_seen(regions, preferred)


def select_metric(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The validated rows of one metric.

    Raises:
        ValueError: if ``df`` is not a valid result table or has no row of ``metric``.
    """
    df = check_results(df)
    d = df[df["metric"] == metric]
    if d.empty:
        raise ValueError(f"no rows with metric {metric!r}; the table has {sorted(set(df['metric']))}")
    return d
