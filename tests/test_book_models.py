"""The book models shipped with the package: complete, checksummed, loadable without pickle, current with
their profile, and reproducing their recorded validation Dice and first losses on the phantom."""

from __future__ import annotations

import json
import pickle
import shutil
import struct

import pytest
import torch

from mmdis.data.cache import Cache, PrepareConfig, prepare
from mmdis.data.phantom import PhantomConfig, write_phantom
from mmdis.evaluation.evaluate import load_run
from mmdis.pipeline import METHODS, reproduce
from mmdis.profiles import get_profile
from mmdis.training.config import make_config
from mmdis.training.export import (
    MANIFEST,
    METHOD_FILES,
    WEIGHTS,
    first_losses_float32,
    load_weights,
    materialise,
    shipped_dir,
    shipped_methods,
    verify_manifest,
)
from mmdis.training.validation import wt_dice_scores

PROFILE = "cpu"
FOLDER = shipped_dir(PROFILE)
#: Float32 inference of the same weights on another CPU (other kernels, other summation orders) moves a
#: Dice by far less than this.
DICE_TOLERANCE = 2e-3
#: Three float32 optimiser steps on another CPU.
LOSS_RTOL = 1e-3
#: The logged losses were computed in the run's own precision (bf16 autocast where the CPU has it).
LOGGED_RTOL = 5e-2


def _record(method: str) -> dict:
    return json.loads((FOLDER / method / "record.json").read_text())


def test_every_method_is_shipped_with_its_files_and_the_manifest_holds():
    assert shipped_methods(PROFILE) == sorted(METHODS)
    for method in METHODS:
        for name in METHOD_FILES:
            assert (FOLDER / method / name).is_file(), f"{method}/{name} missing"
    listed = verify_manifest(FOLDER)
    study = {f"study/{n}" for n in ("rows.csv", "gates.csv", "floor.csv", "provenance.json")}
    assert set(listed) == {f"{m}/{n}" for m in METHODS for n in METHOD_FILES} | study
    total = sum(p.stat().st_size for p in FOLDER.rglob("*") if p.is_file())
    assert total < 30e6, f"book models take {total / 1e6:.1f} MB"


def test_a_changed_or_missing_file_fails_the_manifest(tmp_path):
    copy = tmp_path / PROFILE
    shutil.copytree(FOLDER, copy)
    verify_manifest(copy)
    metrics = copy / "hemis" / "metrics.csv"
    metrics.write_text(metrics.read_text() + "\n")
    with pytest.raises(ValueError, match="hemis/metrics.csv"):
        verify_manifest(copy)
    metrics.unlink()
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        verify_manifest(copy)
    (copy / MANIFEST).unlink()
    with pytest.raises(FileNotFoundError, match=MANIFEST):
        verify_manifest(copy)


@pytest.mark.parametrize("method", METHODS)
def test_weights_load_without_any_pickle_and_match_their_config(method, monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("a shipped model must not be unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    path = FOLDER / method / WEIGHTS
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8 : 8 + header_len])  # safetensors: JSON header, raw bytes
    assert all(v["dtype"] == "F16" for k, v in header.items() if k != "__metadata__")
    state, meta = load_weights(path)
    config = json.loads((FOLDER / method / "config.json").read_text())
    # The shipped model is current: the profile still makes exactly the config it was trained with.
    assert config == make_config(PROFILE, method, seed=0).to_dict()
    assert meta["method"] == method
    assert meta["model_config"] == make_config(PROFILE, method).model_config().to_dict()
    steps = config["epochs"] * config["iters_per_epoch"]
    assert meta["step"] == steps == _record(method)["training"]["steps"]
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())
    run = materialise(PROFILE, method, tmp_path / method)
    model, train_config, run_meta = load_run(run, "cpu")
    assert train_config.method == method and run_meta["step"] == meta["step"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_materialise_refuses_a_tampered_shipped_file(tmp_path, monkeypatch):
    import mmdis.training.export as export

    copy = tmp_path / "book_models"
    shutil.copytree(FOLDER, copy / PROFILE)
    monkeypatch.setattr(export, "SHIPPED_ROOT", copy)
    weights = copy / PROFILE / "imputation" / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-2] ^= 0xFF  # one weight changed
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="imputation/model.safetensors"):
        materialise(PROFILE, "imputation", tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(FileNotFoundError, match="ships no model"):
        materialise("smoke", "robustseg", tmp_path / "run")


def test_garbage_weights_are_a_clear_error(tmp_path):
    bad = tmp_path / WEIGHTS
    bad.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError, match=str(bad)):
        load_weights(bad)


def test_reproduce_refuses_shipped_models_with_overrides(tmp_path):
    with pytest.raises(ValueError, match="retrain"):
        reproduce(PROFILE, work_dir=tmp_path, models="shipped", overrides={"epochs": 2})
    with pytest.raises(FileNotFoundError, match="ships no model"):
        reproduce("smoke", work_dir=tmp_path, models="shipped")
    with pytest.raises(ValueError, match="models"):
        reproduce(PROFILE, work_dir=tmp_path, models="pretrained")


@pytest.fixture(scope="module")
def cpu_phantom_cache(tmp_path_factory):
    """The cpu profile's phantom and cache, made as `mmdis reproduce` makes them."""
    profile = get_profile(PROFILE)
    root = tmp_path_factory.mktemp("book-phantom")
    phantom = PhantomConfig(cases=profile.phantom_cases, seed=0, spacing=profile.spacing)
    write_phantom(root / "phantom", phantom, progress=False)
    prepare(root / "phantom", root / "cache", PrepareConfig(spacing=profile.spacing), progress=False)
    return Cache.open(root / "cache")


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_shipped_models_reproduce_their_validation_dice(method, cpu_phantom_cache, tmp_path):
    record = _record(method)["val"]
    assert cpu_phantom_cache.case_ids("val") == record["cases"]
    model, _, _ = load_run(materialise(PROFILE, method, tmp_path / method), "cpu")
    dice = wt_dice_scores(model, cpu_phantom_cache.root, record["cases"], torch.device("cpu"), None, PROFILE)
    assert dice == pytest.approx(record["dice_wt_stored"], abs=DICE_TOLERANCE)
    # Rounding the weights to float16 for shipping moved the Dice by little.
    assert record["dice_wt_stored"] == pytest.approx(record["dice_wt_last_pt"], abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_retraining_from_the_seed_gives_the_recorded_first_losses(method, cpu_phantom_cache):
    recorded = _record(method)["first_losses"]
    retrained = first_losses_float32(PROFILE, method, cpu_phantom_cache.root, len(recorded["float32"]))
    assert len(retrained) == len(recorded["float32"])
    for row, f32, logged in zip(retrained, recorded["float32"], recorded["logged"]):
        for term, value in f32.items():
            assert row[term] == pytest.approx(value, rel=LOSS_RTOL, abs=1e-6), term
            assert logged[term] == pytest.approx(value, rel=LOGGED_RTOL, abs=1e-3), term


def test_the_package_data_globs_install_every_shipped_file():
    import fnmatch
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = setuptools["package-data"]["mmdis"]
    files = [p.relative_to(root / "mmdis").as_posix() for p in FOLDER.rglob("*") if p.is_file()]
    # fnmatch's * crosses "/", setuptools' does not: compare segment counts too.
    missed = [f for f in files
              if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert files and missed == [], f"not installed by pip: {missed}"
