"""Layout detection, modality and label mapping, and validation errors for every dataset layout."""

import gzip
import json
import re
import shutil

import numpy as np
import pytest
from conftest import (
    CASE_IDS,
    WRITERS,
    rewrite_volume,
    save_nii,
    tiny_volumes,
    write_authors_case,
    write_brats2015_case,
    write_brats_case,
    write_msd_case,
)

from mmdis.conventions import MODALITIES, SUBSETS, LabelError, subset_name
from mmdis.data.io import CaseError, CorruptFileError, GeometryError, IntensityError, MissingModalityError
from mmdis.data.layouts import LAYOUTS, detect_layout, discover_cases, load_dataset, read_case
from mmdis.data.preprocess import bounding_box, crop, preprocess_case

MULTI_FILE = [layout for layout in LAYOUTS if layout != "msd"]
#: Dataset label -> canonical label, written out by hand (not taken from mmdis.conventions).
EXPECTED_MAPPING = {
    "brats2021": {0: 0, 1: 1, 2: 2, 4: 3},
    "brats2023": {0: 0, 1: 1, 2: 2, 3: 3},
    "msd": {0: 0, 1: 2, 2: 1, 3: 3},
    "brats2015": {0: 0, 1: 1, 2: 2, 3: 1, 4: 3},
    "authors": {0: 0, 1: 1, 2: 2, 3: 1, 4: 3},
}
#: The label numbering of each layout; the authors' files number labels as BraTS 2015 does.
CONVENTION = {**{layout: layout for layout in LAYOUTS}, "authors": "brats2015"}


def _only_case(root):
    (files,) = discover_cases(root)
    return files


def _names(files):
    """A regex matching a message that names the case and then the file."""
    return lambda path: rf"{re.escape(files.case_id)}.*{re.escape(path.name)}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_detect_discover_and_read(tmp_path, layout):
    WRITERS[layout](tmp_path)
    assert detect_layout(tmp_path) == layout
    files = _only_case(tmp_path)
    assert files.case_id == CASE_IDS[layout] and files.layout == layout
    raw = read_case(files)
    images, label = tiny_volumes()
    for m in MODALITIES:  # each file (or MSD channel) lands on its canonical modality
        want = images[m].astype(np.int16) if layout == "brats2015" else images[m]  # .mha stored as int16
        assert raw.images[m].dtype == np.float32 and raw.images[m].shape == label.shape
        np.testing.assert_array_equal(raw.images[m], want)
    np.testing.assert_array_equal(raw.label, label)  # labels mapped back to canonical
    assert raw.label.dtype == np.uint8 and raw.available == (True,) * 4
    assert raw.label_convention == CONVENTION[layout] and raw.layout == layout
    assert raw.affine.shape == (4, 4) and set(MODALITIES) <= set(raw.sources)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_dataset_label_maps_to_canonical(tmp_path, layout):
    WRITERS[layout](tmp_path)
    files = _only_case(tmp_path)
    raw_values = sorted(EXPECTED_MAPPING[layout])
    seg = np.zeros(tiny_volumes()[1].shape, np.uint8)
    for k, value in enumerate(raw_values):  # one slab per dataset label
        seg[2 * k: 2 * k + 2] = value
    rewrite_volume(files.label, lambda a, aff: (seg.astype(a.dtype), aff))
    label = read_case(files).label
    for k, value in enumerate(raw_values):
        assert np.all(label[2 * k: 2 * k + 2] == EXPECTED_MAPPING[layout][value]), (layout, value)


def test_brats2023_and_msd_modality_names(tmp_path):
    write_brats_case(tmp_path / "g", "BraTS-GLI-1", layout="brats2023", modalities=("flair",))
    assert (tmp_path / "g" / "BraTS-GLI-1" / "BraTS-GLI-1-t2f.nii.gz").is_file()
    assert set(_only_case(tmp_path / "g").images) == {"flair"}  # t2f is FLAIR
    write_msd_case(tmp_path / "m")
    files = _only_case(tmp_path / "m")
    assert files.channels == {"flair": 0, "t1": 1, "t1ce": 2, "t2": 3}  # FLAIR, T1w, T1gd, T2w


