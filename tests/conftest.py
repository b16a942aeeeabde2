"""Writers of tiny cases in every dataset layout, shared by the tests.

Import the helpers (``from conftest import write_brats2021_case``) or use the fixtures. Every writer draws
its volumes from :func:`tiny_volumes`, so a test can compare what a reader returns with what was written:
modality ``i`` of :data:`~mmdis.conventions.MODALITIES` is scaled by ``i + 1`` (so a swapped modality
shows), and the label holds every canonical class.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mmdis.conventions import MODALITIES, from_canonical

SHAPE = (12, 14, 10)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])
#: Default case id of each layout, spelled as the real datasets spell them.
CASE_IDS = {"brats2021": "BraTS2021_00000", "brats2023": "BraTS-GLI-00000-000", "msd": "BRATS_001",
            "brats2015": "brats_tcia_pat001_1", "authors": "brats_2013_pat0001_1"}
_NIFTI_NAMES = {"brats2021": ("_", {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2"}),
                "brats2023": ("-", {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"})}
_MHA_NAMES = dict(zip(MODALITIES, ("Flair", "T1", "T1c", "T2")))


def tiny_volumes(shape=SHAPE, seed=0):
    """Four modality volumes and a canonical label.

    Returns:
        ``(images, label)``: modality -> ``float32 (X, Y, Z)`` (a brain block, zero background, modality
        ``i`` in ``[50, 150) * (i + 1)``) and a ``uint8 (X, Y, Z)`` label holding classes 0, 1, 2 and 3.
    """
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


def save_nii(arr, path, affine=AFFINE) -> Path:
    """Write ``arr`` as NIfTI (format from the suffix), creating folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(arr), affine), str(path))
    return path


def save_mha(arr, path, affine=AFFINE) -> Path:
    """Write ``arr`` (x, y, z) as MetaImage; ``affine`` is RAS, as :func:`mmdis.data.io.load_mha` returns."""
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is needed for BraTS 2015 .mha files")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, float)  # ITK speaks LPS
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(arr).transpose(2, 1, 0)))  # ITK: (z, y, x)
    img.SetSpacing(spacing.tolist())
    img.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    sitk.WriteImage(img, str(path))
    return path


def rewrite_volume(path, fn) -> Path:
    """Replace a ``.nii[.gz]`` or ``.mha`` volume by ``fn(data, affine) -> (data, affine)``."""
    path = Path(path)
    if path.suffix == ".mha":
        sitk = pytest.importorskip("SimpleITK")
        from mmdis.data.io import load_mha

        dtype = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).dtype
        data, affine = load_mha(path, "test", "volume")
        data, affine = fn(data.astype(dtype), affine.copy())
        return save_mha(data, path, affine)
    img = nib.load(path)
    data, affine = fn(np.asarray(img.dataobj), img.affine.copy())
    return save_nii(data, path, affine)


def write_brats_case(root, case_id="case0", layout="brats2021", modalities=MODALITIES, labelled=True,
                     shape=SHAPE, seed=0, label=None, affine=AFFINE, ext=".nii.gz") -> Path:
    """A case in the BraTS 2018-2021 (``<case>_flair``) or 2023 (``<case>-t2f``) layout.

    Args:
        root: dataset folder; the case goes to ``root/case_id``.
        modalities: which modality files to write (others are missing).
        labelled: write the ``seg`` file.
        label: canonical label to write instead of the default one (mapped to the layout's numbering).

    Returns:
        The case folder.
    """
    sep, names = _NIFTI_NAMES[layout]
    images, default_label = tiny_volumes(shape, seed)
    d = Path(root) / case_id
    d.mkdir(parents=True, exist_ok=True)
    for m in modalities:
        save_nii(images[m], d / f"{case_id}{sep}{names[m]}{ext}", affine)
    if labelled:
        save_nii(from_canonical(default_label if label is None else label, layout),
                 d / f"{case_id}{sep}seg{ext}", affine)
    return d


