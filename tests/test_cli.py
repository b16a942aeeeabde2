"""The command line: real invocations on tiny data, and clear failures on bad input."""

import json
import subprocess
import sys

import pytest

from mmdis.cli import main


def test_prepare_on_missing_folder_fails_cleanly(tmp_path, capsys):
    assert main(["--quiet", "prepare", str(tmp_path / "nope"), str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "mmdis prepare: error:" in err and "nope" in err
    assert not (tmp_path / "cache" / "manifest.json").exists()


def test_bad_parameter_is_named(tmp_path, capsys):
    assert main(["--quiet", "prepare", str(tmp_path), str(tmp_path / "c"), "--spacing", "50"]) == 2
    assert "spacing" in capsys.readouterr().err


def test_unknown_subcommand_exits_nonzero():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code != 0


def test_phantom_prepare_and_preview_end_to_end(tmp_path):
    data, cache, png = tmp_path / "phantom", tmp_path / "cache", tmp_path / "preview.png"
    assert main(["--quiet", "phantom", str(data), "--cases", "3", "--spacing", "4",
                 "--preview", str(png)]) == 0
    assert png.stat().st_size > 10_000
    assert main(["--quiet", "prepare", str(data), str(cache)]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["layout"] == "brats2021" and len(manifest["cases"]) == 3
    assert all(c["modalities"] == ["flair", "t1", "t1ce", "t2"] for c in manifest["cases"])
    splits = json.loads((cache / "splits.json").read_text())
    split_ids = sorted(splits["train"] + splits["val"] + splits["test"])
    assert split_ids == [c["case_id"] for c in manifest["cases"]]
    # a second run reuses every cached case (same checksums, nothing rewritten)
    before = {p: p.stat().st_mtime_ns for p in (cache / "cases").rglob("*.npy")}
    assert main(["--quiet", "prepare", str(data), str(cache)]) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (cache / "cases").rglob("*.npy")}


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "mmdis.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "phantom" in out.stdout and "prepare" in out.stdout