def test_msd_dataset_json_decides_the_channel_order(tmp_path):
    write_msd_case(tmp_path)
    declared = {"0": "T2w", "1": "FLAIR", "2": "T1w", "3": "t1gd"}
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "BRATS", "modality": declared}))
    raw = read_case(_only_case(tmp_path))
    images, _ = tiny_volumes()
    np.testing.assert_array_equal(raw.images["t2"], images["flair"])  # channel 0 is now called T2w
    np.testing.assert_array_equal(raw.images["flair"], images["t1"])
    (tmp_path / "dataset.json").write_text(json.dumps({"modality": {"0": "FLAIR", "1": "DWI"}}))
    with pytest.raises(CaseError, match="dataset.json.*DWI"):
        discover_cases(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="dataset.json"):
        discover_cases(tmp_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unlabelled_cases_are_allowed(tmp_path, layout):
    WRITERS[layout](tmp_path, labelled=False)
    (raw,) = list(load_dataset(tmp_path))
    assert raw.label is None and raw.available == (True,) * 4


def test_msd_unlabelled_and_resource_forks(tmp_path):
    write_msd_case(tmp_path, "BRATS_001")
    write_msd_case(tmp_path, "BRATS_002", seed=1)
    write_msd_case(tmp_path, "BRATS_900", labelled=False)  # imagesTs
    (tmp_path / "labelsTr" / "BRATS_002.nii.gz").unlink()
    for sub in ("imagesTr", "labelsTr", "imagesTs"):  # macOS resource forks, as in the official tar
        (tmp_path / sub / "._BRATS_001.nii.gz").write_bytes(b"\0\5\26\7junk")
    (tmp_path / "dataset.json").write_text(json.dumps({"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd",
                                                                    "3": "T2w"}}))
    cases = discover_cases(tmp_path)
    assert [(c.case_id, c.label is not None, c.group) for c in cases] == [
        ("BRATS_001", True, "imagesTr"), ("BRATS_002", False, "imagesTr"), ("BRATS_900", False, "imagesTs")]
    assert [r.case_id for r in load_dataset(tmp_path)] == ["BRATS_001", "BRATS_002", "BRATS_900"]


@pytest.mark.parametrize("shape", [(12, 14, 10, 3), (12, 14, 10, 5), (12, 14, 10)])
def test_msd_needs_four_channels(tmp_path, shape):
    write_msd_case(tmp_path)
    files = _only_case(tmp_path)
    rewrite_volume(files.images["flair"], lambda a, aff: (np.ones(shape, np.float32), aff))
    with pytest.raises(GeometryError, match=_names(files)(files.images["flair"]) + r".*4-D"):
        read_case(files)


@pytest.mark.parametrize("layout", MULTI_FILE)
def test_missing_modality_refused_or_left_out(tmp_path, layout):
    WRITERS[layout](tmp_path, modalities=("flair", "t1ce", "t2"))
    files = _only_case(tmp_path)
    assert set(files.images) == {"flair", "t1ce", "t2"}  # still listed, with a gap
    expected_name = {"brats2021": "_t1.nii.gz", "brats2023": "-t1n.nii.gz", "brats2015": "MR_T1.",
                     "authors": "/T1_subtrMeanDivStd.nii.gz"}[layout]
    with pytest.raises(MissingModalityError, match=rf"{files.case_id}.*t1 .*{re.escape(expected_name)}"):
        read_case(files)
    raw = read_case(files, allow_missing=True)
    assert raw.available == (True, False, True, True) and "t1" not in raw.images  # never zero-filled
    WRITERS[layout](tmp_path / "full")
    full = read_case(_only_case(tmp_path / "full"))
    for m in raw.images:  # the other modalities are untouched by the gap
        np.testing.assert_array_equal(raw.images[m], full.images[m])


@pytest.mark.parametrize("layout", MULTI_FILE)
def test_no_modality_at_all(tmp_path, layout):
    WRITERS[layout](tmp_path, modalities=())
    files = _only_case(tmp_path)
    with pytest.raises(MissingModalityError, match=rf"{files.case_id}.*no modality"):
        read_case(files, allow_missing=True)


def test_brats2015_t1_is_not_t1c(tmp_path):
    write_brats2015_case(tmp_path, modalities=("t1ce",))
    assert set(_only_case(tmp_path).images) == {"t1ce"}
    write_brats2015_case(tmp_path / "b", modalities=("t1",))
    assert set(_only_case(tmp_path / "b").images) == {"t1"}


