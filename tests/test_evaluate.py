"""Training, evaluation, prediction and reproduction through the command line, at the smoke profile."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mmdis.cli import main
from mmdis.conventions import SUBSETS, subset_name
from mmdis.data.cache import Cache, PrepareConfig, prepare
from mmdis.data.phantom import PhantomConfig, write_phantom
from mmdis.evaluation.evaluate import EvalConfig, evaluate_run, load_run
from mmdis.evaluation.tidy import read_results
from mmdis.pipeline import reproduce

FAST = ["--set", "epochs=1", "--set", "iters_per_epoch=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny phantom (6 cases at 4 mm), its cache, and two trained smoke runs."""
    root = tmp_path_factory.mktemp("eval")
    write_phantom(root / "raw", PhantomConfig(cases=6, spacing=4.0), progress=False)
    prepare(root / "raw", root / "cache", PrepareConfig(fractions=(0.5, 0.17, 0.33)), progress=False)
    runs = {}
    for method in ("robustseg", "hemis"):
        runs[method] = root / "runs" / method
        assert main(["--quiet", "train", "--profile", "smoke", "--method", method, "--data",
                     str(root / "cache"), "--run-dir", str(runs[method]), *FAST]) == 0
    return {"root": root, "raw": root / "raw", "cache": root / "cache", "runs": runs}


def test_train_writes_a_complete_run_directory(data):
    run = data["runs"]["robustseg"]
    for name in ("config.json", "env.json", "data.json", "metrics.csv", "last.pt"):
        assert (run / name).is_file(), name
    model, config, meta = load_run(run)
    assert config.method == "robustseg" and config.profile == "smoke" and meta["step"] == 2
    assert json.loads((run / "data.json").read_text())["preprocessing"]["spacing"] is None


def test_train_again_without_resume_is_refused(data, capsys):
    run = data["runs"]["hemis"]
    code = main(["train", "--profile", "smoke", "--method", "hemis", "--data", str(data["cache"]),
                 "--run-dir", str(run), *FAST])
    assert code == 2 and "--resume" in capsys.readouterr().err


