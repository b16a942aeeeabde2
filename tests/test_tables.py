"""Result tables (and their heatmap) from a synthetic tidy frame with known means; Wilcoxon against scipy;
the ablation count."""

from __future__ import annotations

import builtins

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from mmdis.conventions import SUBSETS, subset_dots, subset_name  # noqa: E402
from mmdis.evaluation.stats import WILCOXON_COLUMNS, wilcoxon_tests  # noqa: E402
from mmdis.evaluation.tables import ablation_summary, table2, table2_markdown, write_table2  # noqa: E402
from mmdis.evaluation.tidy import RESULT_COLUMNS, check_results, metric_rows, read_results, write_results  # noqa: E402
from mmdis.plotting.scores import plot_table2_heatmap  # noqa: E402

METHODS = {"robustseg": 0.70, "hemis": 0.50, "mlp": 0.40}  # method -> base Dice
REGION_OFFSET = {"WT": 0.10, "TC": 0.0, "ET": -0.10}
N_CASES = 4


def _known_value(method, case, subset_index, region):
    # case mean of 0.001 * case over cases 0..3 is 0.0015
    return METHODS[method] + REGION_OFFSET[region] + 0.01 * subset_index + 0.001 * case


def _expected(method, subset_index, region):
    """Table-2 cell in percent."""
    return 100 * (METHODS[method] + REGION_OFFSET[region] + 0.01 * subset_index + 0.0015)


@pytest.fixture
def tidy():
    """3 methods x 4 cases x 15 subsets x 3 regions of Dice, plus one HD95 row per cell."""
    rows = []
    for method in METHODS:
        for case in range(N_CASES):
            for i, s in enumerate(SUBSETS):
                for region in REGION_OFFSET:
                    value = _known_value(method, case, i, region)
                    rows.append((method, f"case{case:03d}", subset_name(s), region, "dice", value))
                    rows.append((method, f"case{case:03d}", subset_name(s), region, "hd95", 10 * value))
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def test_table2_numbers_rows_and_dots(tidy):
    t = table2(tidy)
    assert list(t.index) == [subset_name(s) for s in SUBSETS] + ["Average"]
    assert list(t.columns[:4]) == ["FLAIR", "T1", "T1c", "T2"]
    assert list(t.columns[4:]) == [f"{m} {r}" for m in METHODS for r in REGION_OFFSET]
    for i, s in enumerate(SUBSETS):
        assert "".join(t.iloc[i, :4]) == subset_dots(s)
        for m in METHODS:
            for r in REGION_OFFSET:
                assert t.loc[subset_name(s), f"{m} {r}"] == pytest.approx(_expected(m, i, r))
    assert t.iloc[0, :4].tolist() == ["○", "○", "○", "●"]  # the paper's first row: T2 alone
    assert (t.loc["Average", ["FLAIR", "T1", "T1c", "T2"]] == "").all()
    for m in METHODS:
        for r in REGION_OFFSET:
            assert t.loc["Average", f"{m} {r}"] == pytest.approx(_expected(m, 7, r))  # mean of i = 0..14 is 7
    assert t.attrs == {"metric": "dice", "percent": True, "cases": dict.fromkeys(METHODS, N_CASES)}


def test_table2_reference_numbers_style(tidy):
    # 84.45-like numbers: the average row of robustseg WT is 100 * (0.8 + 0.07 + 0.0015)
    assert table2(tidy).loc["Average", "robustseg WT"] == pytest.approx(87.15)


def test_table2_other_metric_is_not_percent(tidy):
    t = table2(tidy, metric="hd95")
    assert t.attrs["percent"] is False
    assert t.loc[subset_name(SUBSETS[3]), "hemis ET"] == pytest.approx(_expected("hemis", 3, "ET") / 10)


def test_absent_subsets_are_absent_rows(tidy):
    two = {subset_name(s) for s in SUBSETS if not s[1] and not s[2]}  # FLAIR and T2 only: 3 subsets
    t = table2(tidy[tidy["subset"].isin(two)])
    assert list(t.index) == ["T2", "FLAIR", "FLAIR+T2"] + ["Average"]
    present = [SUBSETS.index(s) for s in SUBSETS if subset_name(s) in two]
    expected = np.mean([_expected("robustseg", i, "TC") for i in present])
    assert t.loc["Average", "robustseg TC"] == pytest.approx(expected)


