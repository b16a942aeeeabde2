"""Training core: configs and profiles, checkpoints, the loop, exact resumption (smoke profile)."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from mmdis.data.datasets import PatchDataset
from mmdis.losses import LossConfig
from mmdis.models.config import VARIANTS
from mmdis.profiles import PROFILES
from mmdis.runtime import device as device_module
from mmdis.runtime.device import make_grad_scaler, resolve_amp
from mmdis.training import (
    OptimConfig,
    TrainConfig,
    load_checkpoint,
    loop,
    make_config,
    poly_factor,
    save_checkpoint,
    train,
    train_step,
)
from mmdis.training.runlog import tensorboard_writer

METHODS = list(VARIANTS)


@pytest.fixture(scope="module")
def cache_dir(phantom_cache):
    return phantom_cache


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------- config
def test_profiles_resolve_for_every_method():
    for profile in PROFILES:
        for method in METHODS:
            config = make_config(profile, method)
            assert config.profile == profile and config.method == method
            assert config.patch.patch_size == config.patch_size
            assert config.model_config().name == method
    paper = make_config("paper")
    assert paper.patch_size == (80, 80, 80) and paper.base_channels == 16 and paper.batch_size == 1
    assert paper.optim == OptimConfig(lr=1e-4, weight_decay=1e-4, poly_power=0.9)  # decay: authors' code
    assert paper.model_config().leaky_slope == 0.2  # the authors' code; the paper is silent
    assert (paper.epochs, paper.iters_per_epoch) == (300, 300)


def test_config_round_trips_through_json():
    config = make_config("cpu", "hemis", epochs=3, optim={"lr": 3e-4}, model={"p_keep": 0.7},
                         loss=LossConfig(lambda_rec=0.0))
    back = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config
    assert back.optim.lr == 3e-4 and back.model["p_keep"] == 0.7 and back.model["appearance_channels"] == 8


@pytest.mark.parametrize(("call", "named"), [
    (lambda: make_config("laptop"), "laptop"),
    (lambda: make_config("smoke", "unet"), "unet"),
    (lambda: make_config("smoke", epochz=3), "epochz"),
    (lambda: make_config("smoke", model={"widht": 3}), "widht"),
    (lambda: make_config("smoke", optim={"learning_rate": 1.0}), "learning_rate"),
    (lambda: make_config("smoke", patch_size=(20, 16, 16)), "patch_size"),
    (lambda: make_config("smoke", epochs=0), "epochs"),
    (lambda: make_config("smoke", amp="fp32"), "amp"),
    (lambda: make_config("smoke", deterministic=1), "deterministic"),
    (lambda: make_config("smoke", device="tpu"), "device"),
    (lambda: make_config("smoke", optim={"lr": -1.0}), "lr"),
    (lambda: TrainConfig.from_dict({"epochs": 2, "bogus": 1}), "bogus"),
])
def test_config_errors_name_the_parameter(call, named):
    with pytest.raises(ValueError, match=named):
        call()


def test_poly_factor_matches_the_paper():
    for e in range(5):
        assert poly_factor(e, 5, 0.9) == pytest.approx((1 - e / 5) ** 0.9)
    assert poly_factor(5, 5) == 0.0


def test_lr_follows_poly_schedule_per_epoch(cache_dir, tmp_path):
    config = make_config("smoke", "hemis", epochs=4, iters_per_epoch=1, val_every=0, optim={"lr": 1e-3})
    train(config, cache_dir, tmp_path / "run", progress=False)
    lrs = [float(r["lr"]) for r in _rows(tmp_path / "run")]
    assert lrs == pytest.approx([1e-3 * (1 - e / 4) ** 0.9 for e in range(4)])


# ------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_and_writes_its_run(cache_dir, tmp_path, method):
    run = tmp_path / method
    result = train(make_config("smoke", method, epochs=1, iters_per_epoch=2), cache_dir, run, progress=False)
    for name in ("config.json", "env.json", "metrics.csv", "last.pt"):
        assert (run / name).is_file(), name
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())).method == method
    env = json.loads((run / "env.json").read_text())
    assert {"python", "torch", "numpy", "device", "cpu_count", "git_commit"} <= set(env)
    rows = _rows(run)
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("total", "seg", "dice", "ce", "rec", "kl"))
    assert 0.0 <= float(rows[-1]["val_dice_wt"]) <= 1.0
    assert result["step"] == 2 and result["epoch"] == 1
    assert (result["rank"], result["world_size"], result["amp"]) == (0, 1, "float32")
    assert result["peak_memory_mb"] > 0 and result["seconds_per_step"] > 0
    assert result["samples_per_second"] == pytest.approx(1 / result["seconds_per_step"])
    assert not (run / "tb").exists() or importlib.util.find_spec("tensorboard") is not None
    model = make_config("smoke", method).build_model()
    ckpt = load_checkpoint(run / "last.pt", model, restore_rng=False)
    assert ckpt["method"] == method and ckpt["epoch"] == 1 and ckpt["step"] == 2


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(cache_dir, tmp_path):
    config = make_config("smoke", "robustseg", epochs=2, iters_per_epoch=2)
    train(config, cache_dir, tmp_path / "straight", progress=False)
    train(config, cache_dir, tmp_path / "resumed", progress=False, stop_after=1)
    assert len(_rows(tmp_path / "resumed")) == 2
    torch.manual_seed(1234)  # a resumed process starts with other RNG states
    random.seed(1234)
    train(config, cache_dir, tmp_path / "resumed", resume=True, progress=False)

    a, b = (config.build_model() for _ in range(2))
    load_checkpoint(tmp_path / "straight" / "last.pt", a, restore_rng=False)
    load_checkpoint(tmp_path / "resumed" / "last.pt", b, restore_rng=False)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    straight, resumed = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
    assert [r["total"] for r in straight] == [r["total"] for r in resumed]


def test_existing_run_is_not_overwritten_and_resume_checks_the_config(cache_dir, tmp_path):
    config = make_config("smoke", "hemis", epochs=2, iters_per_epoch=1, val_every=0)
    train(config, cache_dir, tmp_path / "run", progress=False, stop_after=1)
    with pytest.raises(FileExistsError, match="resume"):
        train(config, cache_dir, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="seed"):
        train(make_config("smoke", "hemis", epochs=2, iters_per_epoch=1, val_every=0, seed=1),
              cache_dir, tmp_path / "run", resume=True, progress=False)


# ---------------------------------------------------------------------------------------- checkpoint
def test_checkpoint_of_another_method_is_refused(tmp_path):
    model = make_config("smoke", "robustseg").build_model()
    save_checkpoint(tmp_path / "last.pt", model=model, epoch=1, step=2)
    other = make_config("smoke", "hemis").build_model()
    with pytest.raises(ValueError, match=r"'robustseg'.*'hemis'"):
        load_checkpoint(tmp_path / "last.pt", other)


def test_checkpoint_restores_every_rng_and_the_optimiser(tmp_path):
    model = make_config("smoke", "hemis").build_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(1, 4, 16, 16, 16), torch.ones(1, 4, dtype=torch.bool)).seg.sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, epoch=3, step=7)
    expected = (random.random(), np.random.random(), torch.rand(3))  # noqa: NPY002
    fresh = make_config("smoke", "hemis").build_model()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    ckpt = load_checkpoint(tmp_path / "c.pt", fresh, fresh_opt)
    got = (random.random(), np.random.random(), torch.rand(3))  # noqa: NPY002
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
    assert (ckpt["epoch"], ckpt["step"]) == (3, 7)
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert not list((tmp_path).glob("*.tmp"))  # the temporary file was renamed away


def test_loss_decreases_on_a_fixed_batch(cache_dir):
    config = make_config("smoke", "robustseg")
    torch.manual_seed(0)
    model = config.build_model()
    dataset = PatchDataset(cache_dir, ["PHANTOM_000"], config=config.patch, seed=0)
    batch = {k: v[None] if torch.is_tensor(v) else [v] for k, v in dataset[0].items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = [train_step(model, batch, optimizer, config.loss, torch.device("cpu"))["total"]
              for _ in range(20)]
    assert losses[-1] < 0.95 * losses[0], losses
    assert np.mean(losses[-5:]) < np.mean(losses[5:10]) < np.mean(losses[:5]), losses


# ------------------------------------------------------------------- precision, logging, determinism
def test_amp_modes_resolve_per_device(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(device_module, "cpu_bf16_support", lambda: (False, "emulated"))
    assert resolve_amp("auto", cpu) == (None, False)  # bf16 would be emulated: float32
    monkeypatch.setattr(device_module, "cpu_bf16_support", lambda: (True, "native"))
    assert resolve_amp("auto", cpu) == (torch.bfloat16, False)
    assert resolve_amp("auto", cpu, bottom_depth=2) == (None, False)  # the wrong-gradient guard
    assert resolve_amp("auto", cpu, bottom_depth=4) == (torch.bfloat16, False)
    assert "bf16" in device_module.amp_choice("auto", cpu)[2]
    assert resolve_amp("off", cpu) == (None, False)
    assert resolve_amp("bf16", cpu) == (torch.bfloat16, False)
    assert resolve_amp("fp16", cpu) == (torch.float16, True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_amp("auto", cuda) == (torch.bfloat16, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_amp("auto", cuda) == (torch.float16, True)  # pre-Ampere: fp16 and a loss scaler
    assert resolve_amp("off", cuda) == (None, False)
    with pytest.raises(ValueError, match="amp"):
        resolve_amp("fp8", cpu)
    assert make_config("smoke", amp="fp16").amp == "fp16"


def test_bf16_on_the_cpu_warns_about_16_voxel_deep_patches(cache_dir, tmp_path):
    """torch's CPU bf16 conv3d gets the weight gradient of a 2-voxel-deep map wrong (see resolve_amp)."""
    config = make_config("smoke", "hemis", epochs=1, iters_per_epoch=1, val_every=0, amp="bf16")
    with pytest.warns(UserWarning, match="bf16 autocast on the CPU"):
        result = train(config, cache_dir, tmp_path / "run", progress=False)
    assert result["amp"] == "bfloat16"


