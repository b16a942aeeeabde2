"""The switches of the faithful reproduction: gate norm, MUNIT-sized decoders, uniform crops, the L1's
region, window blending, snapshots, and the ``paper`` profile that turns them on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmdis.data.cache import Cache, write_cached_case
from mmdis.data.datasets import PatchConfig, PatchDataset
from mmdis.data.preprocess import CropInfo, PreprocessedCase
from mmdis.evaluation import evaluate as evaluate_mod
from mmdis.evaluation.evaluate import EvalConfig, evaluate_run
from mmdis.losses import LossConfig, total_loss
from mmdis.models.config import VARIANTS, ModelConfig, variant_config
from mmdis.models.decoders import ReconDecoder
from mmdis.models.encoders import AppearanceEncoder
from mmdis.models.fusion import GatedFusion, HeMISFusion, MeanFusion, build_fusion
from mmdis.models.networks import ModelOutput, MultimodalSegNet
from mmdis.profiles import Profile
from mmdis.training import TrainConfig, make_config, train

TINY = {"base_channels": 2, "recon_channels": 8, "appearance_channels": 4}


def _paper_switches(**extra):
    """The paper profile's model overrides, shrunk to test size."""
    return {**make_config("paper").model, **TINY, **extra}


# ------------------------------------------------------------------------------------------ gate norm
def test_gate_norm_centres_the_gate_logits():
    torch.manual_seed(0)
    plain, normed = GatedFusion(3, 4), GatedFusion(3, 4, gate_norm=True)
    assert isinstance(plain.gate_norm, nn.Identity)
    assert isinstance(normed.gate_norm, nn.InstanceNorm3d) and normed.gate_norm.num_features == 4
    assert normed.gate_norm.affine
    normed.gate_conv.load_state_dict(plain.gate_conv.state_dict())
    with torch.no_grad():
        for f in (plain, normed):
            f.gate_conv.bias += 20.0
    logits = []
    normed.gate_norm.register_forward_hook(lambda mod, inp, out: logits.append(out))
    content, delta = torch.randn(2, 4, 3, 4, 4, 4), torch.ones(2, 4, dtype=torch.bool)
    _, g_plain = plain(content, delta)
    z, gate = normed(content, delta)
    assert z.shape == (2, 3, 4, 4, 4) and gate.shape == (2, 4, 4, 4, 4)
    assert ((gate > 0) & (gate < 1)).all()
    assert g_plain.min() > 0.999  # saturated without the norm
    assert logits[0].mean(dim=(2, 3, 4)).abs().max() < 1e-4  # per sample and modality
    torch.testing.assert_close(torch.sigmoid(logits[0]), gate)
    assert gate.mean() < 0.75 and gate.min() < 0.5


def test_missing_modality_has_no_influence_with_gate_norm():
    torch.manual_seed(0)
    model = MultimodalSegNet(variant_config("robustseg", gate_norm=True, **TINY)).eval()
    x = torch.randn(2, 4, 16, 16, 16)
    available = torch.tensor([[True, False, True, True], [False, True, True, False]])
    out = model(x, available)
    other = x.clone()
    other[0, 1], other[1, 0], other[1, 3] = 50.0, torch.randn(16, 16, 16) * 10, -7.0
    again = model(other, available)
    for a, b in zip(out.fused, again.fused):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.seg, again.seg, rtol=0, atol=1e-6)
    other[0, 2] += 1.0  # a used modality does change z
    assert not torch.allclose(model(other, available).fused[-1][0], out.fused[-1][0])


def test_gate_norm_is_ignored_by_the_other_fusions():
    assert isinstance(build_fusion("mean", 8, 4, gate_norm=True), MeanFusion)
    assert isinstance(build_fusion("hemis", 8, 4, gate_norm=True), HeMISFusion)
    for method in ("ablation-mean", "hemis", "imputation", "ablation-mean-dis"):
        a = MultimodalSegNet(variant_config(method, **TINY)).state_dict()
        b = MultimodalSegNet(variant_config(method, gate_norm=True, **TINY)).state_dict()
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}, method
    keys = MultimodalSegNet(variant_config("robustseg", gate_norm=True, **TINY)).state_dict()
    assert {f"fusions.{s}.gate_norm.weight" for s in range(4)} <= set(keys)