def write_brats2021_case(root, case_id=CASE_IDS["brats2021"], **kw) -> Path:
    """A BraTS 2018-2021 case (labels 0, 1, 2, 4); see :func:`write_brats_case`."""
    return write_brats_case(root, case_id, layout="brats2021", **kw)


def write_brats2023_case(root, case_id=CASE_IDS["brats2023"], **kw) -> Path:
    """A BraTS 2023 GLI case (``t2f, t1n, t1c, t2w``, labels 0-3); see :func:`write_brats_case`."""
    return write_brats_case(root, case_id, layout="brats2023", **kw)


def write_msd_case(root, case_id=CASE_IDS["msd"], labelled=True, shape=SHAPE, seed=0, channels=4,
                   label=None, affine=AFFINE, ext=".nii.gz") -> Path:
    """An MSD Task01 case: ``imagesTr/<case>`` 4-D (X, Y, Z, channels) and ``labelsTr/<case>``.

    An unlabelled case goes to ``imagesTs``. ``channels`` other than 4 makes a broken file. Returns
    ``root``.
    """
    images, default_label = tiny_volumes(shape, seed)
    stack = np.stack([images[m] for m in MODALITIES][:channels], axis=-1)  # (X, Y, Z, channels)
    root = Path(root)
    save_nii(stack, root / ("imagesTr" if labelled else "imagesTs") / f"{case_id}{ext}", affine)
    if labelled:
        save_nii(from_canonical(default_label if label is None else label, "msd"),
                 root / "labelsTr" / f"{case_id}{ext}", affine)
    return root


def write_brats2015_case(root, case_id=CASE_IDS["brats2015"], labelled=True, shape=SHAPE, seed=0,
                         grade="HGG", modalities=MODALITIES, label=None, affine=AFFINE) -> Path:
    """A BraTS 2015 case of ``.mha`` files in ``VSD.Brain.XX.O.MR_<mod>.<id>`` folders (labels 0-4).

    ``grade=None`` puts the case folder directly under ``root``. Images are int16, as in the dataset.
    Skips the calling test when SimpleITK is missing. Returns the case folder.
    """
    images, default_label = tiny_volumes(shape, seed)
    d = Path(root) / case_id if grade is None else Path(root) / grade / case_id
    d.mkdir(parents=True, exist_ok=True)
    for k, m in enumerate(MODALITIES):
        if m in modalities:
            folder = f"VSD.Brain.XX.O.MR_{_MHA_NAMES[m]}.{100 + k}"
            save_mha(images[m].astype(np.int16), d / folder / f"{folder}.mha", affine)
    if labelled:
        folder = "VSD.Brain_3more.XX.O.OT.200"
        raw = from_canonical(default_label if label is None else label, "brats2015")
        save_mha(raw.astype(np.uint8), d / folder / f"{folder}.mha", affine)
    return d


def write_authors_case(root, case_id=CASE_IDS["authors"], modalities=MODALITIES, labelled=True, shape=SHAPE,
                       seed=0, label=None, affine=AFFINE, brain_mask=True, zscored=False, group=None,
                       ext=".nii.gz") -> Path:
    """A case in the authors' layout: ``<Mod>_subtrMeanDivStd``, ``brainmask``, ``OTMultiClass`` (0-4).

    Args:
        root: dataset folder; the case goes to ``root/[group/]case_id``.
        modalities: which modality files to write (the real sample has ``("flair", "t1ce")``).
        labelled: write ``OTMultiClass``.
        brain_mask: write ``brainmask`` (the brain block of :func:`tiny_volumes`, as uint8 0/1).
        zscored: write the images as the real files are: z-scored within the mask, the background filled
            with the volume's minimum. Otherwise the :func:`tiny_volumes` values are written unchanged
            (zero background), so a reader can be compared with them.

    Returns:
        The case folder.
    """
    images, default_label = tiny_volumes(shape, seed)
    mask = images["flair"] != 0  # tiny_volumes' brain block
    d = Path(root) / case_id if group is None else Path(root) / group / case_id
    d.mkdir(parents=True, exist_ok=True)
    for m in modalities:
        vol = images[m]
        if zscored:
            inside = (vol[mask] - vol[mask].mean()) / vol[mask].std()
            vol = np.full(shape, inside.min(), np.float32)
            vol[mask] = inside
        save_nii(vol.astype(np.float32), d / f"{_MHA_NAMES[m]}_subtrMeanDivStd{ext}", affine)
    if brain_mask:
        save_nii(mask.astype(np.uint8), d / f"brainmask{ext}", affine)
    if labelled:
        raw = from_canonical(default_label if label is None else label, "brats2015")
        save_nii(raw.astype(np.float32), d / f"OTMultiClass{ext}", affine)  # float, as in the sample
    return d


