"""Crop, z-score, resample and their inverses."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdis.conventions import MODALITIES
from mmdis.data.io import IntensityError, RawCase
from mmdis.data.preprocess import (
    CropInfo,
    bounding_box,
    crop,
    preprocess_case,
    resize,
    restore_prediction,
    uncrop,
    zscore,
)


def make_raw(shape=(20, 24, 18), missing=(), spacing=1.0, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[3:15, 5:20, 2:14] = True
    images = {}
    for i, m in enumerate(MODALITIES):
        if m in missing:
            continue
        images[m] = np.where(mask, rng.normal(100 * (i + 1), 10 + i, shape), 0).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[6:10, 8:12, 5:9] = 2
    label[7:9, 9:11, 6:8] = 3
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    return RawCase("case0", "brats2021", images, label, affine, "brats2021")


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(*[st.integers(3, 12)] * 3),
    data=st.data(),
)
def test_uncrop_of_crop_is_identity_inside_the_box(shape, data):
    rng = np.random.default_rng(0)
    mask = rng.random(shape) > 0.7
    mask[tuple(data.draw(st.integers(0, n - 1)) for n in shape)] = True
    margin = data.draw(st.integers(0, 3))
    start, stop = bounding_box(mask, margin)
    vol = rng.normal(size=shape).astype(np.float32) * mask  # nothing outside the mask
    back = uncrop(crop(vol, start, stop), start, stop, shape)
    np.testing.assert_array_equal(back, vol)
    assert crop(mask, start, stop).sum() == mask.sum()


def test_bounding_box_is_tight_and_margin_clips():
    mask = np.zeros((10, 10, 10), bool)
    mask[2:5, 3, 7:9] = True
    assert bounding_box(mask) == ((2, 3, 7), (5, 4, 9))
    assert bounding_box(mask, margin=2) == ((0, 1, 5), (7, 6, 10))
    with pytest.raises(ValueError, match="empty"):
        bounding_box(np.zeros((3, 3, 3), bool))


def test_zscore_statistics_inside_mask():
    rng = np.random.default_rng(1)
    img = rng.normal(50, 7, (16, 16, 16)).astype(np.float32)
    mask = rng.random((16, 16, 16)) > 0.4
    out = zscore(img, mask)
    assert abs(out[mask].mean()) < 1e-5
    assert abs(out[mask].std() - 1) < 1e-4
    assert np.all(out[~mask] == 0)
    assert np.all(zscore(np.full((4, 4, 4), 3.0, np.float32), np.ones((4, 4, 4), bool)) == 0)


def test_preprocess_case_crops_and_normalises():
    raw = make_raw()
    case = preprocess_case(raw)
    assert case.image.shape == (4, 12, 15, 12)
    assert case.crop.start == (3, 5, 2) and case.crop.stop == (15, 20, 14)
    for c in range(4):
        vals = case.image[c][case.mask]
        assert abs(vals.mean()) < 1e-4 and abs(vals.std() - 1) < 1e-3
    assert case.available.tolist() == [True] * 4
    # the label is cropped with the same box
    assert case.label.sum() == raw.label.sum()


def test_missing_modality_is_flagged_not_filled():
    case = preprocess_case(make_raw(missing=("t1",)))
    assert case.available.tolist() == [True, False, True, True]
    assert np.all(case.image[1] == 0)


def test_restore_prediction_is_identity_on_label_without_resampling():
    raw = make_raw()
    case = preprocess_case(raw)
    back = restore_prediction(case.label, case.crop)
    np.testing.assert_array_equal(back, raw.label)
    assert back.shape == raw.label.shape


def test_resampling_changes_spacing_and_restores_shape():
    raw = make_raw(shape=(20, 24, 18), spacing=1.0)
    raw.label[4:14, 6:18, 3:13] = 1
    case = preprocess_case(raw, target_spacing=2.0)
    assert case.image.shape == (4, 6, 8, 6)
    assert np.allclose(case.crop.spacing, (2.0, 1.875, 2.0))
    back = restore_prediction(case.label, case.crop)
    assert back.shape == raw.label.shape
    # nearest-neighbour down and up again keeps most of a blob
    dice = 2 * ((back > 0) & (raw.label > 0)).sum() / ((back > 0).sum() + (raw.label > 0).sum())
    assert dice > 0.7  # one coarse voxel of boundary error on a 5-voxel-wide blob
    probs = restore_prediction(np.zeros((4, *case.crop.shape), np.float32), case.crop)
    assert probs.shape == (4, *raw.label.shape)


def test_resize_exact_shape_and_identity():
    vol = np.random.default_rng(2).normal(size=(7, 9, 5)).astype(np.float32)
    assert resize(vol, (13, 4, 10), order=1).shape == (13, 4, 10)
    np.testing.assert_array_equal(resize(vol, (7, 9, 5), order=1), vol)


def test_preprocessed_case_keeps_given_mask_and_zscored_images():
    raw = make_raw()
    raw.zscored = True
    raw.brain_mask = raw.images["flair"] != 0
    raw.brain_mask[3:5] = False  # a given mask smaller than the non-zero region wins
    case = preprocess_case(raw)
    assert case.crop.start[0] == 5
    np.testing.assert_allclose(case.image[0][case.mask], raw.images["flair"][5:15, 5:20, 2:14][case.mask])


def test_empty_brain_raises():
    raw = make_raw()
    raw.images = {m: np.zeros_like(v) for m, v in raw.images.items()}
    with pytest.raises(IntensityError, match="case0.*empty"):
        preprocess_case(raw)


def test_crop_info_json_round_trip():
    info = preprocess_case(make_raw()).crop
    import json

    again = CropInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info
