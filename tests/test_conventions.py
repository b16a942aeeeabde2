"""Modalities, label conventions, regions and the 15 subsets."""

import itertools

import numpy as np
import pytest

from mmdis import conventions as C


def test_modality_order_is_the_papers():
    assert C.MODALITIES == ("flair", "t1", "t1ce", "t2")
    assert [C.MODALITY_NAMES[m] for m in C.MODALITIES] == ["FLAIR", "T1", "T1c", "T2"]


def test_subsets_are_the_15_nonempty_masks_in_table2_order():
    assert len(C.SUBSETS) == 15 == len(set(C.SUBSETS))
    assert set(C.SUBSETS) == {s for s in itertools.product([False, True], repeat=4) if any(s)}
    assert C.SUBSETS[0] == (False, False, False, True)  # T2 alone, the paper's first row
    assert C.SUBSETS[-1] == (True, True, True, True)
    assert [sum(s) for s in C.SUBSETS] == sorted(sum(s) for s in C.SUBSETS)


@pytest.mark.parametrize("name", sorted(C.LABEL_CONVENTIONS))
def test_round_trip_through_each_convention(name):
    conv = C.LABEL_CONVENTIONS[name]
    canonical = np.arange(C.NUM_CLASSES, dtype=np.uint8).repeat(3).reshape(2, 2, 3)
    back = C.to_canonical(C.from_canonical(canonical, name), name)
    np.testing.assert_array_equal(back, canonical)
    assert set(conv.from_canonical.values()) <= set(conv.labels)


@pytest.mark.parametrize(
    ("name", "source", "canonical"),
    [
        ("brats2021", [0, 1, 2, 4], [0, 1, 2, 3]),
        ("brats2023", [0, 1, 2, 3], [0, 1, 2, 3]),
        ("msd", [0, 1, 2, 3], [0, 2, 1, 3]),
        ("brats2015", [0, 1, 2, 3, 4], [0, 1, 2, 1, 3]),
    ],
)
def test_dataset_labels_map_to_canonical(name, source, canonical):
    out = C.to_canonical(np.array(source), name)
    assert out.tolist() == canonical and out.dtype == np.uint8


def test_unexpected_label_names_the_file():
    with pytest.raises(C.LabelError, match=r"case7_seg.nii.gz.*\[3\].*brats2021"):
        C.to_canonical(np.array([0, 1, 3]), "brats2021", where="case7_seg.nii.gz")
    with pytest.raises(C.LabelError, match="integers"):
        C.to_canonical(np.array([0.0, 1.5]), "brats2023")
    with pytest.raises(ValueError, match="unknown label convention 'brats1999'"):
        C.to_canonical(np.array([0]), "brats1999")


def test_regions_nest():
    label = np.array([0, 1, 2, 3])
    r = C.region_masks(label)
    assert r["WT"].tolist() == [False, True, True, True]
    assert r["TC"].tolist() == [False, True, False, True]
    assert r["ET"].tolist() == [False, False, False, True]
    assert np.all(r["ET"] <= r["TC"]) and np.all(r["TC"] <= r["WT"])


def test_subset_names():
    assert C.subset_name((True, False, True, False)) == "FLAIR+T1c"
    assert C.subset_dots((True, False, True, False)) == "●○●○"
    with pytest.raises(ValueError, match="no modality"):
        C.subset_name((False,) * 4)
    with pytest.raises(ValueError, match="4 entries"):
        C.subset_name((True,))
