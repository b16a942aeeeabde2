"""Tests of mmdis.inspection (and its figure, mmdis.plotting.gates) on a tiny network (C = 4) and volumes
of about 14^3 whose sizes are not multiples of 8, so that every function also exercises the padding and the
crop back."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from mmdis.conventions import LABEL_CONVENTIONS, SUBSETS, subset_name
from mmdis.inspection.appearance import appearance_codes, modality_separation, pca_2d, swap_appearance
from mmdis.inspection.content import content_similarity, single_modality_codes
from mmdis.inspection.conventions import label_convention_table, subset_table
from mmdis.inspection.encoding import encode_case
from mmdis.inspection.gates import GATE_REGIONS, gate_maps, gate_region_means, gates_by_subset
from mmdis.inspection.loss_terms import case_losses
from mmdis.inspection.padding import crop_spatial, pad_to_multiple
from mmdis.losses import kl_loss, reconstruction_loss
from mmdis.models.encoders import gaussian_kl
from mmdis.models.networks import build_model
from mmdis.plotting.gates import plot_gates

SHAPE = (14, 13, 11)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # These tensors are tiny: one thread is faster than several, and far faster on a busy machine.
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def model(one_thread):
    torch.manual_seed(0)
    return build_model("robustseg", base_channels=4, appearance_channels=4).eval()


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(4, *SHAPE)).astype(np.float32)
    label = np.zeros(SHAPE, np.uint8)
    label[4:12, 4:12, 3:9] = 2
    label[6:10, 6:10, 4:8] = 3
    label[7:9, 7:9, 5:7] = 1
    mask = np.zeros(SHAPE, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    return image, label, mask


def test_pad_round_trip_numpy_and_tensor():
    x = np.arange(2 * 9 * 16 * 3, dtype=np.float32).reshape(2, 9, 16, 3)
    padded, shape = pad_to_multiple(x)
    assert padded.shape == (2, 16, 16, 8) and shape == (9, 16, 3)
    np.testing.assert_array_equal(crop_spatial(padded, shape), x)
    assert padded.sum() == x.sum()  # the padding is zeros
    t, shape_t = pad_to_multiple(torch.from_numpy(x), multiple=4, value=-1.0)
    assert tuple(t.shape) == (2, 12, 16, 4) and shape_t == shape
    assert torch.equal(crop_spatial(t, shape), torch.from_numpy(x))
    assert bool((t[:, 9:] == -1).all())


def test_encode_case_pads_and_is_deterministic(model, case):
    image = case[0]
    enc = encode_case(model, image)
    assert tuple(enc.x.shape) == (1, 4, 16, 16, 16)
    assert [tuple(c.shape[-3:]) for c in enc.content] == [(16, 16, 16), (8, 8, 8), (4, 4, 4), (2, 2, 2)]
    again = encode_case(model, image)
    assert torch.equal(enc.appearance, again.appearance) and torch.equal(enc.appearance, enc.mu)


def test_gate_maps_shapes_range_and_agree_with_decode(model, case):
    image = case[0]
    available = (True, False, True, True)
    gates = gate_maps(model, image, available)
    assert [g.shape for g in gates] == [(4, 14, 13, 11), (4, 7, 7, 6), (4, 4, 4, 3), (4, 2, 2, 2)]
    for g in gates:
        assert g.dtype == np.float32 and (g > 0).all() and (g < 1).all()
    with torch.no_grad():
        out = model.decode(encode_case(model, image), torch.tensor([available]))
    for g, ref in zip(gates, out.gates):
        np.testing.assert_allclose(g, crop_spatial(ref[0].detach().numpy(), g.shape[1:]), atol=1e-6)


def test_gates_need_gated_fusion(case):
    mean_model = build_model("ablation-mean", base_channels=4)
    with pytest.raises(ValueError, match="gated"):
        gate_maps(mean_model, case[0])


def test_region_means_by_hand():
    # Label 4 x 2 x 2: first half edema, a single enhancing voxel, the rest background.
    label = np.zeros((4, 2, 2), np.uint8)
    label[:2] = 2
    label[3, 1, 1] = 3
    stage0 = np.zeros((1, 4, 2, 2), np.float32)
    stage0[0, :2] = 0.2
    stage0[0, 2:] = 0.6
    stage0[0, 3, 1, 1] = 1.0
    stage1 = np.array([[0.3, 0.9]], np.float32).reshape(1, 2, 1, 1)  # voxel 0 covers label[:2], 1 label[2:]
    df = gate_region_means([stage0, stage1], label).set_index(["stage", "region"])
    assert df.loc[(0, "edema"), "mean_gate"] == pytest.approx(0.2)
    assert df.loc[(0, "enhancing"), "mean_gate"] == pytest.approx(1.0)
    assert df.loc[(0, "background"), "mean_gate"] == pytest.approx(0.6)
    assert np.isnan(df.loc[(0, "core"), "mean_gate"]) and df.loc[(0, "core"), "voxels"] == 0
    assert df.loc[(1, "edema"), "mean_gate"] == pytest.approx(0.3)
    assert df.loc[(1, "enhancing"), "mean_gate"] == pytest.approx(0.9)
    assert df.loc[(1, "background"), "mean_gate"] == pytest.approx(0.9)
    assert df.loc[(1, "edema"), "voxels"] == 8 and df.loc[(1, "background"), "voxels"] == 7


def test_region_means_equal_upsampled_gate_means(model, case):
    image, label, mask = case
    gates = gate_maps(model, image)
    df = gate_region_means(gates, label, mask)
    assert len(df) == 4 * 4 * 4
    for s in (1, 3):
        f = 2**s
        full = gates[s].repeat(f, 1).repeat(f, 2).repeat(f, 3)[:, : SHAPE[0], : SHAPE[1], : SHAPE[2]]
        for region, k in GATE_REGIONS.items():
            sel = (label == k) & mask
            rows = df[(df["stage"] == s) & (df["region"] == region)]
            np.testing.assert_allclose(rows["mean_gate"], full[:, sel].mean(axis=1), rtol=1e-4)
            assert (rows["voxels"] == sel.sum()).all()


def test_gates_by_subset_keeps_only_fused_modalities(model, case):
    image, label, mask = case
    subsets = [SUBSETS[0], SUBSETS[9], SUBSETS[-1]]  # T2, FLAIR+T1c, all
    df = gates_by_subset(model, image, label, mask, subsets)
    assert list(dict.fromkeys(df["subset"])) == [subset_name(s) for s in subsets]
    assert len(df) == (1 + 2 + 4) * 4 * 4
    assert set(df.query("subset == 'FLAIR+T1c'")["modality"]) == {"FLAIR", "T1c"}
    full = gate_region_means(gate_maps(model, image), label, mask)
    np.testing.assert_allclose(df.query("n_modalities == 4")["mean_gate"], full["mean_gate"], rtol=1e-6)


def test_appearance_codes(model, case):
    image = case[0]
    cases = [SimpleNamespace(case_id=f"c{k}", image=image * (k + 1), available=np.array([1, 1, 0, 1], bool))
             for k in range(2)]
    df = appearance_codes(model, cases)
    assert len(df) == 6 and set(df["modality"]) == {"FLAIR", "T1", "T2"}
    codes = df.filter(regex=r"^a\d+$").to_numpy()
    assert codes.shape == (6, 8)
    enc = encode_case(model, image)
    np.testing.assert_allclose(codes[:3], enc.mu[0, [0, 1, 3]].numpy(), atol=1e-6)
    np.testing.assert_allclose(df["kl"][:3], gaussian_kl(enc.mu, enc.logvar)[0, [0, 1, 3]], rtol=1e-5)
    with pytest.raises(ValueError, match="appearance"):
        appearance_codes(build_model("ablation-mean", base_channels=4), cases)


def test_modality_separation_by_hand():
    # Two modalities, two cases each, 2-d codes: group means (0, 1) and (2, 1), grand mean (1, 1).
    codes = pd.DataFrame({"modality": ["A", "A", "B", "B"], "a0": [0.0, 0.0, 2.0, 2.0],
                          "a1": [0.0, 2.0, 0.0, 2.0]})
    assert modality_separation(codes) == pytest.approx(4.0 / 8.0)
    codes["a1"] = 1.0  # no spread within a modality: the modality explains everything
    assert modality_separation(codes) == pytest.approx(1.0)


def test_pca_matches_numpy_eigendecomposition():
    x = np.random.default_rng(0).normal(size=(40, 6)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    scores, explained = pca_2d(x)
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(values)[::-1]
    ref = (x - x.mean(0)) @ vectors[:, order[:2]]
    np.testing.assert_allclose(np.abs(scores), np.abs(ref), atol=1e-8)  # axes are defined up to sign
    np.testing.assert_allclose(explained, values[order[:2]] / values.sum(), rtol=1e-8)


def test_content_similarity(model, case):
    image, _, mask = case
    enc = encode_case(model, image)
    sim = content_similarity(model, enc, mask=mask)
    assert sim.shape == (4, 4)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-5)
    np.testing.assert_allclose(sim, sim.T, atol=1e-6)
    assert (np.abs(sim) <= 1 + 1e-5).all()
    # Mean fusion of one modality is that modality's content code itself.
    mean_model = build_model("ablation-mean", base_channels=4).eval()
    enc_mean = encode_case(mean_model, image)
    single = single_modality_codes(mean_model, enc_mean, stage=2)
    assert torch.equal(single, enc_mean.content[2][0])
    with pytest.raises(ValueError, match="early"):
        single_modality_codes(build_model("imputation", base_channels=4), enc_mean)


def test_swap_appearance_diagonal_is_the_reconstruction(model, case):
    image = case[0]
    available = (True, True, False, True)
    grid = swap_appearance(model, image, available)
    assert grid.shape == (4, 4, *SHAPE)
    with torch.no_grad():
        out = model.decode(encode_case(model, image), torch.tensor([available]))
    recon = crop_spatial(out.recon[0].detach().numpy(), SHAPE)
    np.testing.assert_allclose(grid[[0, 1, 2, 3], [0, 1, 2, 3]], recon, atol=1e-5)
    assert not np.allclose(grid[0, 0], grid[0, 3])  # another appearance code changes the rendering


def test_case_losses_sum_to_the_loss_terms(model, case):
    image, label, mask = case
    per_mod, terms = case_losses(model, image, label, mask, present=(True, True, True, False))
    assert list(per_mod["modality"]) == ["FLAIR", "T1", "T1c"]
    assert per_mod["rec_l1"].sum() == pytest.approx(terms["rec"], rel=1e-5)
    assert per_mod["kl"].sum() == pytest.approx(terms["kl"], rel=1e-5)
    assert terms["total"] == pytest.approx(terms["seg"] + 0.1 * terms["rec"] + 0.1 * terms["kl"], rel=1e-5)
    # The same numbers straight from the loss functions, without padding.
    with torch.no_grad():
        out = model.decode(encode_case(model, image), torch.ones(1, 4, dtype=torch.bool))
    recon = crop_spatial(out.recon, SHAPE)
    present = torch.tensor([[True, True, True, False]])
    ref = reconstruction_loss(recon, torch.from_numpy(image)[None], present, torch.from_numpy(mask)[None])
    assert terms["rec"] == pytest.approx(float(ref), rel=1e-5)
    assert terms["kl"] == pytest.approx(float(kl_loss(out.kl, present)), rel=1e-5)


def test_tables():
    labels = label_convention_table()
    assert list(labels.index) == [0, 1, 2, 3]
    assert labels.loc[1, "brats2015"] == "1, 3" and labels.loc[3, "brats2021"] == "4"
    assert labels.loc[2, "msd"] == "1" and labels.loc[3, "brats2023"] == "3"
    assert set(labels.columns) == {"tissue", *LABEL_CONVENTIONS}
    subsets = subset_table()
    assert len(subsets) == 15 and list(subsets["subset"]) == [subset_name(s) for s in SUBSETS]
    assert "".join(subsets.loc[10, ["FLAIR", "T1", "T1c", "T2"]]) == "●○●○"


def test_plot_gates(model, case):
    image, label, mask = case
    gates = gate_maps(model, image, (True, False, True, True))
    fig = plot_gates(image[0], gates, 6, label=label, mask=mask, modalities=[0, 2, 3])
    assert isinstance(fig, Figure) and len(fig.axes) == 16 + 1  # 4 stages x 4 modalities + colour bar
    one = plot_gates(image[0], gates, 6, stages=[2])
    assert len(one.axes) == 4 + 1