#: layout -> writer(root, case_id=..., labelled=..., seed=..., ...).
WRITERS = {
    "brats2021": write_brats2021_case,
    "brats2023": write_brats2023_case,
    "msd": write_msd_case,
    "brats2015": write_brats2015_case,
    "authors": write_authors_case,
}


@pytest.fixture
def make_dataset(tmp_path):
    """``make_dataset(layout, n=2, **kw) -> root``: a fresh folder of ``n`` tiny cases in ``layout``.

    Case ids are the layout's default id with the last digit replaced (``..._0``, ``..._1``, ...), seeds
    are the case index; ``kw`` goes to every writer.
    """
    counter = iter(range(1000))

    def make(layout, n=2, **kw):
        root = tmp_path / f"{layout}-{next(counter)}"
        root.mkdir()
        for i in range(n):
            WRITERS[layout](root, case_id=f"{CASE_IDS[layout][:-1]}{i}", seed=i, **kw)
        return root

    return make


@pytest.fixture(scope="module")
def phantom_cache(tmp_path_factory):
    """A tiny prepared phantom cache: 4 cases at 4 mm (2 train, 1 val, 1 test)."""
    from mmdis.data.cache import PrepareConfig, prepare
    from mmdis.data.phantom import PhantomConfig, write_phantom

    root = tmp_path_factory.mktemp("phantom")
    write_phantom(root / "raw", PhantomConfig(cases=4, spacing=4.0), progress=False)
    prepare(root / "raw", root / "cache", PrepareConfig(), progress=False)
    return root / "cache"


def shared_sample(name: str, variable: str, what: str) -> Path:
    """The folder of a real sample, read where it lies, or skip the calling test module.

    The sample is ``$variable`` if set, else ``../shared/data/<name>`` beside the repository, else the same
    at its usual place ``/work/shared/data/<name>`` (for a clone elsewhere). Call it at module level.
    """
    import os

    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / name,
                  Path("/work/shared/data") / name]
    sample = Path(os.environ.get(variable) or next((p for p in candidates if p.is_dir()), candidates[0]))
    if not sample.is_dir():
        pytest.skip(f"the {what} sample is absent: {sample} is not a folder (set {variable} to its location "
                    "to run these tests)", allow_module_level=True)
    return sample


#: The overrides that make a smoke run take two steps.
SMOKE_FAST = ["--set", "epochs=1", "--set", "iters_per_epoch=2"]


def make_smoke_world(root: Path) -> Path:
    """A 4-case phantom at 4 mm in ``root/raw``, its cache in ``root/cache`` (2 train, 1 val, 1 test) and
    one finished two-step smoke run of RobustSeg in ``root/run``; returns ``root``."""
    from mmdis.cli import main
    from mmdis.data.cache import PrepareConfig, prepare
    from mmdis.data.phantom import PhantomConfig, write_phantom

    write_phantom(root / "raw", PhantomConfig(cases=4, spacing=4.0), progress=False)
    prepare(root / "raw", root / "cache", PrepareConfig(fractions=(0.5, 0.25, 0.25)), progress=False)
    assert main(["--quiet", "train", "--profile", "smoke", "--data", str(root / "cache"), "--run-dir",
                 str(root / "run"), *SMOKE_FAST]) == 0
    return root
