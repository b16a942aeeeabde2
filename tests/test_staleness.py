"""No silent wrong result: caches, evaluations and predictions come from the data and weights named.

One test per way a result used to be silently wrong: a cached case reused after its source changed, two
datasets sharing a default cache, cached evaluation rows reused after retraining or after the test data
changed, an unfinished run used without a word, a tiny split without a message, an average over fewer
than 15 subsets called a 15-subset average, and a killed predict's temporary left behind.
"""

from __future__ import annotations

import json
import shutil
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import SMOKE_FAST, make_smoke_world, rewrite_volume, write_brats_case

from mmdis.cli import main
from mmdis.data.cache import Cache, PrepareConfig, prepare
from mmdis.evaluation.evaluate import EvalConfig, evaluate_run
from mmdis.pipeline import cache_dir_for

FAST = SMOKE_FAST


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 4-case phantom at 4 mm, its cache and one finished smoke run."""
    return make_smoke_world(tmp_path_factory.mktemp("stale"))


def test_a_changed_source_rebuilds_its_case_and_only_it(tmp_path):
    for i in range(3):
        write_brats_case(tmp_path / "raw", f"case{i}", seed=i)
    prepare(tmp_path / "raw", tmp_path / "cache", progress=False)
    before = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "cases").glob("*/label.npy")}
    label = tmp_path / "raw" / "case1" / "case1_seg.nii.gz"
    rewrite_volume(label, lambda a, aff: (np.where(a == 2, 0, a).astype(a.dtype), aff))  # a fixed label
    prepare(tmp_path / "raw", tmp_path / "cache", progress=False)
    after = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "cases").glob("*/label.npy")}
    assert after["case0"] == before["case0"] and after["case2"] == before["case2"]
    assert after["case1"] != before["case1"]
    fixed = Cache.open(tmp_path / "cache").load("case1")
    assert not np.any(np.asarray(fixed.label) == 2)  # the edema the fix removed is gone from the cache


def test_a_sequence_added_later_is_used(tmp_path):
    write_brats_case(tmp_path / "raw", "case0", modalities=("flair", "t1ce"))
    prepare(tmp_path / "raw", tmp_path / "cache", PrepareConfig(allow_missing=True), progress=False)
    assert Cache.open(tmp_path / "cache").manifest["cases"][0]["modalities"] == ["flair", "t1ce"]
    write_brats_case(tmp_path / "raw", "case0")  # now all four
    prepare(tmp_path / "raw", tmp_path / "cache", PrepareConfig(allow_missing=True), progress=False)
    assert Cache.open(tmp_path / "cache").manifest["cases"][0]["modalities"] == ["flair", "t1", "t1ce", "t2"]


def test_another_dataset_into_the_same_cache_replaces_the_cases(tmp_path):
    write_brats_case(tmp_path / "x" / "BraTS", "case0", seed=0)
    write_brats_case(tmp_path / "y" / "BraTS", "case0", seed=5)
    prepare(tmp_path / "x" / "BraTS", tmp_path / "cache", progress=False)
    first = np.array(Cache.open(tmp_path / "cache").load("case0").image)
    prepare(tmp_path / "y" / "BraTS", tmp_path / "cache", progress=False)
    second = np.array(Cache.open(tmp_path / "cache").load("case0").image)
    assert not np.array_equal(first, second)


def test_two_folders_of_one_name_get_two_default_caches(tmp_path):
    x, y = tmp_path / "x" / "BraTS", tmp_path / "y" / "BraTS"
    assert cache_dir_for(tmp_path, [x], 3.0) != cache_dir_for(tmp_path, [y], 3.0)
    assert cache_dir_for(tmp_path, [x], 3.0) == cache_dir_for(tmp_path, [x], 3.0)
    assert cache_dir_for(tmp_path, [x], 3.0).name.startswith("cache-BraTS-")


def test_retraining_a_run_dir_is_evaluated_again(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    config = EvalConfig(recon_cases=0)
    first = evaluate_run(run, world / "cache", config, progress=False)
    shutil.rmtree(run)
    assert main(["--quiet", "train", "--profile", "smoke", "--data", str(world / "cache"), "--run-dir",
                 str(run), *FAST, "--set", "seed=1"]) == 0
    second = evaluate_run(run, world / "cache", config, progress=False)
    assert len(list((run / "evaluation").glob("*.csv"))) == 1  # not the first run's rows
    assert first.attrs["run_state"]["sha256"] != second.attrs["run_state"]["sha256"]
    assert not np.allclose(first["value"].to_numpy(), second["value"].to_numpy())


def test_a_changed_test_case_is_evaluated_again(world, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(world / "cache", cache)
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    shutil.rmtree(run / "evaluation", ignore_errors=True)  # other tests' rows
    evaluate_run(run, cache, EvalConfig(recon_cases=0), progress=False)
    manifest = json.loads((cache / "manifest.json").read_text())
    test_id = Cache.open(cache).case_ids("test")[0]
    for entry in manifest["cases"]:
        if entry["case_id"] == test_id:
            entry["source_fingerprint"] = "rebuilt-from-a-new-source"
    (cache / "manifest.json").write_text(json.dumps(manifest))
    evaluate_run(run, cache, EvalConfig(recon_cases=0), progress=False)
    assert len(list((run / "evaluation").glob("*.csv"))) == 2


def test_an_unfinished_run_is_named_in_every_output(world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--quiet", "train", "--profile", "smoke", "--data", str(world / "cache"), "--run-dir",
                 str(run), "--set", "iters_per_epoch=1"]) == 0
    config = json.loads((run / "config.json").read_text())
    config["epochs"] = 5  # as if it had stopped after 2 of 5 epochs
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"unfinished: its weights are from epoch 2 of 5"):
        assert main(["--quiet", "evaluate", str(run), "--data", str(world / "cache"), "--out",
                     str(tmp_path / "out")]) == 0
    assert "UNFINISHED" in capsys.readouterr().out
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert runs.loc[0, ["epoch", "step", "epochs"]].tolist() == [2, 2, 5] and not runs.loc[0, "finished"]
    summary = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert summary["run_states"]["robustseg"]["step"] == 2
    case = next(p for p in sorted((world / "raw").iterdir()) if p.is_dir())
    out = tmp_path / "seg.nii.gz"
    with pytest.warns(UserWarning, match="unfinished"):
        assert main(["--quiet", "predict", "--model", str(run), "--flair",
                     str(next(case.glob("*_flair.nii.gz"))), "-o", str(out)]) == 0
    assert nib.load(out).header["descrip"].tobytes().rstrip(b"\0").decode() == \
        "mmdis robustseg epoch 2/5 step 2"


def test_a_finished_run_raises_no_warning(world, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_run(world / "run", world / "cache", EvalConfig(recon_cases=0), progress=False)


def test_split_sizes_are_printed_and_a_tiny_training_split_warned(world, tmp_path, capsys):
    tiny = r"training split of .* holds only 2 case\(s\) \(2 train, 1 val, 1 test\)"
    with pytest.warns(UserWarning, match=tiny):
        prepare(world / "raw", tmp_path / "cache", PrepareConfig(fractions=(0.5, 0.25, 0.25)), progress=False)
    capsys.readouterr()
    assert main(["--quiet", "prepare", str(world / "raw"), str(tmp_path / "cache2")]) == 0
    assert "split: 2 train, 1 val, 1 test" in capsys.readouterr().out
    for i in range(8):
        write_brats_case(tmp_path / "big", f"case{i}", seed=i)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(tmp_path / "big", tmp_path / "cache3", PrepareConfig(fractions=(0.75, 0.125, 0.125)),
                progress=False)


def test_the_printed_average_says_over_how_many_subsets(world, tmp_path, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(world / "cache", cache)
    test_id = Cache.open(cache).case_ids("test")[0]
    meta_path = cache / "cases" / test_id / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["available"] = [True, False, True, False]  # FLAIR and T1c only: 3 subsets
    meta_path.write_text(json.dumps(meta))
    manifest = json.loads((cache / "manifest.json").read_text())
    for entry in manifest["cases"]:
        if entry["case_id"] == test_id:
            entry["available"] = meta["available"]
    (cache / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["--quiet", "evaluate", str(world / "run"), "--data", str(cache), "--out",
                 str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "(3-subset average of 15)" in out and "15-subset average" not in out


def test_a_killed_predicts_temporary_is_swept(world, tmp_path):
    case = next(p for p in sorted((world / "raw").iterdir()) if p.is_dir())
    left = tmp_path / ".seg.nii.gz.k1ll3d.tmp.nii.gz"
    left.write_bytes(b"half")
    other = tmp_path / ".other.nii.gz.abc.tmp.nii.gz"  # another output's: not ours to remove
    other.write_bytes(b"half")
    assert main(["--quiet", "predict", "--model", str(world / "run"), "--t1ce",
                 str(next(case.glob("*_t1ce.nii.gz"))), "-o", str(tmp_path / "seg.nii.gz")]) == 0
    assert not left.exists() and other.exists()
    assert main(["--quiet", "predict", "--model", str(world / "run"), "--t1ce",
                 str(next(case.glob("*_t1ce.nii.gz"))), "-o", str(tmp_path / "seg.nii.gz"),
                 "--overwrite"]) == 0


def test_evaluation_settings_from_the_command_line_key_the_cached_rows(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    shutil.rmtree(run / "evaluation", ignore_errors=True)  # other tests' rows

    def cached():
        return len(list((run / "evaluation").glob("*.csv")))

    base = ["--quiet", "evaluate", str(run), "--data", str(world / "cache"), "--out"]
    assert main([*base, str(tmp_path / "a")]) == 0
    assert main([*base, str(tmp_path / "b"), "--blend", "constant", "--no-mask-to-brain"]) == 0
    config = json.loads((tmp_path / "b" / "evaluation.json").read_text())["config"]
    assert config["blend"] == "constant" and config["mask_to_brain"] is False
    assert cached() == 2  # the second setting was evaluated anew
    assert main([*base, str(tmp_path / "c"), "--blend", "constant", "--no-mask-to-brain"]) == 0
    assert cached() == 2  # and reused when asked for again


def test_the_metric_choices_reach_the_tables_from_the_command_line(world, tmp_path):
    assert main(["--quiet", "evaluate", str(world / "run"), "--data", str(world / "cache"), "--out",
                 str(tmp_path / "out"), "--hd95", "pooled", "--empty", "brats2025", "--et-postprocess"]) == 0
    config = json.loads((tmp_path / "out" / "evaluation.json").read_text())["config"]["metrics"]
    assert config == {"hd95": "pooled", "empty": "brats2025", "et_postprocess": True, "et_min_voxels": 500}
    assert "ET-pp" in set(pd.read_csv(tmp_path / "out" / "results.csv")["region"])
    assert "HD95 pooled" in (tmp_path / "out" / "table2_hd95.md").read_text()


def test_a_shipped_model_predicts_at_the_spacing_it_was_trained_at(tmp_path):
    """Shipped models have no data.json; they were trained at their profile's 3 mm, not the input's grid."""
    from mmdis.evaluation.predict import run_spacing
    from mmdis.profiles import get_profile
    from mmdis.training.export import materialise

    run = materialise("cpu", "robustseg", tmp_path / "robustseg")
    assert not (run / "data.json").exists()
    assert run_spacing(run) == get_profile("cpu").spacing == 3.0
