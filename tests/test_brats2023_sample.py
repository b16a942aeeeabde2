"""The real BraTS 2023 sample: one adult-glioma case with all four sequences and its reference labels.

The files are read where they lie (``../shared/data/brats2023-sample`` next to the repository, or the folder
named by ``MMDIS_BRATS2023_SAMPLE``) and never copied into the repository (BraTS 2023 challenge data as
redistributed by the BraSyn organisers; see the folder's README). Without them every test here is skipped.
The network tests use the shipped ``cpu`` RobustSeg, trained on the phantom: they check the pipeline on
real files, not the model's accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_sample

from mmdis.conventions import MODALITIES, SUBSETS, region_masks, subset_name
from mmdis.data.layouts import detect_layout, discover_cases, read_case
from mmdis.evaluation.predict import predict_files
from mmdis.evaluation.single_case import score_case
from mmdis.metrics import ET_PP, MetricConfig
from mmdis.profiles import get_profile
from mmdis.training.export import materialise

SAMPLE = shared_sample("brats2023-sample", "MMDIS_BRATS2023_SAMPLE", "BraTS 2023")

pytestmark = pytest.mark.realdata
CASE_ID = "BraTS-GLI-00000-000"
SHAPE = (240, 240, 155)
#: The file's names of the four sequences.
FILE_NAMES = dict(zip(MODALITIES, ("t2f", "t1n", "t1c", "t2w")))


@pytest.fixture(scope="module")
def raw():
    return read_case(discover_cases(SAMPLE)[0])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return materialise("cpu", "robustseg", tmp_path_factory.mktemp("book") / "robustseg")


def test_reader_gives_four_sequences_and_the_region_volumes(raw):
    assert detect_layout(SAMPLE) == "brats2023"
    files = discover_cases(SAMPLE)
    assert [f.case_id for f in files] == [CASE_ID] and files[0].label_convention == "brats2023"
    assert raw.available == (True, True, True, True) and raw.shape == SHAPE
    assert raw.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert set(np.unique(raw.label).tolist()) == {0, 1, 2, 3}
    volumes = {name: int(mask.sum()) for name, mask in region_masks(raw.label).items()}
    assert volumes == {"WT": 57305, "TC": 44469, "ET": 32731}
    # the file's own numbering is the 2023 one: 1 NCR, 2 SNFH, 3 ET (voxel counts of its README)
    file_labels = np.asarray(nib.load(files[0].label).dataobj)
    assert {v: int((file_labels == v).sum()) for v in (1, 2, 3)} == {1: 11738, 2: 12836, 3: 32731}


@pytest.mark.slow
def test_fifteen_subsets_scored_on_the_native_grid(run_dir):
    """One shared encoding per window for all 15 subsets at the run's 3 mm, scored at 1 mm on 240x240x155."""
    result = score_case(run_dir, SAMPLE, MetricConfig(et_postprocess=True), device="cpu")
    assert result.shape == SHAPE and result.spacing == get_profile("cpu").spacing
    rows = result.rows
    assert list(dict.fromkeys(rows["subset"])) == [subset_name(s) for s in SUBSETS]
    assert len(rows) == 15 * 4 * 4  # subsets x (WT, TC, ET, ET-pp) x metrics
    dice = rows[rows["metric"] == "dice"]
    assert dice["value"].between(0, 1).all() and np.isfinite(rows["value"]).all()
    # the shipped phantom model finds part of the real tumour from FLAIR, which shows it best
    flair_wt = dice[(dice["subset"] == "FLAIR") & (dice["region"] == "WT")]["value"].item()
    assert flair_wt > 0.3
    # ET-pp differs from ET only where a subset predicts fewer than 500 ET voxels
    et = dice[dice["region"] == "ET"].set_index("subset")["value"]
    et_pp = dice[dice["region"] == ET_PP].set_index("subset")["value"]
    assert ((et_pp == et) | (et_pp == 0.0)).all()


def _cropped_copy(raw, folder: Path) -> tuple[Path, np.ndarray, tuple[int, ...]]:
    # The four sequences cut to a 112 x 112 x 80 box around the tumour, the affine moved with the box,
    # so that 15 predictions stay cheap while keeping a real, non-trivial affine.
    centre = np.argwhere(raw.label > 0).mean(0).round().astype(int)
    size = np.array([112, 112, 80])
    start = np.clip(centre - size // 2, 0, np.array(SHAPE) - size)
    box = tuple(slice(int(a), int(a + n)) for a, n in zip(start, size))
    affine = raw.affine.copy()
    affine[:3, 3] = raw.affine[:3, :3] @ start + raw.affine[:3, 3]
    folder.mkdir(parents=True, exist_ok=True)
    for modality, name in FILE_NAMES.items():
        nib.save(nib.Nifti1Image(raw.images[modality][box], affine), str(folder / f"{CASE_ID}-{name}.nii.gz"))
    return folder, affine, tuple(int(n) for n in size)


@pytest.mark.slow
def test_predict_writes_every_subset_on_the_input_grid_and_affine(raw, run_dir, tmp_path):
    """``mmdis predict`` from each of the 15 subsets of the four real sequences (a cropped copy)."""
    folder, affine, shape = _cropped_copy(raw, tmp_path / "case")
    # A trained run records its cache's spacing in data.json; a shipped model does not, so the profile's
    # is written here, or predict would run the 3 mm network on the 1 mm grid.
    (run_dir / "data.json").write_text(json.dumps({"preprocessing": {"spacing": get_profile("cpu").spacing}}))
    try:
        for subset in SUBSETS:
            used = [m for m, a in zip(MODALITIES, subset) if a]
            inputs = {m: folder / f"{CASE_ID}-{FILE_NAMES[m]}.nii.gz" for m in used}
            out = tmp_path / "out" / f"{subset_name(subset)}.nii.gz"
            info = predict_files(run_dir, inputs, out, convention="brats2023", device="cpu")
            img = nib.load(out)
            assert img.shape == shape and np.allclose(img.affine, affine), subset_name(subset)
            assert info["modalities"] == used
            assert set(np.unique(np.asarray(img.dataobj)).tolist()) <= {0, 1, 2, 3}
    finally:
        (run_dir / "data.json").unlink()
