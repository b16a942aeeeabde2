"""Layout detection, modality and label mapping, and validation errors for every dataset layout."""

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import WRITERS, tiny_volumes, write_brats_case, write_msd_case

from mmdis.conventions import MODALITIES, LabelError
from mmdis.data.io import CaseError, CorruptFileError, GeometryError, IntensityError, MissingModalityError
from mmdis.data.layouts import LAYOUTS, detect_layout, discover_cases, load_dataset, read_case


@pytest.mark.parametrize("layout", LAYOUTS)
def test_detect_discover_and_read(tmp_path, layout):
    WRITERS[layout](tmp_path, seed=0)
    assert detect_layout(tmp_path) == layout
    cases = discover_cases(tmp_path)
    assert len(cases) == 1 and cases[0].layout == layout
    raw = read_case(cases[0])
    images, label = tiny_volumes()
    for m in MODALITIES:  # each file lands on its canonical modality
        want = images[m].astype(np.int16) if layout == "brats2015" else images[m]  # .mha stored as int16
        np.testing.assert_allclose(raw.images[m], want)
    np.testing.assert_array_equal(raw.label, label)  # labels mapped back to canonical
    assert raw.available == (True,) * 4 and raw.shape == label.shape
    assert raw.label_convention == {"brats2021": "brats2021", "brats2023": "brats2023", "msd": "msd",
                                    "brats2015": "brats2015"}[layout]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unlabelled_cases_are_allowed(tmp_path, layout):
    WRITERS[layout](tmp_path, labelled=False)
    (raw,) = list(load_dataset(tmp_path))
    assert raw.label is None and len(raw.images) == 4


def test_msd_label_numbering(tmp_path):
    write_msd_case(tmp_path)
    seg = np.asarray(nib.load(tmp_path / "labelsTr" / "BRATS_001.nii.gz").dataobj)
    raw = read_case(discover_cases(tmp_path)[0])
    assert np.all(raw.label[seg == 1] == 2)  # MSD 1 = edema
    assert np.all(raw.label[seg == 2] == 1)  # MSD 2 = non-enhancing core
    assert np.all(raw.label[seg == 3] == 3)


def test_msd_ignores_resource_forks_and_checks_channels(tmp_path):
    write_msd_case(tmp_path)
    (tmp_path / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\0\5junk")
    assert [c.case_id for c in discover_cases(tmp_path)] == ["BRATS_001"]
    write_msd_case(tmp_path / "three", channels=3)
    with pytest.raises(CaseError, match="BRATS_001.*4 channels"):
        read_case(discover_cases(tmp_path / "three")[0])


def test_brats2015_t1_is_not_t1c(tmp_path):
    write_brats2015_case = WRITERS["brats2015"]
    write_brats2015_case(tmp_path, modalities=("t1ce",))
    (case,) = discover_cases(tmp_path)
    assert set(case.images) == {"t1ce"}


def test_missing_modality_refused_or_flagged(tmp_path):
    write_brats_case(tmp_path, "BraTS2021_00007", modalities=("flair", "t1ce", "t2"))
    (files,) = discover_cases(tmp_path)
    with pytest.raises(MissingModalityError, match=r"BraTS2021_00007.*t1.*BraTS2021_00007_t1\.nii\.gz"):
        read_case(files)
    raw = read_case(files, allow_missing=True)
    assert raw.available == (True, False, True, True) and "t1" not in raw.images


def test_no_modality_at_all(tmp_path):
    write_brats_case(tmp_path, "c1", modalities=())
    (files,) = discover_cases(tmp_path)
    with pytest.raises(MissingModalityError, match="c1"):
        read_case(files, allow_missing=True)


def _rewrite(path, fn):
    img = nib.load(path)
    arr, affine = fn(np.asarray(img.dataobj), img.affine.copy())
    nib.save(nib.Nifti1Image(arr, affine), str(path))


def test_shape_mismatch(tmp_path):
    d = write_brats_case(tmp_path, "c2")
    _rewrite(d / "c2_t2.nii.gz", lambda a, aff: (a[:-1], aff))
    with pytest.raises(GeometryError, match=r"c2.*c2_t2\.nii\.gz"):
        read_case(discover_cases(tmp_path)[0])


def test_affine_mismatch(tmp_path):
    d = write_brats_case(tmp_path, "c3")

    def shift(a, aff):
        aff[0, 3] += 5
        return a, aff

    _rewrite(d / "c3_seg.nii.gz", shift)
    with pytest.raises(GeometryError, match=r"c3.*affine.*c3_seg\.nii\.gz"):
        read_case(discover_cases(tmp_path)[0])


def test_non_finite_voxels(tmp_path):
    d = write_brats_case(tmp_path, "c4")

    def nan(a, aff):
        a = a.astype(np.float32)
        a[3, 3, 3] = np.nan
        return a, aff

    _rewrite(d / "c4_flair.nii.gz", nan)
    with pytest.raises(IntensityError, match=r"c4.*c4_flair\.nii\.gz.*non-finite"):
        read_case(discover_cases(tmp_path)[0])


def test_label_outside_the_set(tmp_path):
    d = write_brats_case(tmp_path, "c5")
    _rewrite(d / "c5_seg.nii.gz", lambda a, aff: (np.where(a == 4, 3, a).astype(np.uint8), aff))
    with pytest.raises(LabelError, match=r"c5_seg\.nii\.gz.*\[3\].*brats2021"):
        read_case(discover_cases(tmp_path)[0])


def test_empty_brain(tmp_path):
    d = write_brats_case(tmp_path, "c6")
    for m in MODALITIES:
        _rewrite(d / f"c6_{m}.nii.gz", lambda a, aff: (np.zeros_like(a), aff))
    with pytest.raises(IntensityError, match="c6.*empty"):
        read_case(discover_cases(tmp_path)[0])


def test_truncated_file(tmp_path):
    d = write_brats_case(tmp_path, "c7")
    f = d / "c7_t1ce.nii.gz"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"c7.*c7_t1ce\.nii\.gz"):
        read_case(discover_cases(tmp_path)[0])


def test_not_gzip_at_all(tmp_path):
    d = write_brats_case(tmp_path, "c8")
    (d / "c8_t2.nii.gz").write_bytes(b"this is not an image")
    with pytest.raises(CorruptFileError, match="c8_t2"):
        read_case(discover_cases(tmp_path)[0])


def test_uncompressed_nifti_accepted(tmp_path):
    d = write_brats_case(tmp_path, "c9")
    with gzip.open(d / "c9_t1.nii.gz", "rb") as src, open(d / "c9_t1.nii", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (d / "c9_t1.nii.gz").unlink()
    raw = read_case(discover_cases(tmp_path)[0])
    assert raw.available == (True,) * 4


def test_unknown_folder(tmp_path):
    (tmp_path / "whatever").mkdir()
    (tmp_path / "whatever" / "notes.txt").write_text("hi")
    with pytest.raises(CaseError, match="matches no known dataset layout.*brats2021"):
        detect_layout(tmp_path)
    with pytest.raises(CaseError, match="does not exist"):
        detect_layout(tmp_path / "absent")


def test_cases_sorted_and_many(tmp_path):
    for cid in ("b", "a", "c"):
        write_brats_case(tmp_path, cid, layout="brats2023")
    assert [c.case_id for c in discover_cases(tmp_path)] == ["a", "b", "c"]
