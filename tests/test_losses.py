"""Tests of mmdis.losses against MONAI, PyTorch and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from mmdis.losses import (
    LossConfig,
    class_weights,
    dice_loss,
    kl_loss,
    reconstruction_loss,
    segmentation_loss,
    total_loss,
    weighted_cross_entropy,
)
from mmdis.models import ModelOutput
from mmdis.models.encoders import gaussian_kl


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (2, 6, 5, 4), generator=g)
    return logits, y


def test_dice_matches_monai(batch):
    logits, y = batch
    ref = DiceLoss(
        softmax=True, to_onehot_y=True, squared_pred=True, batch=True, smooth_nr=0.0, smooth_dr=1e-7
    )(logits, y[:, None])
    torch.testing.assert_close(dice_loss(logits, y, eps=1e-7), ref)


def test_dice_hand_values():
    # Two voxels, two classes, near-perfect logits -> loss ~ 0; uniform logits -> known value.
    y = torch.tensor([0, 1]).reshape(1, 2, 1, 1)
    perfect = torch.tensor([[50.0, -50.0], [-50.0, 50.0]]).T.reshape(1, 2, 2, 1, 1)
    assert dice_loss(perfect, y).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 2, 2, 1, 1)
    # Per class: 2 * 0.5 / (1 + 0.25 + 0.25) = 2/3, so the loss is 1/3.
    assert dice_loss(uniform, y, eps=0.0).item() == pytest.approx(1 / 3)


def test_class_weights_hand_values():
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 3]).reshape(1, 2, 2, 2)
    torch.testing.assert_close(class_weights(y, 4), torch.tensor([1 - 5 / 8, 1 - 2 / 8, 1.0, 1 - 1 / 8]))


def test_weighted_ce_matches_torch(batch):
    logits, y = batch
    w = class_weights(y, 4).double()
    ref = F.cross_entropy(logits, y, weight=w, reduction="sum") / y.numel()
    torch.testing.assert_close(weighted_cross_entropy(logits, y), ref)


def test_weighted_ce_hand_values():
    # Uniform logits over K=4 classes: -log q = log 4 everywhere; weights 1 - N_k / N.
    y = torch.tensor([0, 0, 0, 1]).reshape(1, 4, 1, 1)
    logits = torch.zeros(1, 4, 4, 1, 1)
    expected = (3 * 0.25 + 1 * 0.75) * math.log(4) / 4
    assert weighted_cross_entropy(logits, y).item() == pytest.approx(expected)


def test_segmentation_loss_is_sum(batch):
    logits, y = batch
    seg, dice, ce = segmentation_loss(logits, y)
    torch.testing.assert_close(seg, dice + ce)


def test_reconstruction_loss_hand_values():
    x = torch.zeros(1, 4, 2, 2, 2)
    recon = torch.zeros(1, 4, 2, 2, 2)
    recon[0, 0] = 1.0  # |err| = 1 everywhere for modality 0
    recon[0, 2, 0] = 2.0  # |err| = 2 on half the voxels of modality 2
    assert reconstruction_loss(recon, x).item() == pytest.approx(1.0 + 1.0)
    present = torch.tensor([[False, True, True, True]])
    assert reconstruction_loss(recon, x, present).item() == pytest.approx(1.0)
    mask = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    mask[0, 0] = True  # only where modality 2 is wrong
    assert reconstruction_loss(recon, x, mask=mask).item() == pytest.approx(1.0 + 2.0)
    assert reconstruction_loss(recon, x, present, mask[:, None]).item() == pytest.approx(2.0)


def test_kl_hand_values_and_nonnegative():
    mu = torch.zeros(2, 4, 8)
    logvar = torch.zeros(2, 4, 8)
    assert torch.equal(gaussian_kl(mu, logvar), torch.zeros(2, 4))
    mu[0, 1, 0] = 2.0  # 0.5 * 4 = 2
    logvar[1, 3, :] = math.log(2.0)  # 0.5 * 8 * (2 - 1 - log 2)
    kl = gaussian_kl(mu, logvar)
    assert kl[0, 1].item() == pytest.approx(2.0)
    assert kl[1, 3].item() == pytest.approx(4 * (1 - math.log(2)))
    assert kl_loss(kl).item() == pytest.approx((2.0 + 4 * (1 - math.log(2))) / 2)
    present = torch.tensor([[True, False, True, True], [True] * 4])
    assert kl_loss(kl, present).item() == pytest.approx(4 * (1 - math.log(2)) / 2)
    g = torch.Generator().manual_seed(3)
    assert (gaussian_kl(torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g) * 3) >= 0).all()


def test_total_loss_combines_terms(batch):
    logits, y = batch
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, 5, 4, generator=g, dtype=torch.float64)
    recon = x + 0.5
    kl = torch.rand(2, 4, generator=g, dtype=torch.float64)
    out = ModelOutput(seg=logits, delta=torch.ones(2, 4, dtype=torch.bool), recon=recon, kl=kl)
    cfg = LossConfig(lambda_rec=0.3, beta_kl=0.2)
    terms = total_loss(out, x, y, cfg)
    assert set(terms) == {"total", "seg", "dice", "ce", "rec", "kl"}
    assert terms["rec"].item() == pytest.approx(4 * 0.5)
    assert terms["kl"].item() == pytest.approx(kl.sum(1).mean().item())
    torch.testing.assert_close(terms["total"], terms["seg"] + 0.3 * terms["rec"] + 0.2 * terms["kl"])
    plain = total_loss(ModelOutput(seg=logits, delta=out.delta), x, y)
    assert plain["rec"].item() == plain["kl"].item() == 0.0
    torch.testing.assert_close(plain["total"], plain["seg"])


def test_total_loss_rejects_bad_labels(batch):
    logits, y = batch
    with pytest.raises(ValueError, match="y must have shape"):
        total_loss(ModelOutput(seg=logits, delta=torch.ones(2, 4, dtype=torch.bool)), logits, y[:, :3])


@pytest.mark.parametrize(("field", "value"), [("lambda_rec", -1.0), ("beta_kl", -0.1), ("eps", 0.0)])
def test_loss_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        LossConfig(**{field: value})


def test_class_weights_single_class_batch_is_zero():
    # w_k = 1 - N_k / N: a patch of background only gives the background weight 0, so CE vanishes and
    # only the Dice term trains on it (the authors' behaviour, documented in class_weights).
    y = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    torch.testing.assert_close(class_weights(y, 4), torch.tensor([0.0, 1.0, 1.0, 1.0]))
    assert weighted_cross_entropy(torch.randn(1, 4, 2, 2, 2), y).item() == 0.0


def test_absent_modalities_cannot_poison_the_loss():
    """A NaN image of a modality absent from the data leaves rec and its gradient finite."""
    x = torch.zeros(2, 4, 2, 2, 2)
    x[0, 1] = float("nan")
    recon = torch.full((2, 4, 2, 2, 2), 0.5, requires_grad=True)
    present = torch.ones(2, 4, dtype=torch.bool)
    present[0, 1] = False
    rec = reconstruction_loss(recon, x, present)
    # Sample 0 has three present modalities, sample 1 four, each with error 0.5.
    assert rec.item() == pytest.approx((3 * 0.5 + 4 * 0.5) / 2)
    rec.backward()
    assert torch.isfinite(recon.grad).all() and (recon.grad[0, 1] == 0).all()
    kl = torch.ones(2, 4)
    kl[0, 1] = float("nan")
    assert kl_loss(kl, present).item() == pytest.approx((3 + 4) / 2)


def test_present_mask_shape_checked():
    with pytest.raises(ValueError, match="present must have shape"):
        kl_loss(torch.ones(2, 4), torch.ones(2, 3, dtype=torch.bool))