def test_resume_of_a_finished_run_does_nothing(data, capsys):
    run = data["runs"]["hemis"]
    before = (run / "last.pt").stat().st_mtime_ns
    assert main(["train", "--profile", "smoke", "--method", "hemis", "--data", str(data["cache"]),
                 "--run-dir", str(run), "--resume", *FAST]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (run / "last.pt").stat().st_mtime_ns == before


def test_a_checkpoint_of_another_method_is_refused(data, capsys):
    code = main(["train", "--profile", "smoke", "--method", "hemis", "--data", str(data["cache"]),
                 "--run-dir", str(data["runs"]["robustseg"]), "--resume", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "robustseg" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--profile", "huge", "--data", "x", "--run-dir", "y"], "huge"),
        (["train", "--method", "unet", "--data", "x", "--run-dir", "y"], "unet"),
        (["train", "--data", "/no/such/folder", "--run-dir", "RUN"], "/no/such/folder"),
        (["train", "--data", "CACHE", "--run-dir", "RUN", "--set", "epochs"], "KEY=VALUE"),
        (["train", "--data", "CACHE", "--run-dir", "RUN", "--set", "nonsense=1"], "nonsense"),
        (["evaluate", "/no/run", "--data", "CACHE", "--out", "OUT"], "/no/run"),
    ],
)
def test_bad_cli_input_exits_non_zero_with_a_message(data, tmp_path, capsys, argv, needle):
    argv = [a.replace("CACHE", str(data["cache"])).replace("RUN", str(tmp_path / "run"))
            .replace("OUT", str(tmp_path / "out")) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects a bad choice itself
        code = exc.code
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_evaluate_writes_every_subset_region_and_metric(data, tmp_path):
    out = tmp_path / "results"
    runs = [str(data["runs"]["robustseg"]), str(data["runs"]["hemis"])]
    assert main(["--quiet", "evaluate", *runs, "--data", str(data["cache"]), "--out", str(out)]) == 0
    df = read_results(out / "results.csv")
    test_ids = Cache.open(data["cache"]).case_ids("test")
    seg = df[df["metric"].isin(["dice", "sensitivity", "precision", "hd95"])]
    for method in ("robustseg", "hemis"):
        for case in test_ids:
            rows = seg[(seg["method"] == method) & (seg["case"] == case)]
            assert len(rows) == 15 * 3 * 4
            assert set(rows["subset"]) == {subset_name(s) for s in SUBSETS}
            assert set(rows["region"]) == {"WT", "TC", "ET"}
    rec = df[df["metric"].isin(["psnr", "ssim"])]
    assert set(rec["method"]) == {"robustseg"}  # HeMIS does not reconstruct
    assert len(rec) == len(test_ids) * 15 * 4 * 2
    table = pd.read_csv(out / "table2_dice.csv", index_col=0)
    assert len(table) == 16 and table.index[-1] == "Average"
    assert {"robustseg WT", "hemis ET"} <= set(table.columns)
    assert (out / "table2_dice.md").read_text().count("●") > 0
    wilcoxon = pd.read_csv(out / "wilcoxon.csv")
    assert set(wilcoxon["method"]) == {"hemis"} and set(wilcoxon["region"]) == {"WT", "TC", "ET"}
    for figure in ("table2_dice.png", "average_dice.png", "training.png"):
        assert (out / "figures" / figure).stat().st_size > 0
    assert json.loads((out / "skipped.json").read_text()) == {}


def test_evaluation_rows_are_cached_per_run(data):
    run = data["runs"]["hemis"]
    first = evaluate_run(run, data["cache"], EvalConfig(), progress=False)
    files = list((run / "evaluation").glob("test-*.csv"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = evaluate_run(run, data["cache"], EvalConfig(), progress=False)
    assert files[0].stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first.reset_index(drop=True), again.reset_index(drop=True))


def _case_files(raw, case_id):
    folder = raw / case_id
    return {m: folder / f"{case_id}_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2")}


@pytest.mark.parametrize("modalities", [("flair",), ("flair", "t1ce"), ("flair", "t1", "t1ce", "t2")])
def test_predict_returns_labels_on_the_input_grid(data, tmp_path, modalities):
    case_id = Cache.open(data["cache"]).case_ids("test")[0]
    files = _case_files(data["raw"], case_id)
    out = tmp_path / "seg.nii.gz"
    args = [x for m in modalities for x in (f"--{m}", str(files[m]))]
    assert main(["--quiet", "predict", "--model", str(data["runs"]["robustseg"]), *args, "-o", str(out)]) == 0
    ref, seg = nib.load(str(files["flair"])), nib.load(str(out))
    assert seg.shape == ref.shape
    np.testing.assert_allclose(seg.affine, ref.affine)
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 4}  # BraTS 2021 numbering


def test_predict_bad_input_writes_nothing(data, tmp_path, capsys):
    case_id = Cache.open(data["cache"]).case_ids("test")[0]
    files = _case_files(data["raw"], case_id)
    out = tmp_path / "seg.nii.gz"
    run = str(data["runs"]["robustseg"])
    assert main(["predict", "--model", run, "-o", str(out)]) == 2
    assert "at least one modality" in capsys.readouterr().err
    other = _case_files(data["raw"], Cache.open(data["cache"]).case_ids("train")[0])["t2"]
    img = nib.load(str(other))
    shifted = tmp_path / "t2_shifted.nii.gz"
    affine = img.affine.copy()
    affine[0, 3] += 7.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(shifted))
    assert main(["predict", "--model", run, "--flair", str(files["flair"]), "--t2", str(shifted),
                 "-o", str(out)]) == 2
    assert "affine" in capsys.readouterr().err
    assert main(["predict", "--model", run, "--flair", str(tmp_path / "nope.nii.gz"), "-o", str(out)]) == 2
    assert "nope.nii.gz" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*seg*"))


def test_reproduce_trains_evaluates_and_then_reuses_everything(data, tmp_path):
    kwargs = dict(work_dir=tmp_path / "work", results_dir=tmp_path / "results", data=data["cache"],
                  methods=("robustseg", "imputation"), overrides={"epochs": 1, "iters_per_epoch": 1},
                  progress=False)
    summary = reproduce("smoke", **kwargs)
    assert summary["methods"] == ["robustseg", "imputation"]
    assert {"robustseg WT", "imputation ET"} <= set(summary["average_dice"])
    assert (tmp_path / "results" / "figures" / "table2_dice.png").is_file()
    runs = sorted((tmp_path / "work" / "runs").iterdir())
    stamps = [(r / "last.pt").stat().st_mtime_ns for r in runs]
    assert reproduce("smoke", **kwargs)["average_dice"] == summary["average_dice"]
    assert [(r / "last.pt").stat().st_mtime_ns for r in runs] == stamps


def test_reproduce_rejects_unknown_profile_and_method(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        reproduce("huge", work_dir=tmp_path)
    with pytest.raises(ValueError, match="unet"):
        reproduce("smoke", work_dir=tmp_path, methods=("unet",))
