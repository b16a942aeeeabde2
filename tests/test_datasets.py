"""The cache writer/reader, the split and the PyTorch datasets, on tiny synthetic cases."""

import json

import numpy as np
import pytest
import torch

from mmdis.data import cache as cache_mod
from mmdis.data.cache import Cache, load_cached_case, make_splits, write_cached_case
from mmdis.data.datasets import PatchConfig, PatchDataset, VolumeDataset, extract_patch
from mmdis.data.preprocess import CropInfo, PreprocessedCase

KEY = {"spacing": None, "margin": 0, "version": cache_mod.CACHE_VERSION}


def synthetic_case(case_id="c0", shape=(12, 14, 10), available=(True,) * 4, seed=0, labelled=True):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    image = rng.normal(size=(4, *shape)).astype(np.float32) * mask
    image[~np.array(available)] = 0
    label = np.zeros(shape, np.uint8)
    label[4:7, 5:8, 3:6] = 2
    label[5, 6, 4] = 3
    crop = CropInfo(shape, tuple(tuple(r) for r in np.eye(4).tolist()), (0, 0, 0), shape,
                    (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), shape)
    return PreprocessedCase(case_id, image, np.array(available), label if labelled else None, mask, crop,
                            "brats2021")


@pytest.fixture
def cache_dir(tmp_path):
    entries = []
    for k in range(5):
        avail = (True, True, True, True) if k != 2 else (True, False, True, False)
        entries.append(write_cached_case(synthetic_case(f"c{k}", available=avail, seed=k),
                                         tmp_path / "cases", KEY))
    (tmp_path / "manifest.json").write_text(json.dumps({"cases": entries}))
    splits = make_splits([e["case_id"] for e in entries], [True] * 5, 0, (0.6, 0.2, 0.2))
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    return tmp_path


def test_cached_case_round_trip(cache_dir):
    orig = synthetic_case("c2", available=(True, False, True, False), seed=2)
    case = load_cached_case(cache_dir, "c2")
    np.testing.assert_array_equal(case.image, orig.image)
    np.testing.assert_array_equal(case.label, orig.label)
    assert case.available.tolist() == [True, False, True, False]
    assert case.crop == orig.crop
    meta = json.loads((cache_dir / "cases" / "c2" / "meta.json").read_text())
    assert meta["modalities"] == ["flair", "t1ce"] and len(meta["checksum"]) == 64


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = np.save

    def failing_save(path, arr):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C halfway through a case
        real_save(path, arr)

    monkeypatch.setattr(cache_mod.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        write_cached_case(synthetic_case("bad"), tmp_path / "cases", KEY)
    assert list((tmp_path / "cases").iterdir()) == []


def test_splits_are_seeded_disjoint_and_complete():
    ids = [f"c{k:02d}" for k in range(20)]
    a = make_splits(ids, [True] * 18 + [False] * 2, seed=3, fractions=(0.7, 0.1, 0.2))
    b = make_splits(ids, [True] * 18 + [False] * 2, seed=3, fractions=(0.7, 0.1, 0.2))
    c = make_splits(ids, [True] * 18 + [False] * 2, seed=4, fractions=(0.7, 0.1, 0.2))
    assert a == b and a["test"] != c["test"]
    parts = [set(a[s]) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == 18 and set.union(*parts) == set(ids[:18])
    assert a["unlabelled"] == ["c18", "c19"]
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (12, 2, 4)
    tiny = make_splits(["a", "b", "c"], [True] * 3, 0, (0.7, 0.1, 0.2))
    assert len(tiny["val"]) == len(tiny["test"]) == len(tiny["train"]) == 1


def test_cache_open_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        Cache.open(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_cached_case(tmp_path, "nope")


def test_patch_dataset_shapes_and_determinism(cache_dir):
    cache = Cache.open(cache_dir)
    ds = PatchDataset(cache_dir, cache.case_ids(), samples_per_epoch=10,
                      config=PatchConfig(patch_size=(8, 8, 8)), seed=1)
    item = ds[3]
    assert item["image"].shape == (4, 8, 8, 8) and item["image"].dtype == torch.float32
    assert item["label"].shape == (8, 8, 8) and item["label"].dtype == torch.int64
    assert item["mask"].dtype == torch.bool and item["available"].shape == (4,)
    again = PatchDataset(cache_dir, cache.case_ids(), samples_per_epoch=10,
                         config=PatchConfig(patch_size=(8, 8, 8)), seed=1)[3]
    assert torch.equal(item["image"], again["image"]) and torch.equal(item["label"], again["label"])
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["image"], item["image"])


def test_patches_keep_missing_channels_and_background_zero(cache_dir):
    ds = PatchDataset(cache_dir, ["c2"], samples_per_epoch=20, config=PatchConfig(patch_size=(8, 8, 8)))
    for i in range(20):
        item = ds[i]
        assert item["available"].tolist() == [True, False, True, False]
        assert torch.all(item["image"][1] == 0) and torch.all(item["image"][3] == 0)
        assert torch.all(item["image"][:, ~item["mask"]] == 0)


def test_foreground_oversampling(cache_dir):
    def tumour_fraction(fg):
        ds = PatchDataset(cache_dir, ["c0"], samples_per_epoch=60,
                          config=PatchConfig(patch_size=(4, 4, 4), fg_fraction=fg, flip=False))
        return np.mean([bool((ds[i]["label"] > 0).any()) for i in range(60)])

    assert tumour_fraction(1.0) == 1.0
    assert tumour_fraction(0.0) < tumour_fraction(1.0)


def test_patch_larger_than_volume_is_padded(cache_dir):
    ds = PatchDataset(cache_dir, ["c0"], config=PatchConfig(patch_size=(16, 20, 16)))
    item = ds[0]
    assert item["image"].shape == (4, 16, 20, 16)
    assert int(item["mask"].sum()) == int(load_cached_case(cache_dir, "c0").mask.sum())


def test_extract_patch_matches_slicing_and_pads():
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    np.testing.assert_array_equal(extract_patch(vol, (1, 1, 2), (2, 3, 3)), vol[1:3, 1:4, 2:5])
    out = extract_patch(vol, (-1, 3, 4), (3, 3, 3))
    assert out.shape == (3, 3, 3)
    np.testing.assert_array_equal(out[1:, :2, :2], vol[0:2, 3:5, 4:6])
    assert out[0].sum() == 0


def test_volume_dataset(cache_dir):
    ds = VolumeDataset(cache_dir, ["c0", "c2"])
    item = ds[1]
    assert item["image"].shape == (4, 12, 14, 10) and item["case_id"] == "c2"
    assert item["label"].dtype == torch.int64


def test_patch_config_validation():
    with pytest.raises(ValueError, match="patch_size"):
        PatchConfig(patch_size=(8, 8))
    with pytest.raises(ValueError, match="fg_fraction"):
        PatchConfig(fg_fraction=1.5)
    with pytest.raises(ValueError, match="case_ids"):
        PatchDataset("x", [])
