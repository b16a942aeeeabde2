"""The paper's published numbers, transcribed (Chen et al., MICCAI 2019), and ours set beside them.

:data:`PAPER_TABLE2` is Table 2 row by row; :func:`paper_results` turns it into a tidy table, so every
function that takes our results takes the paper's too.
"""

from __future__ import annotations

import pandas as pd

from mmdis.conventions import REGIONS, SUBSETS, subset_dots, subset_name
from mmdis.evaluation.tables import DOT_COLUMNS, table2, table2_values
from mmdis.evaluation.tidy import RESULT_COLUMNS

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


def paper_results() -> pd.DataFrame:
    """:data:`PAPER_TABLE2` as a tidy table (one pseudo-case ``"paper"``, Dice as a fraction), so every
    function that takes our results takes the paper's too."""
    names = {subset_dots(s): subset_name(s) for s in SUBSETS}
    rows = [(m, "paper", names[dots], r, "dice", v / 100)
            for dots, values in PAPER_TABLE2 for (m, r), v in zip(PAPER_COLUMNS, values)]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 in the layout of :func:`~mmdis.evaluation.tables.table2` (15 rows + Average)."""
    return table2(paper_results())


def _differences(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    values, out = table2_values(table), table[list(DOT_COLUMNS)].copy()
    for col in [c for c in values.columns if not c.startswith(f"{reference} ")]:
        region = col.rsplit(" ", 1)[1]
        out[f"{region} vs {col.rsplit(' ', 1)[0]}"] = values[f"{reference} {region}"] - values[col]
    return out


def compare_with_paper(ours: pd.DataFrame, paper: pd.DataFrame, reference: str = "robustseg") -> pd.DataFrame:
    """The paper's margins of ``reference`` over each baseline beside ours (absolute Dice on a phantom
    cannot be set against BraTS; margins can): dot columns, then ``"<region> vs <method> (paper)"`` and
    ``"... (ours)"`` for every margin both :func:`~mmdis.evaluation.tables.table2` outputs have, rows in
    the paper's order."""
    mine, theirs = _differences(ours, reference), _differences(paper, reference)
    out = theirs[list(DOT_COLUMNS)].copy()
    for col in theirs.columns.drop(list(DOT_COLUMNS)):
        if col in mine:
            out[f"{col} (paper)"], out[f"{col} (ours)"] = theirs[col], mine[col].reindex(theirs.index)
    return out