def test_brats2015_folder_arrangements(tmp_path):
    write_brats2015_case(tmp_path / "a", "pat1", grade="HGG")
    write_brats2015_case(tmp_path / "a", "pat2", grade="LGG", seed=1)
    write_brats2015_case(tmp_path / "a", "pat3", grade="HGG_LGG", labelled=False)  # the testing set
    write_brats2015_case(tmp_path / "a", "pat4", grade=None, seed=2)  # no grade folder at all
    assert detect_layout(tmp_path / "a") == "brats2015"
    cases = discover_cases(tmp_path / "a")
    assert [(c.case_id, c.group, c.label is not None) for c in cases] == [
        ("pat1", "HGG", True), ("pat2", "LGG", True), ("pat3", "HGG_LGG", False), ("pat4", None, True)]
    write_brats2015_case(tmp_path / "a", "pat1", grade="LGG")
    with pytest.raises(CaseError, match="pat1 appears twice"):
        discover_cases(tmp_path / "a")


# --- bad inputs: every layout, the documented error class, the case and the file named -------------

def _target(files):
    """The volume to break: T1c (MSD: the 4-D file)."""
    return files.images["t1ce"]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _set_nan(a, aff):
    a = a.astype(np.float32)
    a[(4, 5, 5) + (0,) * (a.ndim - 3)] = np.nan
    return a, aff


def _shift(a, aff):
    aff[0, 3] += 5.0
    return a, aff


BAD_INPUTS = {
    # name: (file to break, how, error class, pattern after the file name)
    "truncated": (_target, _truncate, CorruptFileError, ""),
    "not an image": (_target, lambda p: p.write_bytes(b"not an image " * 20), CorruptFileError, ""),
    "non-finite": (_target, lambda p: rewrite_volume(p, _set_nan), IntensityError, ".*non-finite"),
    "label shape": (lambda f: f.label, lambda p: rewrite_volume(p, lambda a, aff: (a[:-1], aff)),
                    GeometryError, ""),
    "label affine": (lambda f: f.label, lambda p: rewrite_volume(p, _shift), GeometryError, ""),
    "label value": (lambda f: f.label, lambda p: rewrite_volume(p, lambda a, aff: (a * 0 + 7, aff)),
                    LabelError, r".*\[7\]"),
}


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_bad_input_raises_naming_case_and_file(tmp_path, layout, bad):
    WRITERS[layout](tmp_path)
    files = _only_case(tmp_path)
    which, breaker, error, tail = BAD_INPUTS[bad]
    path = which(files)
    breaker(path)
    with pytest.raises(error, match=_names(files)(path) + tail):
        read_case(files)


@pytest.mark.parametrize("layout", MULTI_FILE)
@pytest.mark.parametrize("change", ["shape", "affine"])
def test_modalities_disagree(tmp_path, layout, change):
    WRITERS[layout](tmp_path)
    files = _only_case(tmp_path)
    rewrite_volume(files.images["t2"], (lambda a, aff: (a[:, :-1], aff)) if change == "shape" else _shift)
    name = re.escape(files.images["t2"].name)
    with pytest.raises(GeometryError, match=rf"{files.case_id}.*{change} .*{name}"):
        read_case(files)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_empty_brain(tmp_path, layout):
    WRITERS[layout](tmp_path)
    files = _only_case(tmp_path)
    for path in set(files.images.values()):
        rewrite_volume(path, lambda a, aff: (np.zeros_like(a), aff))
    with pytest.raises(IntensityError, match=_names(files)(_target(files)) + ".* is 0"):
        read_case(files)


def test_one_empty_modality_is_missing_not_data(tmp_path):
    """An all-zero sequence is not an empty brain (the others show it), but it is no scan either: refused,
    or with missing modalities allowed, dropped with a warning."""
    write_brats_case(tmp_path, "c1")
    files = _only_case(tmp_path)
    rewrite_volume(files.images["t1"], lambda a, aff: (np.zeros_like(a), aff))
    with pytest.raises(MissingModalityError, match=r"c1_t1\.nii\.gz is constant \(0 everywhere\)"):
        read_case(files)
    with pytest.warns(UserWarning, match="treated as missing"):
        case = read_case(files, allow_missing=True)
    assert case.available == (True, False, True, True)


