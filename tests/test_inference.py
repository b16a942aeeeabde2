"""Sliding-window inference over modality subsets (mmdis.inference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmdis.conventions import SUBSETS
from mmdis.inference import feasible_subsets, predict_subsets
from mmdis.models import build_model

VARIANTS = ("robustseg", "ablation-mean", "ablation-mean-dis", "hemis", "imputation")


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, base_channels=4, appearance_channels=4).eval()


@pytest.mark.parametrize("name", VARIANTS)
def test_one_window_equals_direct_decoding_for_all_15_subsets(name):
    model = _model(name)
    image = torch.randn(4, 16, 24, 16)
    pred = predict_subsets(model, image, roi_size=(16, 24, 16), mode="constant", with_probs=True)
    assert pred.subsets == list(SUBSETS)
    assert pred.labels.shape == (15, 16, 24, 16) and pred.labels.dtype == np.uint8
    with torch.no_grad():
        enc = model.encode(image[None])
        for s, subset in enumerate(SUBSETS):
            out = model.decode(enc, torch.tensor([subset]))
            probs = torch.softmax(out.seg, dim=1)[0].numpy()
            np.testing.assert_allclose(pred.probs[s], probs, atol=1e-5)
            if out.recon is not None:
                np.testing.assert_allclose(pred.recon[s], out.recon[0].numpy(), atol=1e-5)
    assert (pred.recon is None) == (not model.config.disentangle)


def test_sliding_windows_cover_a_volume_larger_than_the_window():
    model = _model("robustseg")
    image = torch.randn(4, 24, 40, 17)  # 17 is not a multiple of 8: MONAI pads the windows
    pred = predict_subsets(model, image, roi_size=16, overlap=0.5, subsets=SUBSETS[:3])
    assert pred.labels.shape == (3, 24, 40, 17)
    assert pred.recon.shape == (3, 4, 24, 40, 17)
    assert np.isfinite(pred.recon).all()
    assert pred.names() == ["T2", "T1c", "T1"]


def test_subset_batch_does_not_change_the_result():
    model = _model("robustseg")
    image = torch.randn(4, 16, 16, 16)
    a = predict_subsets(model, image, roi_size=16, subset_batch=1, with_probs=True)
    b = predict_subsets(model, image, roi_size=16, subset_batch=15, with_probs=True)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


def test_missing_modality_channel_is_ignored_and_subsets_are_restricted():
    model = _model("robustseg")
    image = torch.randn(4, 16, 16, 16)
    available = (True, False, True, False)
    a = predict_subsets(model, image, available=available, roi_size=16, with_probs=True)
    image[1] = 100.0  # garbage where T1 is missing
    b = predict_subsets(model, image, available=available, roi_size=16, with_probs=True)
    assert a.names() == ["T1c", "FLAIR", "FLAIR+T1c"]
    np.testing.assert_array_equal(a.probs, b.probs)


def test_feasible_subsets():
    feasible, skipped = feasible_subsets((True, False, True, False))
    assert len(feasible) == 3 and len(skipped) == 12
    assert feasible_subsets((True,) * 4) == (list(SUBSETS), [])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"roi_size": 12}, "roi_size"),
        ({"overlap": 1.0}, "overlap"),
        ({"subsets": []}, "subsets"),
        ({"subsets": [(False,) * 4]}, "subsets"),
        ({"available": (True, False, False, False), "subsets": [(False, True, False, False)]}, "T1"),
        ({"available": (False,) * 4}, "available"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict_subsets(_model("hemis"), torch.zeros(4, 16, 16, 16), **kwargs)


def test_bad_image_shape():
    with pytest.raises(ValueError, match="image"):
        predict_subsets(_model("hemis"), torch.zeros(3, 16, 16, 16))


def test_decode_without_reconstruction_gives_the_same_segmentation():
    model = _model("robustseg")
    x = torch.randn(2, 4, 16, 16, 16)
    available = torch.tensor([[True, False, True, True], [False, True, False, False]])
    with torch.no_grad():
        enc = model.encode(x)
        full, seg_only = model.decode(enc, available), model.decode(enc, available, reconstruct=False)
    torch.testing.assert_close(full.seg, seg_only.seg)
    assert full.recon is not None and seg_only.recon is None and seg_only.kl is None
