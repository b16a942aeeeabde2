"""Training and inference when cases lack modalities: the real BraTS 2015 sample (FLAIR + T1c only), a
mixed collection of it with the four-modality phantom, and the guarantees of the training step.

The sample is read in place (``../shared/data/brats2015-sample`` or ``MMDIS_BRATS2015_SAMPLE``); its
tests are skipped with a reason when it is absent. Licence: CC BY-NC-SA 3.0 (Menze et al., IEEE TMI 2015;
modified by the DeepMedic project).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from mmdis.cli import main
from mmdis.data.cache import Cache
from mmdis.data.phantom import PhantomConfig, write_phantom
from mmdis.losses import LossConfig
from mmdis.models import build_model
from mmdis.training.loop import train_step

# The sample lies in the shared folder beside the repository; a clone elsewhere finds it at its usual place.
_CANDIDATES = [Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2015-sample",
               Path("/work/shared/data/brats2015-sample")]
SAMPLE = Path(os.environ.get("MMDIS_BRATS2015_SAMPLE")
              or next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0]))
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"the BraTS 2015 sample is absent: {SAMPLE}")
FAST = ["--set", "epochs=1", "--set", "iters_per_epoch=3"]


def test_a_training_step_never_uses_an_absent_modality():
    """Gradients never reach the content encoder of a modality the case lacks, and its image is unused."""
    torch.manual_seed(0)
    model = build_model("robustseg", base_channels=4, appearance_channels=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.randn(1, 4, 16, 16, 16)
    batch = {"image": x, "label": torch.randint(0, 4, (1, 16, 16, 16)),
             "mask": torch.ones(1, 16, 16, 16, dtype=torch.bool),
             "available": torch.tensor([[True, False, True, False]])}
    for _ in range(5):  # several draws of the modality dropout
        optimizer.zero_grad()
        losses = train_step(model, batch, optimizer, LossConfig(), torch.device("cpu"))
        assert np.isfinite(losses["total"])
        for i in (1, 3):  # T1 and T2 are absent
            grads = [p.grad for p in model.encoders[i].parameters() if p.grad is not None]
            assert all(float(g.abs().max()) == 0.0 for g in grads)
            grads = [p.grad for p in model.appearance_encoders[i].parameters() if p.grad is not None]
            assert all(float(g.abs().max()) == 0.0 for g in grads)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The sample prepared at 3 mm (3 train, 1 test) and a RobustSeg smoke run on its three train cases."""
    if not SAMPLE.is_dir():
        pytest.skip(f"the BraTS 2015 sample is absent: {SAMPLE}")
    root = tmp_path_factory.mktemp("real")
    cache, run = root / "cache", root / "run"
    assert main(["--quiet", "prepare", str(SAMPLE), str(cache), "--spacing", "3", "--allow-missing",
                 "--split", "0.75", "0", "0.25"]) == 0
    assert main(["--quiet", "train", "--profile", "smoke", "--method", "robustseg", "--data", str(cache),
                 "--run-dir", str(run), *FAST]) == 0
    return {"root": root, "cache": cache, "run": run}


@needs_sample
@pytest.mark.realdata
def test_training_on_three_real_cases_with_two_modalities(real):
    cache = Cache.open(real["cache"])
    assert len(cache.case_ids("train")) == 3 and len(cache.case_ids("test")) == 1
    assert all(e["available"] == [True, False, True, False] for e in cache.manifest["cases"])
    metrics = pd.read_csv(real["run"] / "metrics.csv")
    assert len(metrics) == 3 and np.isfinite(metrics["total"]).all()


@needs_sample
@pytest.mark.realdata
@pytest.mark.parametrize("modalities", [("flair",), ("flair", "t1ce")])
def test_predict_the_fourth_case_on_its_native_grid(real, tmp_path, modalities):
    case_id = Cache.open(real["cache"]).case_ids("test")[0]
    folder = SAMPLE / case_id
    files = {"flair": folder / "Flair_subtrMeanDivStd.nii.gz", "t1ce": folder / "T1c_subtrMeanDivStd.nii.gz"}
    out = tmp_path / f"{case_id}.nii.gz"
    args = [x for m in modalities for x in (f"--{m}", str(files[m]))]
    assert main(["--quiet", "predict", "--model", str(real["run"]), *args, "--mask",
                 str(folder / "brainmask.nii.gz"), "--zscored", "--convention", "brats2015",
                 "-o", str(out)]) == 0
    ref, seg = nib.load(str(files["flair"])), nib.load(str(out))
    assert seg.shape == ref.shape == (240, 240, 155)
    np.testing.assert_allclose(seg.affine, ref.affine)
    values = set(np.unique(np.asarray(seg.dataobj)).tolist())
    assert values <= {0, 1, 2, 4}  # canonical core is written as BraTS 2015 label 1; 3 is never produced
    mask = np.asarray(nib.load(str(folder / "brainmask.nii.gz")).dataobj) > 0
    assert not np.asarray(seg.dataobj)[~mask].any()  # nothing outside the brain


@needs_sample
@pytest.mark.realdata
def test_evaluation_reports_only_the_subsets_the_cases_can_form(real, tmp_path):
    out = tmp_path / "results"
    argv = ["--quiet", "evaluate", str(real["run"]), "--data", str(real["cache"]), "--out", str(out)]
    assert main(argv) == 0
    df = pd.read_csv(out / "results.csv", dtype={"case": str})
    assert set(df["subset"]) == {"FLAIR", "T1c", "FLAIR+T1c"}
    skipped = json.loads((out / "skipped.json").read_text())
    (case_id,) = skipped
    assert len(skipped[case_id]) == 12 and "T1" in skipped[case_id]
    rec = df[df["metric"] == "psnr"]
    assert set(rec["region"]) == {"FLAIR", "T1c"}  # no reconstruction target for T1 or T2
    table = pd.read_csv(out / "table2_dice.csv", index_col=0)
    assert list(table.index) == ["T1c", "FLAIR", "FLAIR+T1c", "Average"]


@needs_sample
@pytest.mark.realdata
def test_mixed_collection_of_phantom_and_real_cases_trains_in_one_run(tmp_path):
    write_phantom(tmp_path / "phantom", PhantomConfig(cases=3, spacing=4.0), progress=False)
    cache = tmp_path / "mixed"
    assert main(["--quiet", "prepare", str(tmp_path / "phantom"), str(SAMPLE), str(cache), "--spacing", "4",
                 "--allow-missing"]) == 0
    manifest = Cache.open(cache).manifest
    assert manifest["layout"] == ["brats2021", "authors"]
    subsets = {tuple(e["available"]) for e in manifest["cases"]}
    assert subsets == {(True, True, True, True), (True, False, True, False)}
    run = tmp_path / "run"
    assert main(["--quiet", "train", "--profile", "smoke", "--method", "robustseg", "--data", str(cache),
                 "--run-dir", str(run), "--set", "epochs=1", "--set", "iters_per_epoch=4"]) == 0
    assert len(pd.read_csv(run / "metrics.csv")) == 4


def test_two_folders_with_the_same_case_id_are_refused(tmp_path, capsys):
    for name in ("a", "b"):
        write_phantom(tmp_path / name, PhantomConfig(cases=1, spacing=4.0), progress=False)
    assert main(["prepare", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "cache")]) == 2
    assert "occurs in both" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "manifest.json").exists()