@pytest.mark.parametrize("fill", ["everywhere", "brain"])
def test_a_constant_modality_is_missing_not_data(tmp_path, fill):
    """A constant sequence would make the whole volume count as brain (or z-score to zeros)."""
    write_brats_case(tmp_path, "c2")
    files = _only_case(tmp_path)
    others = read_case(files)
    brain = np.logical_or.reduce([v != 0 for m, v in others.images.items() if m != "t2"])

    def constant(a, aff):
        return (np.full_like(a, 7.0) if fill == "everywhere" else np.where(brain, 7.0, 0.0)), aff

    rewrite_volume(files.images["t2"], constant)
    with pytest.warns(UserWarning, match="c2_t2.nii.gz is constant"):
        case = read_case(files, allow_missing=True)
    assert case.available == (True, True, True, False)


# --- file-name variants -----------------------------------------------------------------------------

def test_uncompressed_nifti_accepted(tmp_path):
    d = write_brats_case(tmp_path / "a", "c9")
    with gzip.open(d / "c9_t1.nii.gz", "rb") as src, open(d / "c9_t1.nii", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (d / "c9_t1.nii.gz").unlink()
    assert read_case(_only_case(tmp_path / "a")).available == (True,) * 4
    write_msd_case(tmp_path / "m", ext=".nii")
    assert read_case(_only_case(tmp_path / "m")).available == (True,) * 4


def test_renamed_case_folder_still_found(tmp_path):
    d = write_brats_case(tmp_path, "BraTS2021_00001")
    d.rename(tmp_path / "patient one")
    files = _only_case(tmp_path)
    assert files.case_id == "patient one" and len(files.images) == 4 and files.label is not None


def test_trailing_singleton_axis_is_dropped(tmp_path):
    write_brats_case(tmp_path, "c1")
    files = _only_case(tmp_path)
    rewrite_volume(files.images["flair"], lambda a, aff: (a[..., None], aff))  # (X, Y, Z, 1)
    assert read_case(files).images["flair"].shape == tiny_volumes()[1].shape
    rewrite_volume(files.images["flair"], lambda a, aff: (np.repeat(a, 2, axis=-1), aff))  # (X, Y, Z, 2)
    with pytest.raises(GeometryError, match=r"c1.*c1_flair\.nii\.gz.*3-D"):
        read_case(files)


def test_cases_sorted_and_stray_entries_ignored(make_dataset):
    root = make_dataset("brats2023", n=3)
    (root / "notes").mkdir()
    (root / "README.txt").write_text("hi")
    (root / ".BraTS-GLI-00000-009.tmp").mkdir()  # an interrupted atomic write
    assert [c.case_id for c in discover_cases(root)] == [f"BraTS-GLI-00000-00{i}" for i in range(3)]


# --- unknown folders ------------------------------------------------------------------------------

def test_unknown_folder(tmp_path):
    (tmp_path / "whatever").mkdir()
    (tmp_path / "whatever" / "notes.txt").write_text("hi")
    with pytest.raises(CaseError, match=r"matches no known dataset layout.*whatever/.*brats2021.*msd"):
        detect_layout(tmp_path)
    with pytest.raises(CaseError, match="does not exist"):
        detect_layout(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaseError, match="empty"):
        discover_cases(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown layout"):
        discover_cases(tmp_path, layout="brats2019")


def test_unknown_folder_hints_at_the_right_one(tmp_path):
    write_msd_case(tmp_path / "Task01_BrainTumour")
    with pytest.raises(CaseError, match="Task01_BrainTumour looks like a dataset"):
        detect_layout(tmp_path)
    d = write_brats_case(tmp_path / "raw", "BraTS2021_00002")
    with pytest.raises(CaseError, match="single brats2021 case: pass its parent"):
        detect_layout(d)


def test_nifti_in_the_wrong_numbering(tmp_path):
    # A BraTS 2023 label file (ET = 3) under BraTS 2021 names: 3 is not a 2021 label.
    d = write_brats_case(tmp_path, "c1")
    _, label = tiny_volumes()
    save_nii(label, d / "c1_seg.nii.gz")  # canonical == 2023 numbering
    with pytest.raises(LabelError, match=r"c1.*c1_seg\.nii\.gz.*\[3\].*brats2021"):
        read_case(_only_case(tmp_path))


# --- the authors' layout: z-scored images, a shipped brain mask, BraTS 2015 labels ------------------

def _authors(tmp_path, **kw):
    """Write one authors' case and return its :class:`CaseFiles`."""
    write_authors_case(tmp_path, **kw)
    return _only_case(tmp_path)


@pytest.mark.parametrize("available", SUBSETS, ids=subset_name)
def test_authors_any_subset_of_modalities(tmp_path, available):
    modalities = [m for m, a in zip(MODALITIES, available) if a]
    write_authors_case(tmp_path, modalities=modalities)
    assert detect_layout(tmp_path) == "authors"
    files = _only_case(tmp_path)
    assert files.available == available and files.label_convention == "brats2015" and files.zscored
    raw = read_case(files, allow_missing=True)
    assert raw.available == available and set(raw.images) == set(modalities)  # never zero-filled
    images, _ = tiny_volumes()
    for m in modalities:
        np.testing.assert_array_equal(raw.images[m], images[m])
    if not all(available):
        with pytest.raises(MissingModalityError, match=rf"{files.case_id}: missing .*_subtrMeanDivStd"):
            read_case(files)


def test_authors_detection_groups_names_and_hints(tmp_path):
    write_authors_case(tmp_path / "a", "pat1", group="train")  # DeepMedic's train/ and validation/
    write_authors_case(tmp_path / "a", "pat2", group="validation", labelled=False, seed=1)
    write_authors_case(tmp_path / "a", "pat3", seed=2)
    assert detect_layout(tmp_path / "a") == "authors"
    cases = discover_cases(tmp_path / "a")
    assert [(c.case_id, c.group, c.label is not None) for c in cases] == [
        ("pat1", "train", True), ("pat2", "validation", False), ("pat3", None, True)]
    with pytest.raises(CaseError, match="pat3 looks like a single authors case: pass its parent"):
        detect_layout(tmp_path / "a" / "pat3")
    # File names in another case, and uncompressed, are the same files.
    d = write_authors_case(tmp_path / "b", "pat4", modalities=("t2",), ext=".nii")
    (d / "T2_subtrMeanDivStd.nii").rename(d / "t2_SUBTRMEANDIVSTD.nii")
    files = _only_case(tmp_path / "b")
    assert files.available == (False, False, False, True) and files.brain_mask.name == "brainmask.nii"
    # A mask alone does not make a case.
    save_nii(np.ones((4, 4, 4), np.uint8), tmp_path / "c" / "x" / "brainmask.nii.gz")
    with pytest.raises(CaseError, match="matches no known dataset layout"):
        detect_layout(tmp_path / "c")


def test_authors_two_files_for_one_volume(tmp_path):
    d = write_authors_case(tmp_path)
    shutil.copy(d / "Flair_subtrMeanDivStd.nii.gz", d / "FLAIR_subtrMeanDivStd.nii.gz")
    with pytest.raises(CaseError, match=rf"{d.name}: two files for one volume.*(Flair|FLAIR)_subtr"):
        discover_cases(tmp_path)


def test_authors_brain_mask_missing_empty_or_not_binary(tmp_path):
    files = _authors(tmp_path)
    mask = files.brain_mask
    mask.unlink()
    files = _only_case(tmp_path)
    with pytest.raises(CaseError, match=rf"{files.case_id}: brain mask file .*brainmask\.nii\.gz does not"):
        read_case(files, allow_missing=True)  # allowing missing modalities does not excuse the mask
    write_authors_case(tmp_path)
    files = _only_case(tmp_path)
    rewrite_volume(mask, lambda a, aff: (np.zeros_like(a), aff))
    with pytest.raises(IntensityError, match=rf"{files.case_id}: brain mask .*brainmask\.nii\.gz is empty"):
        read_case(files)
    brain = tiny_volumes()[0]["flair"] != 0
    rewrite_volume(mask, lambda a, aff: ((brain * (1 + np.indices(a.shape)[0] % 2)).astype(a.dtype), aff))
    with pytest.raises(CaseError, match=r"brainmask\.nii\.gz must be binary .*0, 1, 2"):  # a label map
        read_case(files)
    rewrite_volume(mask, lambda a, aff: (brain.astype(a.dtype) * 255, aff))  # 0/255 is binary all the same
    np.testing.assert_array_equal(read_case(files).brain_mask, brain)


def test_authors_non_finite_mask(tmp_path):
    files = _authors(tmp_path)
    rewrite_volume(files.brain_mask, _set_nan)
    with pytest.raises(IntensityError, match=_names(files)(files.brain_mask) + ".*non-finite"):
        read_case(files)


def test_authors_label_outside_brats2015_set(tmp_path):
    files = _authors(tmp_path)

    def add_five(a, aff):
        a = a.copy()
        a[5, 6, 4] = 5
        return a, aff

    rewrite_volume(files.label, add_five)
    with pytest.raises(LabelError, match=_names(files)(files.label) + r".*\[5\].*brats2015"):
        read_case(files)


@pytest.mark.parametrize("change", ["shape", "affine"])
def test_authors_mask_geometry_must_match_the_images(tmp_path, change):
    files = _authors(tmp_path, modalities=("flair", "t1ce"))
    rewrite_volume(files.brain_mask, (lambda a, aff: (a[:, :-1], aff)) if change == "shape" else _shift)
    with pytest.raises(GeometryError, match=_names(files)(files.brain_mask)):
        read_case(files, allow_missing=True)


def test_authors_images_are_not_zscored_twice(tmp_path):
    files = _authors(tmp_path, modalities=("flair", "t1ce"), zscored=True)
    raw = read_case(files, allow_missing=True)
    brain = tiny_volumes()[0]["flair"] != 0
    assert raw.zscored and raw.brain_mask.dtype == bool
    np.testing.assert_array_equal(raw.brain_mask, brain)
    assert np.all(raw.images["flair"][~brain] == raw.images["flair"][brain].min())  # not 0, as in the sample
    case = preprocess_case(raw)
    start, stop = bounding_box(brain)
    assert (case.crop.start, case.crop.stop) == (start, stop)  # the shipped mask decides the crop
    for i, m in enumerate(MODALITIES):
        if m in raw.images:  # values inside the mask kept, background zeroed
            kept = crop(raw.images[m], start, stop)[case.mask]
            np.testing.assert_array_equal(case.image[i][case.mask], kept)
            assert not case.image[i][~case.mask].any()
        else:
            assert not case.image[i].any()
    # Values far from z-scores (tiny_volumes' 50..300) come through unchanged too: no z-scoring at all.
    plain = preprocess_case(read_case(_authors(tmp_path / "plain")))
    np.testing.assert_array_equal(plain.image[3][plain.mask], tiny_volumes()[0]["t2"][brain])


def test_authors_background_does_not_leak_into_resampled_brain(tmp_path):
    files = _authors(tmp_path, modalities=("flair",), zscored=True)
    brain = tiny_volumes()[0]["flair"] != 0
    brain[5:7, 5:8, :] = False  # a hole: background inside the crop
    rewrite_volume(files.brain_mask, lambda a, aff: (brain.astype(a.dtype), aff))
    rewrite_volume(files.images["flair"], lambda a, aff: (np.where(brain, a, -100.0).astype(a.dtype), aff))
    raw = read_case(files, allow_missing=True)
    inside = raw.images["flair"][brain]
    case = preprocess_case(raw, target_spacing=2.0)
    values = case.image[0][case.mask]
    assert values.min() >= min(inside.min(), 0.0) - 1e-5 and values.max() <= inside.max() + 1e-5


def test_authors_inference_case_without_label(tmp_path):
    files = _authors(tmp_path, modalities=("flair", "t1ce"), labelled=False)
    assert files.label is None
    raw = read_case(files, allow_missing=True)
    assert raw.label is None and raw.available == (True, False, True, False)
    assert preprocess_case(raw).label is None


def test_authors_prepare_records_each_case_modalities(tmp_path):
    from mmdis.data.cache import Cache, PrepareConfig, prepare

    raw = tmp_path / "raw"
    write_authors_case(raw, "a", modalities=("flair", "t1ce"), zscored=True)
    write_authors_case(raw, "b", modalities=("t1", "t1ce", "t2"), zscored=True, seed=1)
    write_authors_case(raw, "c", modalities=("flair", "t1ce"), zscored=True, seed=2, labelled=False)
    with pytest.raises(MissingModalityError, match=r"case a: missing .*T1_subtrMeanDivStd"):
        prepare(raw, tmp_path / "cache", progress=False)
    manifest = prepare(raw, tmp_path / "cache", PrepareConfig(allow_missing=True), progress=False)
    assert manifest["layout"] == "authors"
    assert {e["case_id"]: (e["modalities"], e["labelled"]) for e in manifest["cases"]} == {
        "a": (["flair", "t1ce"], True), "b": (["t1", "t1ce", "t2"], True), "c": (["flair", "t1ce"], False)}
    cache = Cache.open(tmp_path / "cache")
    assert cache.case_ids("unlabelled") == ["c"]  # an inference case
    case = cache.load("a", mmap=False)
    assert list(case.available) == [True, False, True, False] and not case.image[[1, 3]].any()