def test_a_disabled_scaler_is_the_plain_step(cache_dir):
    config = make_config("smoke", "hemis")
    dataset = PatchDataset(cache_dir, ["PHANTOM_000"], config=config.patch, seed=0)
    batch = {k: v[None] if torch.is_tensor(v) else [v] for k, v in dataset[0].items()}
    weights = []
    for scaler in (None, make_grad_scaler(torch.device("cpu"), enabled=False)):
        torch.manual_seed(0)
        model = config.build_model()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        train_step(model, batch, optimizer, config.loss, torch.device("cpu"), scaler=scaler)
        weights.append(model.state_dict())
    for name, p in weights[0].items():
        assert torch.equal(p, weights[1][name]), name


def test_fp16_run_keeps_its_loss_scaler_across_a_resume(cache_dir, tmp_path):
    """fp16 autocast and a GradScaler run on the CPU too; the scaler's state is part of the checkpoint."""
    config = make_config("smoke", "hemis", epochs=2, iters_per_epoch=2, val_every=0, amp="fp16")
    result = train(config, cache_dir, tmp_path / "run", progress=False, stop_after=1)
    assert result["amp"] == "float16"
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert set(ckpt["scaler"]) >= {"scale", "_growth_tracker"}
    # 2 steps: either both succeeded (tracker 2) or an overflow halved the scale and reset the tracker.
    assert ckpt["scaler"]["_growth_tracker"] == 2 or ckpt["scaler"]["scale"] < 2.0**16
    scaler = make_grad_scaler(torch.device("cpu"), enabled=True)
    load_checkpoint(tmp_path / "run" / "last.pt", config.build_model(), scaler=scaler, restore_rng=False)
    assert scaler.state_dict() == ckpt["scaler"]
    train(config, cache_dir, tmp_path / "run", resume=True, progress=False)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["scaler"]["_growth_tracker"] in (0, 1, 2, 3, 4)
    rows = _rows(tmp_path / "run")
    assert all(np.isfinite(float(r["total"])) for r in rows)
    # A float32 run has no scaler state to keep.
    train(make_config("smoke", "hemis", epochs=1, iters_per_epoch=1, val_every=0), cache_dir,
          tmp_path / "fp32", progress=False)
    assert torch.load(tmp_path / "fp32" / "last.pt", weights_only=True)["scaler"] is None