# ------------------------------------------------------------------------- reconstruction decoders
def test_shared_adain_is_one_gamma_beta_per_decoder():
    torch.manual_seed(0)
    per_layer, shared = ReconDecoder(16, 8), ReconDecoder(16, 8, shared_adain=True)
    assert per_layer.mlp[-1].out_features == 4 * 4 * 8 and shared.mlp[-1].out_features == 2 * 8
    z, a = torch.randn(2, 16, 2, 2, 2), torch.randn(2, 8)
    assert per_layer(z, a).shape == (2, 1, 16, 16, 16)
    assert (out := shared(z, a)).shape == (2, 1, 16, 16, 16)
    params = shared.mlp(a)
    gamma, beta = params.split(8, dim=1)
    assert torch.equal(params.repeat(1, 2), torch.cat([gamma, beta, gamma, beta], dim=1))
    h = F.relu(shared.inp(z))
    for block in shared.res:
        h = block(h, params.repeat(1, 2))
    torch.testing.assert_close(shared.out(shared.up(h)), out)
    model = MultimodalSegNet(variant_config("robustseg", recon_shared_adain=True, **TINY))
    assert all(d.mlp[-1].out_features == 16 for d in model.recon_decoders)


def test_recon_kernels_follow_the_config():
    cfg = variant_config("robustseg", recon_up_kernel=5, recon_out_kernel=7, **TINY)
    model = MultimodalSegNet(cfg).eval()
    for dec in model.recon_decoders:
        ups = [m for m in dec.up if isinstance(m, nn.Conv3d)]
        assert len(ups) == 3 and all(c.kernel_size == (5, 5, 5) and c.padding == (2, 2, 2) for c in ups)
        assert dec.out.kernel_size == (7, 7, 7)
    out = model(torch.randn(1, 4, 16, 16, 16), torch.ones(1, 4, dtype=torch.bool))
    assert out.recon.shape == (1, 4, 16, 16, 16)


@pytest.mark.parametrize("k", [3, 4])
def test_appearance_kernel_halves_every_stride_2_stage(k):
    enc = AppearanceEncoder(1, 2, 8, kernel_size=k)
    strided = [m for m in enc.features if isinstance(m, nn.Conv3d) and m.stride == (2, 2, 2)]
    assert len(strided) == 4 and all(c.kernel_size == (k, k, k) for c in strided)
    sizes = []
    for conv in strided:
        conv.register_forward_hook(lambda mod, inp, out: sizes.append(tuple(out.shape[2:])))
    mu, logvar = enc(torch.randn(1, 1, 32, 32, 32))
    assert sizes == [(16,) * 3, (8,) * 3, (4,) * 3, (2,) * 3]
    assert mu.shape == logvar.shape == (1, 8)
    model = MultimodalSegNet(variant_config("robustseg", appearance_kernel=k, **TINY))
    assert model.appearance_encoders[0].features[2].kernel_size == (k, k, k)


@pytest.mark.parametrize("field, value", [
    ("recon_up_kernel", 4), ("recon_up_kernel", 0), ("recon_up_kernel", True), ("recon_up_kernel", 3.0),
    ("recon_out_kernel", 2), ("recon_out_kernel", -3), ("appearance_kernel", 1), ("appearance_kernel", 8),
    ("appearance_kernel", True), ("gate_norm", 1), ("recon_shared_adain", "yes"),
])
def test_bad_model_switches_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{field: value})


# --------------------------------------------------------------------------------------- sampling
@pytest.fixture(scope="module")
def corner_cache(tmp_path_factory):
    """One 8^3 case whose channels 0-2 hold the voxel's coordinates, with a 2^3 tumour in a corner."""
    shape = (8, 8, 8)
    image = np.zeros((4, *shape), np.float32)
    image[:3] = np.indices(shape)
    label = np.zeros(shape, np.uint8)
    label[:2, :2, :2] = 2
    crop = CropInfo(shape, tuple(tuple(r) for r in np.eye(4).tolist()), (0, 0, 0), shape,
                    (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), shape)
    case = PreprocessedCase("c0", image, np.ones(4, bool), label, np.ones(shape, bool), crop, "brats2021")
    root = tmp_path_factory.mktemp("corner")
    write_cached_case(case, root / "cases", {"spacing": None})
    return root


def test_uniform_sampling_covers_every_position(corner_cache):
    cfg = PatchConfig(patch_size=(4, 4, 4), sampling="uniform", flip=False, intensity_scale=0.0,
                      intensity_shift=0.0)
    ds = PatchDataset(corner_cache, ["c0"], samples_per_epoch=2000, config=cfg, seed=1)
    items = [ds[i] for i in range(len(ds))]
    starts = np.array([it["image"][:3, 0, 0, 0].numpy() for it in items]).astype(int)  # (N, 3)
    assert starts.min() == 0 and starts.max() == 4
    for axis in range(3):
        freq = np.bincount(starts[:, axis], minlength=5) / len(starts)
        assert np.all(np.abs(freq - 0.2) < 0.04), freq
    hit = np.mean([bool(it["label"].any()) for it in items])
    assert abs(hit - (2 / 5) ** 3) < 0.02  # start <= 1 on every axis
    twin = PatchDataset(corner_cache, ["c0"], samples_per_epoch=2000, config=cfg, seed=1)
    for again in (ds[7], twin[7]):  # a pure function of (seed, epoch, index)
        assert all(torch.equal(again[k], items[7][k]) for k in ("image", "label", "mask"))
    twin.set_epoch(1)
    assert any(not torch.equal(twin[i]["image"], items[i]["image"]) for i in range(10))


