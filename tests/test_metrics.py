"""Segmentation and reconstruction metrics: hand-computed values, the empty-mask convention, MONAI."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.metrics.regression import compute_ssim_and_cs
from scipy.ndimage import gaussian_filter

from mmdis.metrics import (
    ET_PP,
    HD95_WORST_CASE_MM,
    MetricConfig,
    case_metrics,
    et_postprocess,
    hd95,
    overlap_scores,
    psnr,
    reconstruction_metrics,
    segmentation_metrics,
    ssim,
    surface,
    surface_distances,
)


def _blob(shape, rng, n_spheres=3):
    """A random union of balls inside ``shape``."""
    grid = np.indices(shape).transpose(1, 2, 3, 0)  # (D, H, W, 3)
    mask = np.zeros(shape, bool)
    for _ in range(n_spheres):
        centre = rng.uniform(3, np.array(shape) - 3)
        radius = rng.uniform(1.5, 4.0)
        mask |= ((grid - centre) ** 2).sum(-1) <= radius**2
    return mask


def _monai_hd95(pred, truth, spacing):
    t = lambda a: torch.as_tensor(a[None, None])  # noqa: E731  (B, C, D, H, W)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_hausdorff_distance(t(pred), t(truth), percentile=95, spacing=spacing)[0, 0])


# --- overlap: hand-computed -----------------------------------------------------------

def test_overlap_by_hand():
    pred = np.zeros((2, 3, 4), bool)
    truth = np.zeros((2, 3, 4), bool)
    pred[0, 0, :4] = True  # 4 predicted voxels
    truth[0, 0, 2:4] = True  # 2 of them true ...
    truth[1, 2, :3] = True  # ... and 3 more missed: TP 2, FP 2, FN 3
    s = overlap_scores(pred, truth)
    assert s["dice"] == pytest.approx(2 * 2 / (4 + 5))
    assert s["sensitivity"] == pytest.approx(2 / 5)
    assert s["precision"] == pytest.approx(2 / 4)


def test_region_metrics_by_hand():
    truth = np.zeros((4, 4, 4), np.uint8)
    pred = np.zeros((4, 4, 4), np.uint8)
    truth[0, 0, :3] = [2, 1, 3]  # WT 3, TC 2, ET 1
    pred[0, 0, :4] = [2, 2, 3, 3]  # WT 4 (3 hit), TC 2 (1 hit), ET 2 (1 hit)
    m = segmentation_metrics(pred, truth)
    assert set(m) == {"WT", "TC", "ET"}
    assert m["WT"]["dice"] == pytest.approx(2 * 3 / 7)
    assert m["WT"]["sensitivity"] == 1.0 and m["WT"]["precision"] == pytest.approx(3 / 4)
    assert m["TC"]["dice"] == pytest.approx(2 * 1 / 4)
    assert m["TC"]["sensitivity"] == pytest.approx(1 / 2) and m["TC"]["precision"] == pytest.approx(1 / 2)
    assert m["ET"]["dice"] == pytest.approx(2 / 3)
    assert m["ET"]["sensitivity"] == 1.0 and m["ET"]["precision"] == pytest.approx(1 / 2)
    # 1-voxel-thick segments along the last axis: the worst voxel is 1 mm from the other surface
    assert m["WT"]["hd95"] == pytest.approx(np.percentile([0, 0, 0, 1], 95))


def test_perfect_prediction():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (6, 7, 8)).astype(np.uint8)
    for region in segmentation_metrics(label, label).values():
        assert region == {"dice": 1.0, "sensitivity": 1.0, "precision": 1.0, "hd95": 0.0}


# --- the empty-mask convention, every case and every metric -----------------------------

def _case(pred_empty: bool, truth_empty: bool):
    blob = np.zeros((6, 6, 6), np.uint8)
    blob[2:4, 2:4, 2:4] = 3  # in WT, TC and ET
    empty = np.zeros_like(blob)
    return (empty if pred_empty else blob), (empty if truth_empty else blob)


@pytest.mark.parametrize(
    ("pred_empty", "truth_empty", "expected"),
    [
        (True, True, {"dice": 1.0, "sensitivity": 1.0, "precision": 1.0, "hd95": 0.0}),
        (False, True, {"dice": 0.0, "sensitivity": 1.0, "precision": 0.0, "hd95": HD95_WORST_CASE_MM}),
        (True, False, {"dice": 0.0, "sensitivity": 0.0, "precision": 1.0, "hd95": HD95_WORST_CASE_MM}),
    ],
    ids=["both-empty", "truth-empty", "pred-empty"],
)
def test_empty_mask_convention(pred_empty, truth_empty, expected):
    pred, truth = _case(pred_empty, truth_empty)
    for region, values in segmentation_metrics(pred, truth, spacing=(1.0, 2.0, 3.0)).items():
        assert values == expected, region
    assert hd95(pred > 0, truth > 0) == expected["hd95"]


def test_worst_case_is_the_brats_volume_diagonal():
    assert HD95_WORST_CASE_MM == pytest.approx(np.sqrt(240**2 + 240**2 + 155**2), abs=0.005)


def test_absent_et_only_affects_et():
    truth = np.zeros((6, 6, 6), np.uint8)
    truth[1:5, 1:5, 1:5] = 2
    truth[2:4, 2:4, 2:4] = 1
    m = segmentation_metrics(truth, truth)
    assert m["ET"] == {"dice": 1.0, "sensitivity": 1.0, "precision": 1.0, "hd95": 0.0}
    assert m["WT"]["dice"] == m["TC"]["dice"] == 1.0


@pytest.mark.parametrize(
    ("pred_empty", "truth_empty", "expected"),
    [
        (True, True, {"dice": np.nan, "sensitivity": np.nan, "precision": np.nan, "hd95": np.nan}),
        (False, True, {"dice": 0.0, "sensitivity": np.nan, "precision": 0.0, "hd95": 373.0}),
        (True, False, {"dice": 0.0, "sensitivity": 0.0, "precision": np.nan, "hd95": 373.0}),
    ],
    ids=["both-empty", "truth-empty", "pred-empty"],
)
def test_empty_mask_convention_brats2025(pred_empty, truth_empty, expected):
    pred, truth = _case(pred_empty, truth_empty)
    for definition in ("directed-max", "pooled"):
        scores = segmentation_metrics(pred, truth, (1.0, 2.0, 3.0), definition, "brats2025")
        for region, values in scores.items():
            assert values.keys() == expected.keys()
            for k, v in values.items():
                assert v == expected[k] or (np.isnan(v) and np.isnan(expected[k])), (region, k)


def test_disjoint_masks_depend_on_the_convention():
    pred, truth = np.zeros((4, 4, 12), bool), np.zeros((4, 4, 12), bool)
    pred[1:3, 1:3, 0:2], truth[1:3, 1:3, 6:8] = True, True  # 5 to 7 mm apart along the last axis
    assert hd95(pred, truth) == pytest.approx(6.0)  # brats2018: measured (the 95th percentile of 5s and 6s)
    assert hd95(pred, truth, definition="pooled", empty="brats2025") == 373.0  # no overlap: the worst case
    assert overlap_scores(pred, truth, "brats2025") == {"dice": 0.0, "sensitivity": 0.0, "precision": 0.0}


def test_pooled_hd95_by_hand():
    # pred: a 1 x 1 x 2 bar; truth: the same bar plus 18 voxels trailing 1..18 mm along the last axis.
    pred, truth = np.zeros((3, 3, 24), bool), np.zeros((3, 3, 24), bool)
    pred[1, 1, 1:3] = True
    truth[1, 1, 1:21] = True
    to_truth, to_pred = surface_distances(pred, truth)
    assert sorted(to_truth) == [0.0, 0.0] and sorted(to_pred) == [0.0, 0.0, *range(1, 19)]
    pooled = np.percentile([0, 0, 0, 0, *range(1, 19)], 95)
    assert hd95(pred, truth, definition="pooled") == pytest.approx(pooled)
    assert hd95(pred, truth) == pytest.approx(np.percentile([0, 0, *range(1, 19)], 95))
    assert hd95(pred, truth, definition="pooled") < hd95(pred, truth)


@pytest.mark.parametrize("seed", range(4))
def test_pooled_is_never_above_directed_max(seed):
    rng = np.random.default_rng(seed)
    pred, truth = _blob((14, 14, 14), rng), _blob((14, 14, 14), rng, 1)
    spacing = tuple(rng.uniform(0.5, 2.0, 3))
    assert hd95(pred, truth, spacing, definition="pooled") <= hd95(pred, truth, spacing) + 1e-9


@pytest.mark.parametrize("kwargs", [{"definition": "mean"}, {"empty": "brats2030"}])
def test_unknown_metric_options_are_refused(kwargs):
    mask = np.ones((2, 2, 2), bool)
    with pytest.raises(ValueError, match="expected one of"):
        hd95(mask, mask, **kwargs)
    with pytest.raises(ValueError, match="expected one of"):
        MetricConfig(**{"hd95" if "definition" in kwargs else "empty": next(iter(kwargs.values()))})


def test_metric_config_describes_itself():
    text = MetricConfig().describe()
    assert "directed-max" in text and "brats2018" in text and "without small-ET" in text
    text = MetricConfig(hd95="pooled", empty="brats2025", et_postprocess=True).describe()
    assert "pooled" in text and "brats2025" in text and "fewer than 500 voxels" in text and "<" not in text


def test_case_metrics_adds_et_pp_and_leaves_the_raw_regions():
    truth = np.zeros((10, 10, 10), np.uint8)
    truth[2:8, 2:8, 2:8] = 2
    truth[3:6, 3:6, 3:6] = 1  # no enhancing tumour in the truth
    pred = truth.copy()
    pred[4, 4, 4:6] = 3  # a 2-voxel false-positive ET
    plain = case_metrics(pred, truth)
    assert set(plain) == {"WT", "TC", "ET"} and plain["ET"]["dice"] == 0.0
    both = case_metrics(pred, truth, config=MetricConfig(et_postprocess=True))
    assert {r: both[r] for r in plain} == plain
    assert both[ET_PP] == {"dice": 1.0, "sensitivity": 1.0, "precision": 1.0, "hd95": 0.0}
    kept = case_metrics(pred, truth, config=MetricConfig(et_postprocess=True, et_min_voxels=2))
    assert kept[ET_PP] == kept["ET"]  # 2 voxels are not below a threshold of 2


# --- cross-checks against MONAI --------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_hd95_matches_monai_with_anisotropic_spacing(seed):
    rng = np.random.default_rng(seed)
    shape = (14, 18, 12)
    pred, truth = _blob(shape, rng), _blob(shape, rng)
    spacing = tuple(rng.uniform(0.5, 3.0, 3))
    assert hd95(pred, truth, spacing) == pytest.approx(_monai_hd95(pred, truth, spacing), rel=1e-5, abs=1e-5)
    # the symmetric distance does not depend on the order
    assert hd95(pred, truth, spacing) == pytest.approx(hd95(truth, pred, spacing))


def test_hd95_crop_handles_masks_touching_the_border():
    rng = np.random.default_rng(7)
    pred, truth = np.zeros((10, 10, 10), bool), np.zeros((10, 10, 10), bool)
    pred[0:4, 0:3, 5:10] = True
    truth[1:5, 0:2, 6:10] = True
    truth |= _blob((10, 10, 10), rng, 1)
    spacing = (1.0, 1.5, 2.5)
    assert hd95(pred, truth, spacing) == pytest.approx(_monai_hd95(pred, truth, spacing), rel=1e-5)


def test_hd100_is_the_hausdorff_distance():
    pred, truth = np.zeros((5, 5, 12), bool), np.zeros((5, 5, 12), bool)
    pred[2, 2, 1] = True
    truth[2, 2, 1] = truth[2, 2, 9] = True
    assert hd95(pred, truth, (1, 1, 2), percentile=100) == pytest.approx(16.0)


@pytest.mark.parametrize("seed", range(4))
def test_dice_matches_monai(seed):
    rng = np.random.default_rng(seed)
    pred, truth = _blob((12, 12, 12), rng), _blob((12, 12, 12), rng)
    expected = compute_dice(torch.as_tensor(pred[None, None]), torch.as_tensor(truth[None, None]))
    assert overlap_scores(pred, truth)["dice"] == pytest.approx(float(expected), rel=1e-6)


def test_surface_is_the_mask_minus_its_erosion():
    mask = np.zeros((5, 5, 5), bool)
    mask[1:4, 1:4, 1:4] = True
    s = surface(mask)
    assert s.sum() == 26 and not s[2, 2, 2]


# --- ET post-processing -----------------------------------------------------------------

def test_et_postprocess():
    pred = np.zeros((10, 10, 10), np.uint8)
    pred[2:8, 2:8, 2:8] = 2
    pred[4:6, 4:6, 4:6] = 3  # 8 ET voxels
    small = et_postprocess(pred, min_voxels=9)
    assert not (small == 3).any() and (small[4:6, 4:6, 4:6] == 1).all()
    assert (small > 0).sum() == (pred > 0).sum()  # WT unchanged
    np.testing.assert_array_equal(et_postprocess(pred, min_voxels=8), pred)  # not below the threshold
    assert (et_postprocess(pred, min_voxels=9, replace_with=0)[4:6, 4:6, 4:6] == 0).all()
    assert (pred == 3).sum() == 8  # input untouched
    assert et_postprocess(pred).dtype == pred.dtype  # default 500 voxels: relabelled
    assert not (et_postprocess(pred) == 3).any()


@pytest.mark.parametrize("kwargs", [{"min_voxels": -1}, {"replace_with": 2}])
def test_et_postprocess_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        et_postprocess(np.zeros((2, 2, 2), np.uint8), **kwargs)


# --- reconstruction metrics ---------------------------------------------------------------

def _images(seed=0, shape=(16, 18, 14)):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[2:-2, 3:-3, 2:-1] = True
    target = np.where(mask, rng.normal(size=shape), 0.0)
    target = np.where(mask, 3 * gaussian_filter(target, 1.0), 0.0)
    recon = np.where(mask, target + 0.3 * rng.normal(size=shape), 5.0)  # junk outside the brain
    return recon, target, mask


def test_psnr_by_hand():
    recon, target, mask = _images()
    r, t = recon[mask], target[mask]
    expected = 10 * np.log10((t.max() - t.min()) ** 2 / np.mean((r - t) ** 2))
    assert psnr(recon, target, mask) == pytest.approx(expected)
    assert psnr(target, target, mask) == float("inf")


def test_identical_images_have_ssim_one():
    _, target, mask = _images()
    assert ssim(target, target, mask) == pytest.approx(1.0, abs=1e-12)
    m = reconstruction_metrics(target, target, mask)
    assert m["ssim"] == pytest.approx(1.0) and m["psnr"] == float("inf")


@pytest.mark.parametrize("seed", range(3))
def test_ssim_matches_monai(seed):
    recon, target, mask = _images(seed)
    t = target[mask]
    data_range = float(t.max() - t.min())
    # MONAI on the mask's box, zeroed outside the brain and padded by the window radius (valid convolution)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))
    m = mask[box]

    def prep(a):
        return torch.as_tensor(np.pad(np.where(m, a[box], 0.0), 5)[None, None], dtype=torch.float64)

    ssim_map, _ = compute_ssim_and_cs(prep(recon), prep(target), spatial_dims=3, kernel_size=(11, 11, 11),
                                      kernel_sigma=(1.5, 1.5, 1.5), data_range=data_range)
    expected = float(ssim_map[0, 0].numpy()[m].mean())
    assert ssim(recon, target, mask) == pytest.approx(expected, rel=1e-5)
    assert 0 < ssim(recon, target, mask) < 1


def test_reconstruction_ignores_everything_outside_the_mask():
    recon, target, mask = _images()
    other = np.where(mask, recon, -100.0)
    expected = reconstruction_metrics(recon, target, mask)
    assert reconstruction_metrics(other, target, mask) == pytest.approx(expected)


def test_ssim_decreases_with_noise():
    recon, target, mask = _images()
    noisier = np.where(mask, target + 2 * (recon - target), 0)
    assert ssim(noisier, target, mask) < ssim(recon, target, mask)
    assert psnr(noisier, target, mask) < psnr(recon, target, mask)


# --- bad inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("pred", "truth", "match"),
    [
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), "shape"),
        (np.zeros((4, 4)), np.zeros((4, 4)), "pred must be a 3-D"),
        (np.zeros((4, 4, 4)), np.zeros((4, 4)), "truth must be a 3-D"),
        (np.full((4, 4, 4), 4), np.zeros((4, 4, 4)), "pred holds values"),
        (np.zeros((4, 4, 4)), np.full((4, 4, 4), -1), "truth holds values"),
        (np.full((4, 4, 4), 0.5), np.zeros((4, 4, 4)), "pred must hold integer"),
        (np.zeros((4, 4, 4), np.uint8), np.full((4, 4, 4), "a"), "truth must hold integer"),
    ],
)
def test_segmentation_metrics_rejects_bad_inputs(pred, truth, match):
    with pytest.raises(ValueError, match=match):
        segmentation_metrics(pred, truth)


@pytest.mark.parametrize("spacing", [(1, 1), (1, 0, 1), (1, -2, 1), (1, np.nan, 1)])
def test_bad_spacing_raises(spacing):
    label = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="spacing"):
        segmentation_metrics(label, label, spacing)


def test_bad_percentile_raises():
    with pytest.raises(ValueError, match="percentile"):
        hd95(np.ones((3, 3, 3)), np.ones((3, 3, 3)), percentile=101)


def test_reconstruction_rejects_bad_inputs():
    recon, target, mask = _images()
    with pytest.raises(ValueError, match="recon has shape"):
        reconstruction_metrics(recon[:-1], target, mask)
    with pytest.raises(ValueError, match="mask has shape"):
        reconstruction_metrics(recon, target, mask[:-1])
    with pytest.raises(ValueError, match="empty"):
        reconstruction_metrics(recon, target, np.zeros_like(mask))
    with pytest.raises(ValueError, match="constant"):
        reconstruction_metrics(recon, np.ones_like(target), mask)
    with pytest.raises(ValueError, match="finite"):
        reconstruction_metrics(np.where(mask, np.nan, 0), target, mask)
    with pytest.raises(ValueError, match="win_size"):
        ssim(recon, target, mask, win_size=4)


# --- the options threaded through the evaluation and stated by its tables -------------------------

def test_table2_states_its_metric_definitions():
    from mmdis.evaluation.tables import table2, table2_markdown

    rows = [{"method": "m", "case": "c", "subset": "FLAIR", "region": r, "metric": "dice", "value": 0.5}
            for r in ("WT", "TC", "ET", ET_PP)]
    config = MetricConfig(hd95="pooled", empty="brats2025", et_postprocess=True)
    table = table2(pd.DataFrame(rows), definitions=config)
    assert table.attrs["definitions"] == config.describe()
    assert list(table.columns[-4:]) == ["m WT", "m TC", "m ET", f"m {ET_PP}"]
    assert table2_markdown(table).rstrip().endswith(config.describe())
    assert "definitions" not in table2(pd.DataFrame(rows)).attrs  # nothing stated, nothing written


@pytest.mark.slow
def test_evaluation_reports_et_pp_only_when_asked(phantom_cache, tmp_path):
    from mmdis.evaluation.evaluate import EvalConfig, evaluate_run
    from mmdis.training.export import materialise

    run = materialise("cpu", "robustseg", tmp_path / "robustseg")
    base = EvalConfig(recon_cases=0, device="cpu", allow_train_overlap=True)  # the phantom it was trained on
    assert "metrics" not in base.resolved("cpu")  # default scoring: cached rows keep their keys
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the overlap with its training phantom, on purpose
        plain = evaluate_run(run, phantom_cache, base, progress=False)
        both = evaluate_run(run, phantom_cache, EvalConfig(**{**base.__dict__, "metrics": MetricConfig(
            et_postprocess=True)}), progress=False)
    assert set(plain["region"]) == {"WT", "TC", "ET"} and set(both["region"]) == {"WT", "TC", "ET", ET_PP}
    key = ["case", "subset", "region", "metric"]
    pd.testing.assert_frame_equal(plain.sort_values(key).reset_index(drop=True),
                                  both[both["region"] != ET_PP].sort_values(key).reset_index(drop=True))
