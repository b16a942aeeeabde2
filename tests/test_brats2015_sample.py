"""The real BraTS 2015 sample in the authors' layout: four cases with FLAIR and T1c only.

The files are read where they lie (``../shared/data/brats2015-sample`` next to the repository, or the
folder named by ``MMDIS_BRATS2015_SAMPLE``) and never copied into the repository: they are licensed CC
BY-NC-SA 3.0 (Menze et al., IEEE TMI 2015; modified by the DeepMedic project). Without them every test
here is skipped. Reading the four cases and preparing them at 2 mm takes about 15 s.
"""

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_sample

from mmdis.cli import main
from mmdis.conventions import region_masks, subset_name
from mmdis.data.cache import Cache
from mmdis.data.io import MissingModalityError
from mmdis.data.layouts import detect_layout, discover_cases, read_case
from mmdis.data.preprocess import bounding_box, crop

SAMPLE = shared_sample("brats2015-sample", "MMDIS_BRATS2015_SAMPLE", "BraTS 2015")

pytestmark = pytest.mark.realdata

CASE_IDS = ["brats_2013_pat0003_1", "brats_2013_pat0004_1", "brats_2013_pat0005_1", "brats_2013_pat0006_1"]
FLAIR_T1C = (True, False, True, False)


def _summary(files) -> dict:
    """What the tests check of one case, so that the 4 x 100 MB of volumes are not all held at once."""
    raw = read_case(files, allow_missing=True)
    regions = region_masks(raw.label)
    start, stop = bounding_box(raw.brain_mask)
    tumour = regions["WT"]
    return {
        "files": files,
        "available": raw.available,
        "shape": raw.shape,
        "spacing": raw.spacing,
        "zscored": raw.zscored,
        "file_labels": set(np.unique(np.asarray(nib.load(files.label).dataobj)).tolist()),
        "labels": set(np.unique(raw.label).tolist()),
        "volumes": {name: int(m.sum()) for name, m in regions.items()},
        "nested": bool(np.all(regions["TC"] <= regions["WT"]) and np.all(regions["ET"] <= regions["TC"])),
        "tumour_in_mask": float((tumour & raw.brain_mask).sum() / tumour.sum()),
        "tumour_lost_by_crop": int(tumour.sum() - crop(tumour, start, stop).sum()),
        "brain_stats": {m: (float(v[raw.brain_mask].mean()), float(v[raw.brain_mask].std()))
                        for m, v in raw.images.items()},
    }


@pytest.fixture(scope="module")
def cases() -> dict[str, dict]:
    return {f.case_id: _summary(f) for f in discover_cases(SAMPLE)}


def test_layout_is_detected():
    assert detect_layout(SAMPLE) == "authors"
    files = discover_cases(SAMPLE)
    assert [f.case_id for f in files] == CASE_IDS
    assert all(f.layout == "authors" and f.label_convention == "brats2015" and f.zscored for f in files)
    assert all(f.brain_mask is not None and f.brain_mask.name == "brainmask.nii.gz" for f in files)


def test_available_modalities_are_flair_and_t1c(cases):
    for summary in cases.values():
        assert summary["files"].available == FLAIR_T1C and summary["available"] == FLAIR_T1C
        assert subset_name(summary["available"]) == "FLAIR+T1c"
    files = cases[CASE_IDS[0]]["files"]
    with pytest.raises(MissingModalityError, match=rf"{CASE_IDS[0]}.*T1_subtrMeanDivStd.*T2_subtrMeanDivStd"):
        read_case(files)  # T1 and T2 are really missing: refused unless allowed


def test_grid_is_the_brats_grid(cases):
    for summary in cases.values():
        assert summary["shape"] == (240, 240, 155)
        np.testing.assert_allclose(summary["spacing"], (1.0, 1.0, 1.0), atol=1e-4)


def test_images_are_already_zscored_within_the_mask(cases):
    for case_id, summary in cases.items():
        assert summary["zscored"]
        for m, (mean, std) in summary["brain_stats"].items():
            # The authors' normalisation mask is not exactly this one: close to (0, 1), not equal.
            assert abs(mean) < 0.5 and 0.5 < std < 2.0, (case_id, m, mean, std)


def test_labels_are_brats2015_and_map_to_canonical(cases):
    for case_id, summary in cases.items():
        assert summary["file_labels"] <= {0, 1, 2, 3, 4}, case_id
        assert summary["labels"] <= {0, 1, 2, 3}, case_id


def test_region_volumes_are_plausible_and_nested(cases):
    for case_id, summary in cases.items():
        wt, tc, et = (summary["volumes"][r] for r in ("WT", "TC", "ET"))
        print(f"{case_id}: WT {wt} TC {tc} ET {et} voxels (1 mm^3 each)")
        assert 0 < et <= tc <= wt and summary["nested"], case_id
        assert 1e3 <= wt <= 5e5, (case_id, wt)
        # The tumour lies in the brain mask (but for a few hundred boundary voxels) and inside its crop.
        assert summary["tumour_in_mask"] > 0.99, (case_id, summary["tumour_in_mask"])
        assert summary["tumour_lost_by_crop"] == 0, case_id


def test_prepare_from_the_command_line(tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    argv = ["--quiet", "prepare", str(SAMPLE), str(cache_dir), "--spacing", "2"]
    assert main(argv) == 2  # T1 and T2 are missing
    assert "T1_subtrMeanDivStd" in capsys.readouterr().err
    assert main([*argv, "--allow-missing"]) == 0
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    assert manifest["layout"] == "authors"
    assert [e["case_id"] for e in manifest["cases"]] == CASE_IDS
    for entry in manifest["cases"]:
        assert entry["modalities"] == ["flair", "t1ce"] and entry["available"] == list(FLAIR_T1C)
        assert entry["labelled"]
        np.testing.assert_allclose(entry["spacing"], 2.0, atol=0.05)
    cache = Cache.open(cache_dir)
    assert sorted(cache.case_ids("train") + cache.case_ids("val") + cache.case_ids("test")) == CASE_IDS
    case = cache.load(CASE_IDS[0], mmap=False)
    assert case.image.shape[0] == 4 and not case.image[[1, 3]].any()  # T1, T2: zero and flagged missing
    assert list(case.available) == list(FLAIR_T1C)
    assert not case.image[:, ~case.mask].any() and set(np.unique(case.label).tolist()) <= {0, 1, 2, 3}
    assert (case.label == 3).any()  # enhancing tumour survives the resampling