def test_tumour_sampling_always_hits_the_tumour(corner_cache):
    cfg = PatchConfig(patch_size=(4, 4, 4), sampling="tumour", fg_fraction=1.0)
    ds = PatchDataset(corner_cache, ["c0"], samples_per_epoch=200, config=cfg)
    assert all(ds[i]["label"].any() for i in range(len(ds)))
    with pytest.raises(ValueError, match="patch.sampling"):
        PatchConfig(sampling="random")


# ----------------------------------------------------------------------------------- recon region
def test_recon_region_patch_counts_the_background():
    torch.manual_seed(0)
    x, y = torch.randn(2, 4, 4, 4, 4), torch.randint(0, 4, (2, 4, 4, 4))
    mask = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    mask[:, 1:3, 1:3, 1:3] = True
    recon = x + (~mask)[:, None].float()  # wrong by 1 outside the brain only
    out = ModelOutput(seg=torch.randn(2, 4, 4, 4, 4), delta=torch.ones(2, 4, dtype=torch.bool), recon=recon)
    brain = total_loss(out, x, y, LossConfig(recon_region="brain"), mask=mask)
    patch = total_loss(out, x, y, LossConfig(recon_region="patch"), mask=mask)
    assert brain["rec"] == 0
    assert patch["rec"].item() == pytest.approx(4 * (~mask).float().mean().item())
    assert (patch["total"] - brain["total"]).item() == pytest.approx(0.1 * patch["rec"].item())
    with pytest.raises(ValueError, match="recon_region"):
        LossConfig(recon_region="mask")


# ------------------------------------------------------------------------------------- evaluation
def test_eval_blend_and_mask_follow_the_profile():
    paper, cpu = EvalConfig().resolved("paper"), EvalConfig().resolved("cpu")
    assert (paper["blend"], paper["mask_to_brain"]) == ("constant", False)
    assert (cpu["blend"], cpu["mask_to_brain"]) == ("gaussian", True)
    assert EvalConfig(blend="constant").resolved("cpu")["blend"] == "constant"
    assert EvalConfig(blend="gaussian").resolved("paper")["blend"] == "gaussian"
    assert EvalConfig(mask_to_brain=False).resolved("cpu")["mask_to_brain"] is False
    assert EvalConfig(mask_to_brain=True).resolved("paper")["mask_to_brain"] is True
    with pytest.raises(ValueError, match="blend"):
        EvalConfig(blend="mean")
    with pytest.raises(ValueError, match="mask_to_brain"):
        EvalConfig(mask_to_brain="yes")
    with pytest.raises(ValueError, match="eval_blend"):
        Profile("x", "a test", eval_blend="linear")


def test_eval_cache_key_depends_on_blend_and_mask(phantom_cache):
    cache, meta = Cache.open(phantom_cache), {"method": "robustseg", "step": 4, "sha256": "0" * 64}
    keys = {(b, m): evaluate_mod._cache_key(meta, cache, EvalConfig(blend=b, mask_to_brain=m).resolved("cpu"))
            for b in ("gaussian", "constant") for m in (True, False)}
    assert len(set(keys.values())) == 4
    assert evaluate_mod._cache_key(meta, cache, EvalConfig().resolved("cpu")) == keys["gaussian", True]


# ---------------------------------------------------------------------------------- paper profile
def test_paper_profile_holds_the_authors_values():
    c = make_config("paper")
    m = c.model_config()
    assert c.optim.weight_decay == 1e-4 and c.loss.recon_region == "patch"
    got = (m.leaky_slope, m.gate_norm, m.recon_channels, m.recon_up_kernel, m.recon_out_kernel,
           m.recon_shared_adain, m.appearance_channels, m.appearance_kernel)
    assert got == (0.2, True, 128, 5, 7, True, 32, 4)
    p = c.patch
    assert (p.sampling, p.flip, p.intensity_scale, p.intensity_shift) == ("uniform", False, 0.0, 0.0)