def test_without_tensorboard_there_is_no_writer(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    assert tensorboard_writer(tmp_path / "tb") is None
    assert not (tmp_path / "tb").exists()


def test_tensorboard_events_hold_the_losses_and_the_dice(cache_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard is optional")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_config("smoke", "hemis", epochs=2, iters_per_epoch=2)
    train(config, cache_dir, tmp_path / "run", progress=False, stop_after=1)
    train(config, cache_dir, tmp_path / "run", progress=False, resume=True)
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"loss/{k}" for k in ("total", "seg", "dice", "ce", "rec", "kl")} | {"lr", "val/dice_wt"} <= tags
    rows = _rows(tmp_path / "run")
    # The resumed run continues the curve: every step once, the values of metrics.csv.
    assert [e.step for e in events.Scalars("loss/total")] == [1, 2, 3, 4]
    assert [e.value for e in events.Scalars("loss/total")] == pytest.approx([float(r["total"]) for r in rows])
    assert [e.step for e in events.Scalars("val/dice_wt")] == [2, 4]


def test_deterministic_switch_holds_while_training_only(cache_dir, tmp_path, monkeypatch):
    seen = []
    step = loop.train_step

    def spy(*args, **kwargs):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                     torch.backends.cudnn.benchmark))
        return step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", spy)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    config = make_config("smoke", "hemis", epochs=1, iters_per_epoch=1, val_every=0, deterministic=True)
    train(config, cache_dir, tmp_path / "on", progress=False)
    assert seen == [(True, True, False)]
    after = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    assert after == before
    train(replace(config, deterministic=False), cache_dir, tmp_path / "off", progress=False)
    assert seen[-1] == before


def test_cpu_bf16_support_reads_the_cpu_flags(monkeypatch):
    from mmdis.runtime import device as dev

    for flags, native in ((None, False), ({"avx2", "fma"}, False), ({"avx512f", "avx512_bf16"}, True),
                          ({"amx_bf16"}, True)):
        monkeypatch.setattr(dev, "_cpu_flags", lambda flags=flags: flags)
        dev.cpu_bf16_support.cache_clear()
        assert dev.cpu_bf16_support()[0] is native, flags
    dev.cpu_bf16_support.cache_clear()