def test_missing_method_cell_is_nan_and_average_skips_it(tidy):
    drop = (tidy["method"] == "mlp") & (tidy["subset"] == "T2")
    t = table2(tidy[~drop])
    assert np.isnan(t.loc["T2", "mlp WT"])
    expected = np.mean([_expected("mlp", i, "WT") for i in range(1, 15)])
    assert t.loc["Average", "mlp WT"] == pytest.approx(expected)
    assert "| T2 " in table2_markdown(t) and "nan" not in table2_markdown(t)


def test_markdown_contents(tidy, monkeypatch):
    t = table2(tidy)
    md = table2_markdown(t)
    lines = md.strip().splitlines()
    assert len(lines) == 2 + 16
    assert "robustseg WT" in lines[0] and "FLAIR" in lines[0]
    assert "●" in md and "○" in md
    assert lines[-1].lstrip("| ").startswith("Average")
    assert f"{_expected('robustseg', 7, 'WT'):.2f}" in lines[-1]
    # the fallback formatter (no tabulate) gives the same cells
    real_import = builtins.__import__

    def no_tabulate(name, *args, **kwargs):
        if name == "tabulate":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tabulate)
    fallback = table2_markdown(t)

    def cells(text):
        return [[c.strip() for c in line.strip("|").split("|")] for line in text.strip().splitlines()[2:]]

    assert cells(fallback) == cells(md)


def test_write_table2(tidy, tmp_path):
    t = table2(tidy)
    csv, md = write_table2(t, tmp_path / "out" / "table2")
    assert csv.name == "table2.csv" and md.name == "table2.md"
    back = pd.read_csv(csv, index_col="subset", keep_default_na=False)
    assert list(back.index) == list(t.index)
    assert back.loc["Average", "hemis ET"] == pytest.approx(t.loc["Average", "hemis ET"])
    assert md.read_text(encoding="utf-8") == table2_markdown(t)
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary files left


def test_csv_round_trip(tidy, tmp_path):
    df = tidy.copy()
    df.loc[0, "value"] = np.nan
    df["case"] = df["case"].str.replace("case", "")  # "000" must stay "000"
    path = write_results(df, tmp_path / "results.csv")
    back = read_results(path)
    pd.testing.assert_frame_equal(back, check_results(df))
    assert back.loc[1, "case"] == "000" and np.isnan(back.loc[0, "value"])
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_check_results_rejects_bad_tables(tidy):
    with pytest.raises(ValueError, match="lacks columns"):
        check_results(tidy.drop(columns="region"))
    bad = tidy.copy()
    bad.loc[0, "subset"] = "FLAIR+PET"
    with pytest.raises(ValueError, match="unknown subsets"):
        check_results(bad)
    with pytest.raises(ValueError, match="repeat a key"):
        check_results(pd.concat([tidy, tidy.head(2)]))
    bad = tidy.astype({"value": object})
    bad.loc[0, "value"] = "high"
    with pytest.raises(ValueError, match="numeric"):
        check_results(bad)
    with pytest.raises(ValueError, match="no rows with metric"):
        table2(tidy, metric="psnr")


def test_metric_rows():
    rows = metric_rows({"WT": {"dice": 0.9, "hd95": 3.0}}, "robustseg", 7, SUBSETS[-1])
    assert rows == [
        {"method": "robustseg", "case": "7", "subset": "FLAIR+T1+T1c+T2", "region": "WT", "metric": "dice",
         "value": 0.9},
        {"method": "robustseg", "case": "7", "subset": "FLAIR+T1+T1c+T2", "region": "WT", "metric": "hd95",
         "value": 3.0},
    ]


def _random_tidy(seed=0):
    rng = np.random.default_rng(seed)
    rows = [(m, f"c{c}", subset_name(s), r, "dice", float(rng.uniform(0.3, 0.9)))
            for m in METHODS for c in range(N_CASES) for s in SUBSETS for r in REGION_OFFSET]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def test_wilcoxon_against_scipy():
    df = _random_tidy()
    out = wilcoxon_tests(df)
    assert list(out.columns) == list(WILCOXON_COLUMNS)
    assert [(r, m) for r, m in zip(out["region"], out["method"])] == [
        (r, m) for r in REGION_OFFSET for m in ("hemis", "mlp")
    ]
    for row in out.itertuples():
        key = ["case", "subset"]
        a = df[(df.method == "robustseg") & (df.region == row.region)].set_index(key)["value"]
        b = df[(df.method == row.method) & (df.region == row.region)].set_index(key)["value"].loc[a.index]
        expected = stats.wilcoxon(a.to_numpy(), b.to_numpy(), zero_method="wilcox", alternative="two-sided")
        assert row.n == N_CASES * 15
        assert row.mean_difference == pytest.approx(float(np.mean(a.to_numpy() - b.to_numpy())))
        assert row.statistic == pytest.approx(expected.statistic)
        assert row.p_value == pytest.approx(expected.pvalue)
        assert row.note == ""


