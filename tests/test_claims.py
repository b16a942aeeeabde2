"""The paper's transcribed numbers, the claim verdicts on synthetic and published tables, the reconstruction
summary and the figures of the results notebooks, on tiny frames and arrays."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from mmdis.conventions import MODALITIES, MODALITY_NAMES, REGIONS, SUBSETS, subset_dots, subset_name
from mmdis.evaluation.claims import (
    ablation_verdicts,
    claim_verdicts,
    flat_image_floor,
    recon_verdicts,
    summarize_verdicts,
    verdict,
)
from mmdis.evaluation.paper import (
    PAPER_AVERAGES,
    PAPER_COLUMNS,
    PAPER_TABLE2,
    compare_with_paper,
    paper_results,
    paper_table2,
)
from mmdis.evaluation.tables import AVERAGE, margin_by_subset_size, recon_summary, table2
from mmdis.evaluation.tidy import RESULT_COLUMNS
from mmdis.inference import SubsetPrediction
from mmdis.inspection.predictions import predict_cached_case
from mmdis.plotting.predictions import plot_overlays, plot_reconstruction_grid
from mmdis.plotting.scores import plot_recon_heatmap

NAMES = [subset_name(s) for s in SUBSETS]


def _tidy(base: dict[str, float], per_missing: dict[str, float] | None = None, cases: int = 3,
          noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Dice rows: ``base[method] - per_missing[method] * (missing modalities) + noise``, every region."""
    rng = np.random.default_rng(seed)
    per_missing = per_missing or {}
    rows = [(m, f"c{c}", name, r, "dice",
             b - per_missing.get(m, 0.0) * (4 - sum(s)) + noise * rng.standard_normal())
            for m, b in base.items() for c in range(cases)
            for name, s in zip(NAMES, SUBSETS) for r in REGIONS]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def test_paper_table_rows_follow_table2_order():
    assert [dots for dots, _ in PAPER_TABLE2] == [subset_dots(s) for s in SUBSETS]
    assert all(len(v) == len(PAPER_COLUMNS) == 9 for _, v in PAPER_TABLE2)


@pytest.mark.parametrize("method", ["robustseg", "hemis", "imputation"])
def test_paper_averages_match_the_published_average_row(method):
    avg = paper_table2().loc[AVERAGE]
    for region in REGIONS:
        assert abs(avg[f"{method} {region}"] - PAPER_AVERAGES[method][region]) <= 0.005 + 1e-9


def test_paper_table2_has_the_shape_of_ours():
    ours = table2(_tidy({"robustseg": 0.8, "hemis": 0.7, "imputation": 0.6}))
    paper = paper_table2()
    assert list(paper.index) == list(ours.index) and list(paper.columns) == list(ours.columns)
    assert paper.loc["T2", "hemis WT"] == pytest.approx(58.48)


def test_paper_numbers_support_the_papers_claims():
    v = claim_verdicts(paper_results())
    assert len(v) == 3 * 5 + 2 and (v["verdict"] == "supported").all()
    assert v["evidence"].iloc[0] == "84.4 vs 68.2 (Δ +16.2; Wilcoxon p = 6.1e-05, n = 15)"


def test_verdict_thresholds():
    assert verdict(2.0) == "supported" and verdict(-2.0) == "not supported"
    assert verdict(0.5) == "inconclusive" and verdict(float("nan")) == "inconclusive"
    assert verdict(2.0, p_value=0.2) == "inconclusive"
    assert verdict(2.0, p_value=float("nan")) == "inconclusive"
    assert verdict(-5.0, p_value=0.01) == "not supported"
    assert verdict(0.5, tol=0.1) == "supported"


def test_compare_with_paper_sets_margins_side_by_side():
    ours = table2(_tidy({"robustseg": 0.8, "hemis": 0.7, "imputation": 0.5}))
    both = compare_with_paper(ours, paper_table2())
    assert both.loc[AVERAGE, "ET vs imputation (ours)"] == pytest.approx(30.0)
    assert both.loc[AVERAGE, "ET vs imputation (paper)"] == pytest.approx(57.33 - 41.93, abs=0.01)
    assert len(both.columns) == 4 + 2 * 3 * 2
    assert both.loc["T2", "WT vs hemis (paper)"] == pytest.approx(85.49 - 58.48)
    assert both.loc["T2", "WT vs hemis (ours)"] == pytest.approx(10.0)
    assert list(both.columns[:4]) == ["FLAIR", "T1", "T1c", "T2"]


def test_margin_by_subset_size_is_linear_in_missing_modalities():
    df = _tidy({"robustseg": 0.9, "hemis": 0.9}, per_missing={"robustseg": 0.02, "hemis": 0.10})
    m = margin_by_subset_size(df, baselines=("hemis",))
    assert len(m) == 4 * 3
    for k in (1, 2, 3, 4):
        assert np.allclose(m.loc[m["modalities"] == k, "margin"], 8.0 * (4 - k))


def test_claim_verdicts_on_a_losing_and_a_tied_reference():
    losing = claim_verdicts(_tidy({"robustseg": 0.5, "hemis": 0.7, "imputation": 0.72}, noise=0.01))
    average = losing[losing["claim"].str.contains("15-subset average")]
    assert (average["verdict"] == "not supported").all()
    assert (losing[losing["claim"].str.contains("every subset")]["verdict"] == "not supported").all()
    tied = claim_verdicts(_tidy({"robustseg": 0.6, "hemis": 0.6, "imputation": 0.6}))
    assert (tied["verdict"] == "inconclusive").all()
    assert set(tied.columns) == {"claim", "region", "evidence", "verdict"}


