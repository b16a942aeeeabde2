"""Writers of tiny cases in every dataset layout, shared by the tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mmdis.conventions import MODALITIES, from_canonical

SHAPE = (12, 14, 10)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def tiny_volumes(shape=SHAPE, seed=0):
    """Four modality volumes (brain block, zero background) and a canonical label with all classes."""
    rng = np.random.default_rng(seed)
    brain = np.zeros(shape, bool)
    brain[2:-2, 2:-2, 1:-1] = True
    images = {m: (rng.uniform(50, 150, shape) * (i + 1) * brain).astype(np.float32)
              for i, m in enumerate(MODALITIES)}
    label = np.zeros(shape, np.uint8)
    label[4:8, 5:9, 3:7] = 2
    label[5:7, 6:8, 4:6] = 3
    label[5, 6, 4] = 1
    return images, label


def _save(arr, path: Path, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def write_brats_case(root, case_id="case0", layout="brats2021", modalities=MODALITIES, labelled=True,
                     shape=SHAPE, seed=0):
    """A case in the BraTS 2018-2021 (``_flair``) or 2023 (``-t2f``) layout; returns its folder."""
    suffix = {"brats2021": ("_", {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2"}, "brats2021"),
              "brats2023": ("-", {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}, "brats2023")}
    sep, names, conv = suffix[layout]
    images, label = tiny_volumes(shape, seed)
    d = Path(root) / case_id
    for m in modalities:
        _save(images[m], d / f"{case_id}{sep}{names[m]}.nii.gz")
    if labelled:
        _save(from_canonical(label, conv), d / f"{case_id}{sep}seg.nii.gz")
    return d


def write_msd_case(root, case_id="BRATS_001", labelled=True, shape=SHAPE, seed=0, channels=4):
    images, label = tiny_volumes(shape, seed)
    stack = np.stack([images[m] for m in MODALITIES][:channels], axis=-1)  # (X, Y, Z, 4)
    root = Path(root)
    _save(stack, root / ("imagesTr" if labelled else "imagesTs") / f"{case_id}.nii.gz")
    if labelled:
        _save(from_canonical(label, "msd"), root / "labelsTr" / f"{case_id}.nii.gz")
    return root


def write_brats2015_case(root, case_id="brats_tcia_pat001_1", labelled=True, shape=SHAPE, seed=0,
                         grade="HGG", modalities=MODALITIES):
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is needed for BraTS 2015 .mha files")
    images, label = tiny_volumes(shape, seed)
    d = Path(root) / grade / case_id
    names = dict(zip(MODALITIES, ("Flair", "T1", "T1c", "T2")))

    def save(arr, folder):
        (d / folder).mkdir(parents=True, exist_ok=True)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))  # (z, y, x) for ITK
        sitk.WriteImage(img, str(d / folder / f"{folder}.mha"))

    for k, m in enumerate(modalities):
        save(images[m].astype(np.int16), f"VSD.Brain.XX.O.MR_{names[m]}.{100 + k}")
    if labelled:
        save(from_canonical(label, "brats2015").astype(np.uint8), "VSD.Brain_3more.XX.O.OT.200")
    return d


WRITERS = {
    "brats2021": lambda root, **kw: write_brats_case(root, layout="brats2021", **kw),
    "brats2023": lambda root, **kw: write_brats_case(root, layout="brats2023", **kw),
    "msd": write_msd_case,
    "brats2015": write_brats2015_case,
}
