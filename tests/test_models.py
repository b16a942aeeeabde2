"""Tests of mmdis.models: shapes, missing-modality behaviour, encode/decode, gates, training, errors."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdis.conventions import NUM_CLASSES, NUM_MODALITIES, SUBSETS
from mmdis.losses import LossConfig, total_loss
from mmdis.models import VARIANTS, ModelConfig, MultimodalSegNet, build_model, modality_dropout

SIZE = 16
TINY = {"base_channels": 4, "appearance_channels": 4}  # 16^3 inputs: the file runs in seconds
ALL_SUBSETS = torch.tensor(SUBSETS, dtype=torch.bool)  # (15, 4)


#: Flag combinations that no named variant uses, so that every switch is tested.
EXTRA = {
    "max": {"fusion": "max", "disentangle": False},
    "max-dis": {"fusion": "max", "disentangle": True},
    "gated-nodis": {"fusion": "gated", "disentangle": False},
    "imputation-dropout": {"early_fusion": True, "disentangle": False, "modality_dropout": True},
}
EVERY = sorted(VARIANTS) + sorted(EXTRA)


def tiny(name: str, seed: int = 0) -> MultimodalSegNet:
    torch.manual_seed(seed)
    if name in EXTRA:
        return MultimodalSegNet(ModelConfig(name=name, **TINY, **EXTRA[name]))
    return build_model(name, **TINY)


@pytest.fixture(scope="module")
def volume() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, NUM_MODALITIES, SIZE, SIZE, SIZE, generator=g)


@pytest.mark.parametrize("name", EVERY)
@pytest.mark.parametrize("train", [False, True])
def test_shapes_all_subsets(name, train, volume):
    model = tiny(name).train(train)
    x = volume.expand(len(SUBSETS), -1, -1, -1, -1)  # (15, 4, D, H, W)
    with torch.no_grad():
        out = model(x, ALL_SUBSETS)
    b = len(SUBSETS)
    assert out.seg.shape == (b, NUM_CLASSES, SIZE, SIZE, SIZE)
    assert out.delta.shape == (b, NUM_MODALITIES) and out.delta.dtype == torch.bool
    assert not (out.delta & ~ALL_SUBSETS).any() and out.delta.any(1).all()
    if not train:
        assert torch.equal(out.delta, ALL_SUBSETS)
    if model.config.disentangle:
        assert out.recon.shape == (b, NUM_MODALITIES, SIZE, SIZE, SIZE)
        assert out.mu.shape == out.logvar.shape == (b, NUM_MODALITIES, 8)
        assert out.kl.shape == (b, NUM_MODALITIES)
        assert (out.kl >= 0).all()
    else:
        assert out.recon is None and out.mu is None and out.kl is None
    if model.config.fusion == "gated" and not model.config.early_fusion:
        assert len(out.gates) == 4
        for s, g in enumerate(out.gates):
            assert g.shape == (b, NUM_MODALITIES, *(SIZE // 2**s,) * 3)
            assert ((g > 0) & (g < 1)).all()
    else:
        assert out.gates is None
    base = TINY["base_channels"]
    assert [tuple(z.shape) for z in out.fused] == [(b, base * 2**s, *(SIZE // 2**s,) * 3) for s in range(4)]
    assert torch.isfinite(out.seg).all()


@pytest.mark.parametrize("fill", ["noise", "nan"])
@pytest.mark.parametrize("name", EVERY)
def test_missing_modality_has_no_influence(name, fill, volume):
    """In eval, changing image i where available[i] is False leaves seg exactly equal, all 15 subsets.

    Also with NaN images, which a product mask (0 * nan = nan) would let through.
    """
    model = tiny(name).eval()
    b = len(SUBSETS)
    x = volume.expand(b, -1, -1, -1, -1).clone()  # (15, 4, D, H, W)
    if fill == "nan":
        other = torch.full_like(x, float("nan"))
    else:
        other = torch.randn(x.shape, generator=torch.Generator().manual_seed(5)) * 3.0
    missing = ~ALL_SUBSETS[:, :, None, None, None]  # (15, 4, 1, 1, 1)
    x_changed = torch.where(missing, other, x)
    with torch.no_grad():
        ref = model(x, ALL_SUBSETS)
        changed = model(x_changed, ALL_SUBSETS)
    assert torch.equal(ref.seg, changed.seg)
    assert torch.isfinite(changed.seg).all()
    for a, b_ in zip(ref.fused, changed.fused):
        assert torch.equal(a, b_)
    if ref.recon is not None:
        # The reconstruction of an available modality uses z and its own appearance code only.
        assert torch.equal(ref.recon[ALL_SUBSETS], changed.recon[ALL_SUBSETS])
        assert torch.equal(ref.mu[ALL_SUBSETS], changed.mu[ALL_SUBSETS])


@pytest.mark.parametrize("name", EVERY)
def test_encode_once_decode_equals_forward(name, volume):
    """Evaluating the 15 subsets of a case: the encoders once, fusion and decoding 15 times."""
    model = tiny(name).eval()
    with torch.no_grad():
        encoded = model.encode(volume)
        if encoded.content is not None:
            base = TINY["base_channels"]
            assert [tuple(c.shape) for c in encoded.content] == [
                (1, NUM_MODALITIES, base * 2**s, *(SIZE // 2**s,) * 3) for s in range(4)
            ]
        out = model.decode(encoded.repeat(len(SUBSETS)), ALL_SUBSETS)
        for k, subset in enumerate(SUBSETS):
            ref = model(volume, torch.tensor([subset]))
            torch.testing.assert_close(out.seg[k : k + 1], ref.seg, rtol=1e-4, atol=1e-5)
            if ref.recon is not None:
                torch.testing.assert_close(out.recon[k : k + 1], ref.recon, rtol=1e-4, atol=1e-5)


def test_eval_is_deterministic_and_uses_mu(volume):
    model = tiny("robustseg").eval()
    with torch.no_grad():
        everything = torch.ones(1, 4, dtype=torch.bool)
        a, b = model(volume, everything), model(volume, everything)
        enc = model.encode(volume)
    assert torch.equal(a.seg, b.seg) and torch.equal(a.recon, b.recon)
    assert torch.equal(enc.appearance, enc.mu)


def test_train_mode_samples_appearance(volume):
    model = tiny("robustseg").train()
    with torch.no_grad():
        enc = model.encode(volume)
    assert not torch.equal(enc.appearance, enc.mu)


def test_gradients_reach_all_parameters(volume):
    model = tiny("robustseg").train()
    y = torch.randint(0, NUM_CLASSES, (1, SIZE, SIZE, SIZE))
    # decode fuses exactly what it is given (no dropout), so every encoder receives gradient.
    out = model.decode(model.encode(volume), torch.ones(1, 4, dtype=torch.bool))
    total_loss(out, volume, y, LossConfig())["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


@pytest.mark.parametrize("name", EVERY)
def test_adam_step_lowers_loss(name):
    model = tiny(name, seed=3).train()
    g = torch.Generator().manual_seed(7)
    y = torch.zeros(1, SIZE, SIZE, SIZE, dtype=torch.long)
    y[:, 4:12, 4:12, 4:12] = 2
    y[:, 6:10, 6:10, 6:10] = 1
    y[:, 7:9, 7:9, 7:9] = 3
    x = torch.randn(1, NUM_MODALITIES, SIZE, SIZE, SIZE, generator=g) * 0.1 + y[:, None].float()
    available = torch.ones(1, 4, dtype=torch.bool)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_value() -> float:
        # Evaluate without dropout or sampling noise: eval mode, all modalities.
        model.eval()
        with torch.no_grad():
            value = total_loss(model(x, available), x, y, LossConfig())["total"].item()
        model.train()
        return value

    before = loss_value()
    for _ in range(3):
        torch.manual_seed(0)
        loss = total_loss(model(x, available), x, y, LossConfig())["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_value() < before


# ---------------------------------------------------------------------------------- dropout
@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(st.booleans(), min_size=4, max_size=4).filter(any), min_size=1, max_size=16),
    seed=st.integers(0, 2**31 - 1),
    p_keep=st.floats(0.05, 1.0),
)
def test_dropout_never_empty_never_unavailable(rows, seed, p_keep):
    available = torch.tensor(rows, dtype=torch.bool)
    delta = modality_dropout(available, p_keep, torch.Generator().manual_seed(seed))
    assert delta.shape == available.shape and delta.dtype == torch.bool
    assert not (delta & ~available).any()
    assert delta.any(dim=1).all()
    if p_keep == 1.0:
        assert torch.equal(delta, available)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_dropout_keep_rate_about_half(seed):
    available = torch.ones(20000, 4, dtype=torch.bool)
    delta = modality_dropout(available, 0.5, torch.Generator().manual_seed(seed))
    # Bernoulli(0.5) per modality, plus one re-enabled in the 1/16 of rows that kept none:
    # expected rate 0.5 + (1/16) / 4 = 0.515625.
    assert abs(delta.float().mean().item() - 0.515625) < 0.01
    single = torch.zeros(20000, 4, dtype=torch.bool)
    single[:, 2] = True
    assert torch.equal(modality_dropout(single, 0.5, torch.Generator().manual_seed(seed)), single)


def test_dropout_reenables_uniformly():
    available = torch.tensor([[True, False, True, True]]).expand(30000, -1)
    delta = modality_dropout(available, 1e-9, torch.Generator().manual_seed(0))
    assert (delta.sum(1) == 1).all()
    freq = delta.float().mean(0)
    assert freq[1] == 0
    torch.testing.assert_close(freq[[0, 2, 3]], torch.full((3,), 1 / 3), atol=0.015, rtol=0)


def test_dropout_used_in_train_forward_only(volume):
    model = tiny("robustseg")
    x = volume.expand(64, -1, -1, -1, -1)  # (64, 4, D, H, W)
    available = torch.ones(64, 4, dtype=torch.bool)
    torch.manual_seed(0)
    with torch.no_grad():
        delta = model.train()(x, available).delta
        assert not delta.all() and delta.any(1).all()
        assert model.train().decode(model.encode(x), available).delta.all()
        assert model.eval()(x, available).delta.all()
        assert tiny("imputation").train()(x, available).delta.all()


def test_dropout_generator_reproducible(volume):
    model = tiny("ablation-mean").train()
    x = volume.expand(len(SUBSETS), -1, -1, -1, -1)  # (15, 4, D, H, W)
    with torch.no_grad():
        a = model(x, ALL_SUBSETS, generator=torch.Generator().manual_seed(3)).delta
        b = model(x, ALL_SUBSETS, generator=torch.Generator().manual_seed(3)).delta
    assert torch.equal(a, b) and not (a & ~ALL_SUBSETS).any()


# ---------------------------------------------------------------------------------- errors
def test_unknown_variant_lists_known():
    with pytest.raises(ValueError, match="unknown model variant 'nope'.*robustseg"):
        build_model("nope")


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"fusion": "sum"}, "fusion"),
        ({"base_channels": 0}, "base_channels"),
        ({"base_channels": True}, "base_channels"),
        ({"in_modalities": 0}, "in_modalities"),
        ({"p_keep": 0.0}, "p_keep"),
        ({"p_keep": 1.5}, "p_keep"),
        ({"appearance_dim": -1}, "appearance_dim"),
        ({"appearance_channels": 0}, "appearance_channels"),
        ({"recon_channels": 1}, "recon_channels"),
        ({"recon_res_blocks": 0}, "recon_res_blocks"),
        ({"disentangle": "yes"}, "disentangle"),
        ({"leaky_slope": -0.1}, "leaky_slope"),
        ({"bogus": 1}, "bogus"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_bad_config_names_parameter(overrides, param):
    with pytest.raises(ValueError, match=param):
        build_model("robustseg", **overrides)


def test_early_fusion_with_disentangle_rejected():
    with pytest.raises(ValueError, match="disentangle"):
        ModelConfig(early_fusion=True, disentangle=True)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_config_json_round_trip(name, volume):
    model = tiny(name).eval()
    assert model.config.name == name
    restored = ModelConfig.from_dict(json.loads(json.dumps(model.config.to_dict())))
    assert restored == model.config
    clone = MultimodalSegNet(restored).eval()
    clone.load_state_dict(model.state_dict())
    everything = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(clone(volume, everything).seg, model(volume, everything).seg)


def test_config_from_dict_rejects_unknown_field():
    with pytest.raises(ValueError, match="unknown ModelConfig field.*'code_size'"):
        ModelConfig.from_dict({"code_size": 8})


@pytest.mark.parametrize("name", ["robustseg", "imputation"])
def test_bad_inputs_name_parameter(name):
    model = tiny(name).eval()
    ok = torch.ones(1, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="x must have 4 channels"):
        model(torch.zeros(1, 3, 16, 16, 16), ok)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.zeros(4, 16, 16, 16), ok)
    with pytest.raises(ValueError, match="x spatial size .* divisible by 8"):
        model(torch.zeros(1, 4, 16, 12, 16), ok)
    with pytest.raises(ValueError, match=r"available must be a bool tensor of shape \(1, 4\)"):
        model(torch.zeros(1, 4, 16, 16, 16), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"available must be a bool tensor of shape \(1, 4\)"):
        model(torch.zeros(1, 4, 16, 16, 16), [True] * 4)
    with pytest.raises(ValueError, match=r"available must be a bool tensor, got dtype torch.float32"):
        model(torch.zeros(1, 4, 16, 16, 16), torch.full((1, 4), 0.5))
    with pytest.raises(ValueError, match="available must be a bool tensor; an integer mask"):
        model(torch.zeros(1, 4, 16, 16, 16), torch.tensor([[1, 2, 0, 0]]))
    with pytest.raises(ValueError, match=r"available has no modality for sample\(s\) \[1\]"):
        model(torch.zeros(2, 4, 16, 16, 16), torch.tensor([[True] * 4, [False] * 4]))
    with pytest.raises(ValueError, match=r"available has no modality"):
        model.decode(model.encode(torch.zeros(1, 4, 16, 16, 16)), torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="available must have shape"):
        modality_dropout(torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="p_keep"):
        modality_dropout(ok, p_keep=0.0)


def test_integer_mask_accepted(volume):
    model = tiny("hemis").eval()
    with torch.no_grad():
        a = model(volume, torch.tensor([[1, 0, 1, 1]])).seg
        b = model(volume, torch.tensor([[True, False, True, True]])).seg
    assert torch.equal(a, b)