def test_wilcoxon_all_zero_differences_and_too_few_pairs(tidy):
    same = tidy[tidy["method"] == "robustseg"].assign(method="copy")
    df = pd.concat([tidy, same])
    out = wilcoxon_tests(df).set_index(["region", "method"])
    assert out.loc[("WT", "copy"), "p_value"] == 1.0 and out.loc[("WT", "copy"), "statistic"] == 0.0
    assert out.loc[("WT", "copy"), "note"] == "all differences zero"
    assert out.loc[("WT", "copy"), "mean_difference"] == 0.0
    # known differences: robustseg - hemis = 0.20 everywhere
    assert out.loc[("TC", "hemis"), "mean_difference"] == pytest.approx(0.20)
    few = df[df["subset"].isin(["T2"]) & df["case"].isin(["case000"])]
    out = wilcoxon_tests(few).set_index(["region", "method"])
    assert out["n"].eq(1).all() and out["p_value"].isna().all() and out["statistic"].isna().all()
    assert out.loc[("ET", "mlp"), "note"] == "fewer than 6 pairs"
    with pytest.raises(ValueError, match="reference method"):
        wilcoxon_tests(df, reference="nnunet")


def test_wilcoxon_skips_unpaired_cells(tidy):
    df = tidy[~((tidy["method"] == "hemis") & (tidy["case"] == "case000"))]
    out = wilcoxon_tests(df).set_index(["region", "method"])
    assert out.loc[("WT", "hemis"), "n"] == (N_CASES - 1) * 15
    assert out.loc[("WT", "mlp"), "n"] == N_CASES * 15


def test_ablation_wins_counting():
    # robustseg best on subsets 0-8, ablation-mean-dis on 9-13, a three-way tie on subset 14
    rows = []
    for i, s in enumerate(SUBSETS):
        scores = {"ablation-mean": 0.5, "ablation-mean-dis": 0.7 if 9 <= i < 14 else 0.6,
                  "robustseg": 0.65 if i < 9 else 0.55}
        if i == 14:
            scores = dict.fromkeys(scores, 0.8)
        for m, v in scores.items():
            for case in range(2):
                rows.append((m, f"c{case}", subset_name(s), "WT", "dice", v + (0.01 if case else -0.01)))
    out = ablation_summary(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)))
    out = out.set_index("method")
    assert list(out.index) == ["ablation-mean", "ablation-mean-dis", "robustseg"]
    assert out["wins"].to_dict() == {"ablation-mean": 1, "ablation-mean-dis": 6, "robustseg": 10}
    assert (out["subsets"] == 15).all() and (out["region"] == "WT").all()
    assert out.loc["ablation-mean", "average"] == pytest.approx(100 * (14 * 0.5 + 0.8) / 15)
    assert out.loc["robustseg", "average"] == pytest.approx(100 * (9 * 0.65 + 5 * 0.55 + 0.8) / 15)


def test_ablation_missing_method_raises(tidy):
    with pytest.raises(ValueError, match="ablation-mean"):
        ablation_summary(tidy)
    out = ablation_summary(tidy, methods=("hemis", "robustseg"))
    assert out.set_index(["method", "region"]).loc[("robustseg", "ET"), "wins"] == 15
    assert out.set_index(["method", "region"]).loc[("hemis", "TC"), "wins"] == 0


def test_heatmap_returns_a_figure(tidy):
    t = table2(tidy)
    fig = plot_table2_heatmap(t)
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 16 and ax.get_yticklabels()[0].get_text() == "○○○●  T2"
    assert len(ax.texts) == 16 * 9  # one annotation per cell
    plt.close(fig)
    fig, ax = plt.subplots()
    assert plot_table2_heatmap(t, ax=ax) is fig
    plt.close(fig)