def test_paper_model_runs_at_80_cubed_on_meta():
    with torch.device("meta"):
        model = make_config("paper").build_model().eval()
        out = model(torch.empty(1, 4, 80, 80, 80), torch.ones(1, 4, dtype=torch.bool))
    assert out.seg.shape == (1, 4, 80, 80, 80) and out.recon.shape == (1, 4, 80, 80, 80)
    assert out.seg.device.type == "meta" and model.recon_decoders[0].mlp[-1].out_features == 256
    assert [g.shape[1] for g in out.gates] == [4] * 4


# -------------------------------------------------------------------------------------- snapshots
@pytest.mark.parametrize("snaps", [(3,), (0,), (-2,), (True,), (2.0,), (2, 5)])
def test_snapshots_are_checked_sorted_unique_and_round_trip(snaps):
    with pytest.raises(ValueError, match="snapshots"):
        make_config("smoke", iters_per_epoch=2, snapshots=snaps)
    c = make_config("smoke", iters_per_epoch=2, snapshots=[8, 2, 8, 4])
    assert c.snapshots == (2, 4, 8) and c.to_dict()["snapshots"] == [2, 4, 8]
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert make_config("smoke").snapshots == ()


@pytest.fixture(scope="module")
def snapshot_run(phantom_cache, tmp_path_factory):
    """Smoke training, 2 x 2 steps, with the paper's switches (tiny widths) and snapshots at 2 and 4."""
    run = tmp_path_factory.mktemp("snapshots") / "run"
    model = {k: v for k, v in _paper_switches().items() if k != "base_channels"}
    config = make_config("smoke", "robustseg", epochs=2, iters_per_epoch=2, val_every=0, snapshots=(2, 4),
                         model=model, loss={"recon_region": "patch"},
                         patch={"sampling": "uniform", "flip": False})
    train(config, phantom_cache, run, progress=False)
    return run


@pytest.mark.slow
def test_snapshots_are_written_at_their_steps(snapshot_run):
    snaps = sorted(p.name for p in (snapshot_run / "snapshots").iterdir())
    assert snaps == ["step_000002.pt", "step_000004.pt"]
    load = lambda name: torch.load(snapshot_run / name, map_location="cpu", weights_only=True)  # noqa: E731
    two, four, last = load("snapshots/step_000002.pt"), load("snapshots/step_000004.pt"), load("last.pt")
    assert (two["step"], four["step"], last["step"]) == (2, 4, 4)
    assert four["model"].keys() == last["model"].keys()
    assert all(torch.equal(four["model"][k], last["model"][k]) for k in last["model"])
    assert not all(torch.equal(two["model"][k], last["model"][k]) for k in last["model"])
    assert four["model_config"]["gate_norm"] and four["model_config"]["recon_up_kernel"] == 5


@pytest.mark.slow
@pytest.mark.parametrize("mask_to_brain", [True, False])
def test_evaluation_passes_blend_and_masks_on_request(snapshot_run, phantom_cache, monkeypatch,
                                                      mask_to_brain):
    seen = []

    def spy(*args, **kwargs):
        pred = real(*args, **kwargs)
        pred.labels[:] = 1  # tumour everywhere, so the brain mask shows
        seen.append((kwargs["mode"], pred))
        return pred

    real = evaluate_mod.predict_subsets
    monkeypatch.setattr(evaluate_mod, "predict_subsets", spy)
    cfg = EvalConfig(blend="constant", mask_to_brain=mask_to_brain, recon_cases=0, device="cpu")
    evaluate_run(snapshot_run, phantom_cache, cfg, progress=False)
    mask = Cache.open(phantom_cache).load(Cache.open(phantom_cache).case_ids("test")[0]).mask
    assert len(seen) == 1 and seen[0][0] == "constant"
    outside = seen[0][1].labels[:, ~np.asarray(mask)]
    assert (outside == 0).all() if mask_to_brain else (outside == 1).all()


# --------------------------------------------------------------------------------- every method
@pytest.mark.parametrize("method", list(VARIANTS))
def test_every_method_steps_with_the_paper_switches(method):
    torch.manual_seed(0)
    model = MultimodalSegNet(variant_config(method, **_paper_switches())).train()
    x, y = torch.randn(2, 4, 16, 16, 16), torch.randint(0, 4, (2, 16, 16, 16))
    out = model(x, torch.ones(2, 4, dtype=torch.bool))
    mask = torch.ones(2, 16, 16, 16, dtype=torch.bool)
    losses = total_loss(out, x, y, make_config("paper").loss, mask=mask)
    losses["total"].backward()
    assert out.seg.shape == (2, 4, 16, 16, 16) and torch.isfinite(losses["total"])
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    if model.config.disentangle:
        assert out.recon.shape == (2, 4, 16, 16, 16) and losses["rec"] > 0