def test_ablation_verdicts_count_strict_wins():
    df = _tidy({"ablation-mean": 0.5, "ablation-mean-dis": 0.6, "robustseg": 0.7}, noise=0.01)
    v = ablation_verdicts(df)
    assert len(v) == 9 and (v["verdict"] == "supported").all()
    assert v["evidence"].str.contains("best in 15 of 15").sum() == 3
    tied = ablation_verdicts(_tidy({"ablation-mean": 0.0, "ablation-mean-dis": 0.0, "robustseg": 0.0}))
    assert (tied["verdict"] == "not supported").sum() == 3  # ties are no wins
    assert (tied["verdict"] == "inconclusive").sum() == 6


def _recon_rows():
    rows = []
    for c in range(2):
        for name, s in zip(NAMES, SUBSETS):
            for i, m in enumerate(MODALITIES):
                psnr = 20.0 + 5.0 * s[i] + c  # +5 dB when the modality was an input
                rows += [("robustseg", f"c{c}", name, MODALITY_NAMES[m], "psnr", psnr),
                         ("robustseg", f"c{c}", name, MODALITY_NAMES[m], "ssim", 0.5 + 0.1 * s[i])]
    rows.append(("hemis", "c0", NAMES[0], "WT", "dice", 0.5))
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def test_recon_summary_orders_and_flags_inputs():
    s = recon_summary(_recon_rows())
    assert len(s) == 15 * 4
    assert list(s["subset"].iloc[::4]) == NAMES
    assert list(s["modality"].iloc[:4]) == ["FLAIR", "T1", "T1c", "T2"]
    assert np.allclose(s.loc[s["input"], "psnr"], 25.5) and np.allclose(s.loc[~s["input"], "psnr"], 20.5)
    assert s.loc[s["subset"] == "T1+T2", "modalities"].eq(2).all()
    floor = pd.DataFrame({"modality": ["FLAIR", "T1", "T1c", "T2"], "psnr": [19.0, 20.4, 21.5, 25.0],
                          "ssim": 0.0})
    v = recon_verdicts(s, floor, tol=0.5)
    assert list(v["verdict"]) == ["supported", "inconclusive", "not supported", "not supported"]
    assert "20.5 dB without it, 25.5 dB with it" in v["evidence"].iloc[0]
    with pytest.raises(ValueError, match="psnr"):
        recon_summary(_recon_rows(), method="hemis")
    assert plot_recon_heatmap(s).axes


def _case(shape=(16, 16, 16)):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(4, *shape)).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[4:12, 4:12, 4:12] = 2
    label[6:10, 6:10, 6:10] = 1
    label[7:9, 7:9, 7:9] = 3
    return SimpleNamespace(image=image, label=label, mask=np.ones(shape, bool), available=np.ones(4, bool))


def test_overlay_and_reconstruction_figures():
    case = _case()
    subsets = [SUBSETS[-1], SUBSETS[2]]
    pred = SubsetPrediction(subsets=subsets, labels=np.stack([case.label, np.zeros_like(case.label)]),
                            recon=np.stack([case.image, case.image * 0.5]))
    fig = plot_overlays(case, {"robustseg": pred, "hemis": pred})
    assert len(fig.axes) == 2 * 3
    grid = plot_reconstruction_grid(case, pred, ("flair", "t2"))
    assert len(grid.axes) == 3 * 2
    assert "no FLAIR" in grid.axes[4].get_title()  # T1 alone lacks FLAIR
    with pytest.raises(ValueError, match="reconstructions"):
        plot_reconstruction_grid(case, SubsetPrediction(subsets, pred.labels))


def test_predict_cached_case_with_a_tiny_model():
    from mmdis.models import build_model

    torch.manual_seed(0)
    model = build_model("robustseg", base_channels=4, appearance_channels=4)
    case = _case()
    case.mask[:2] = False
    pred = predict_cached_case(model, case, ["T1", "FLAIR+T1+T1c+T2"], with_recon=True, roi_size=16)
    assert pred.labels.shape == (2, 16, 16, 16) and pred.recon.shape == (2, 4, 16, 16, 16)
    assert not pred.labels[:, :2].any()
    assert pred.names() == ["T1", "FLAIR+T1+T1c+T2"]
    with pytest.raises(ValueError, match="unknown subsets"):
        predict_cached_case(model, case, ["T1+FLAIR"])


def test_flat_image_floor_scores_a_zero_image(make_dataset, tmp_path):
    from mmdis.data.cache import Cache, PrepareConfig, prepare
    from mmdis.metrics import psnr

    prepare(make_dataset("brats2021", n=3), tmp_path / "cache", PrepareConfig(fractions=(0, 0, 1)),
            progress=False)
    floor = flat_image_floor(tmp_path / "cache")
    assert list(floor["modality"]) == ["FLAIR", "T1", "T1c", "T2"]
    cache = Cache.open(tmp_path / "cache")
    cases = [cache.load(c) for c in cache.case_ids("test")]
    expected = np.mean([psnr(np.zeros_like(c.image[3]), c.image[3], c.mask) for c in cases])
    assert floor["psnr"].iloc[3] == pytest.approx(expected)


def test_summarize_verdicts_counts():
    v = pd.DataFrame({"verdict": ["supported", "inconclusive", "supported"]})
    assert summarize_verdicts(v) == "Of 3 checks, 2 supported, 0 not supported and 1 inconclusive."
