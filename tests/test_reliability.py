"""Bad input, named: every failure of ``prepare``, ``train``, ``evaluate``, ``predict`` and ``bench`` that a
user can cause is one line on stderr naming the file or parameter, exit status 2, and an output tree left
exactly as it was (nothing half-written, no temporaries).

Each entry of :data:`CASES` builds one bad input in a fresh folder and returns the command line, a regular
expression the message must match (the offending file or parameter) and the folder that must not change.
A full disk is simulated by making the writer raise ``ENOSPC``. ``book/running.md`` quotes the counts.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import AFFINE, SMOKE_FAST, make_smoke_world, save_nii, tiny_volumes, write_brats_case

from mmdis.cli import main
from mmdis.runtime.locks import folder_lock

FAST = SMOKE_FAST


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 4-case phantom at 4 mm, its cache (2 train, 1 val, 1 test) and one finished smoke run."""
    root = make_smoke_world(tmp_path_factory.mktemp("reliability"))
    run = root / "run"
    case = next(p for p in sorted((root / "raw").iterdir()) if p.is_dir())
    files = {m: next(case.glob(f"*_{m}.nii.gz")) for m in ("flair", "t1", "t1ce", "t2")}
    return {"root": root, "raw": root / "raw", "cache": root / "cache", "run": run, "files": files}


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``folder`` with its size and modification time (hidden files included)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def raw_dataset(tmp: Path, n: int = 3) -> Path:
    root = tmp / "raw"
    for i in range(n):
        write_brats_case(root, f"case{i}", seed=i)
    return root


def rewrite(path: Path, fn) -> Path:
    img = nib.load(path)
    data, affine = fn(np.asarray(img.dataobj).astype(np.float32), img.affine.copy())
    return save_nii(data, path, affine)


def huge_header(path: Path) -> Path:
    """A NIfTI whose header claims 30000^3 voxels but holds a few bytes."""
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), AFFINE)
    header = img.header.copy()
    header.set_data_shape((30000, 30000, 30000))
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4 + b"\0" * 64)
    return path


# --------------------------------------------------------------------------- prepare
def prepare_case(edit: Callable[[Path, Path], None] | None = None, extra: tuple[str, ...] = ()):
    """A ``prepare`` of a 3-case raw folder after ``edit(raw, case0_folder)``."""
    def build(world, tmp):
        raw = raw_dataset(tmp)
        if edit is not None:
            edit(raw, raw / "case0")
        return ["prepare", str(raw), str(tmp / "cache"), *extra], tmp / "cache"
    return build


def truncate(path: Path, keep: int = 200) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(3000))


def symlink_loop(raw: Path, case: Path) -> None:
    """A modality file that is a link to itself (``ELOOP`` on every open)."""
    _t1(case).unlink()
    os.symlink(_t1(case).name, _t1(case))


def zscored_background(path: Path) -> None:
    def fn(a, aff):
        brain = a != 0
        z = np.where(brain, (a - a[brain].mean()) / a[brain].std(), 0)
        return np.where(brain, z, -3.19).astype(np.float32), aff
    rewrite(path, fn)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable  # (world, tmp) -> (argv, watched folder)
    names: str  # regular expression the one-line message must match


def _t1(case: Path) -> Path:
    return case / "case0_t1.nii.gz"


CASES: list[Case] = [
    Case("prepare-missing-folder", lambda w, t: (["prepare", str(t / "nope"), str(t / "cache")], t / "cache"),
         "nope"),
    Case("prepare-empty-folder", lambda w, t: ((t / "empty").mkdir() or
                                               ["prepare", str(t / "empty"), str(t / "cache")], t / "cache"),
         "empty"),
    Case("prepare-into-data-folder",
         lambda w, t: (["prepare", str(raw_dataset(t)), str(t / "raw")], t / "raw"),
         r"cache folder .*raw must lie outside"),
    Case("prepare-cache-inside-data", lambda w, t: (["prepare", str(raw_dataset(t)), str(t / "raw" / "c")],
                                                    t / "raw"), r"raw/c must lie outside"),
    Case("prepare-truncated-gzip", prepare_case(lambda r, c: truncate(_t1(c))), r"case0_t1\.nii\.gz"),
    Case("prepare-not-gzip", prepare_case(lambda r, c: random_bytes(_t1(c))), r"case0_t1\.nii\.gz"),
    Case("prepare-zero-bytes", prepare_case(lambda r, c: _t1(c).write_bytes(b"")), r"case0_t1\.nii\.gz"),
    Case("prepare-shape-mismatch", prepare_case(lambda r, c: rewrite(_t1(c), lambda a, aff: (a[:-1], aff))),
         r"case0_t1\.nii\.gz"),
    Case("prepare-affine-mismatch", prepare_case(lambda r, c: rewrite(_t1(c), lambda a, aff: (a, aff * 2))),
         r"affine of .*case0"),
    Case("prepare-nan", prepare_case(lambda r, c: rewrite(_t1(c), lambda a, aff: (
        np.where(a > 0, np.nan, a).astype(np.float32), aff))), r"case0_t1\.nii\.gz has \d+ non-finite"),
    Case("prepare-inf", prepare_case(lambda r, c: rewrite(_t1(c), lambda a, aff: (
        np.where(a > 0, np.inf, a).astype(np.float32), aff))), r"case0_t1\.nii\.gz has \d+ non-finite"),
    Case("prepare-unknown-label", prepare_case(lambda r, c: rewrite(c / "case0_seg.nii.gz", lambda a, aff: (
        np.where(a == 2, 7, a).astype(np.uint8), aff))), r"case0_seg\.nii\.gz"),
    Case("prepare-2d-image", prepare_case(lambda r, c: rewrite(_t1(c), lambda a, aff: (a[:, :, 0], aff))),
         r"case0_t1\.nii\.gz"),
    Case("prepare-4d-image", prepare_case(lambda r, c: rewrite(_t1(c), lambda a, aff: (
        np.stack([a, a], -1), aff))), r"case0_t1\.nii\.gz"),
    Case("prepare-huge-header", prepare_case(lambda r, c: huge_header(_t1(c))),
         r"case0_t1\.nii\.gz claims shape \(30000, 30000, 30000\)"),
    Case("prepare-all-zero-sequence", prepare_case(lambda r, c: rewrite(_t1(c), lambda a, aff: (
        np.zeros_like(a), aff))), r"case0_t1\.nii\.gz is constant \(0 everywhere\)"),
    Case("prepare-constant-sequence", prepare_case(lambda r, c: rewrite(_t1(c), lambda a, aff: (
        np.full_like(a, 5.0), aff))), r"case0_t1\.nii\.gz is constant \(5 everywhere\)"),
    Case("prepare-zscored-background", prepare_case(lambda r, c: [zscored_background(p)
                                                                  for p in c.glob("*_[ft]*.nii.gz")]),
         r"case0.*background .* is the constant -3\.19"),
    Case("prepare-missing-modality", prepare_case(lambda r, c: _t1(c).unlink()), r"case0.*t1"),
    Case("prepare-symlink-loop", prepare_case(symlink_loop), r"case0_t1\.nii\.gz"),
    Case("prepare-bad-spacing", prepare_case(extra=("--spacing", "50")), r"spacing"),
    Case("prepare-bad-split", prepare_case(extra=("--split", "-1", "1", "1")), r"fractions"),
]


# ----------------------------------------------------------------------------- train
def train_case(extra: tuple[str, ...] = (), edit_run=None, edit_cache=None, resume: bool = False):
    """``train`` on a copy of the world's cache (after ``edit_cache``) into a copy of its run (after
    ``edit_run``), or into a fresh run folder when neither run edit nor resume is asked for."""
    def build(world, tmp):
        cache = copy_of(world["cache"], tmp / "cache") if edit_cache else world["cache"]
        if edit_cache:
            edit_cache(cache)
        run = tmp / "run"
        if edit_run or resume:
            copy_of(world["run"], run)
            if edit_run:
                edit_run(run)
        argv = ["train", "--profile", "smoke", "--data", str(cache), "--run-dir", str(run), *FAST, *extra]
        return argv + (["--resume", "--set", "epochs=2"] if resume else []), run
    return build


def malicious_pickle(path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/mmdis-pwned",))
    path.write_bytes(pickle.dumps({"model": Evil()}))


def _case_dir(cache: Path, split: str = "train") -> Path:
    ids = json.loads((cache / "splits.json").read_text())[split]
    return cache / "cases" / ids[0]


def object_array(cache: Path) -> None:
    path = _case_dir(cache) / "image.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def altered_array(cache: Path) -> None:
    path = _case_dir(cache) / "image.npy"
    arr = np.load(path)
    arr.flat[0] += 1.0
    np.save(path, arr)


def restamp(cache: Path, case_id: str) -> None:
    """Make the manifest and ``meta.json`` agree with a case's edited arrays again."""
    from mmdis.data.case_store import checksum_of

    d = cache / "cases" / case_id
    new = checksum_of(d / "image.npy", d / "label.npy")
    meta = json.loads((d / "meta.json").read_text())
    (d / "meta.json").write_text(json.dumps({**meta, "checksum": new}))
    manifest = json.loads((cache / "manifest.json").read_text())
    for entry in manifest["cases"]:
        if entry["case_id"] == case_id:
            entry["checksum"] = new
    (cache / "manifest.json").write_text(json.dumps(manifest))


def nan_case(cache: Path) -> None:
    """Every training case's image is NaN, with its checksums updated: only the loss can tell."""
    for case_id in json.loads((cache / "splits.json").read_text())["train"]:
        path = cache / "cases" / case_id / "image.npy"
        np.save(path, np.full_like(np.load(path), np.nan))
        restamp(cache, case_id)


CASES += [
    Case("train-set-bad-type", train_case(("--set", "optim.lr=fast")), r"optim\.lr must be a number"),
    Case("train-set-bad-int", train_case(("--set", "epochs=2.5")), r"config\.epochs must be an integer"),
    Case("train-set-unknown-field", train_case(("--set", "colour=1")), r"colour"),
    Case("train-set-model-bad-type", train_case(("--set", "model.p_keep=high")), r"model\.p_keep"),
    Case("train-device-cuda", train_case(("--device", "cuda")), r"--device cuda"),
    Case("train-device-unknown", train_case(("--device", "tpu")), r"device"),
    Case("train-resume-random-bytes", train_case(edit_run=lambda r: random_bytes(r / "last.pt"), resume=True),
         r"last\.pt cannot be read"),
    Case("train-resume-empty-checkpoint", train_case(edit_run=lambda r: (r / "last.pt").write_bytes(b""),
                                                     resume=True), r"last\.pt is empty"),
    Case("train-resume-truncated-checkpoint", train_case(edit_run=lambda r: truncate(r / "last.pt", 5000),
                                                         resume=True), r"last\.pt cannot be read"),
    Case("train-resume-malicious-pickle", train_case(edit_run=lambda r: malicious_pickle(r / "last.pt"),
                                                     resume=True), r"last\.pt .*refuses to load"),
    Case("train-cache-truncated-npy",
         train_case(edit_cache=lambda c: truncate(_case_dir(c) / "mask.npy", 60)),
         r"case PHANTOM_\d+: .*mask\.npy cannot be read"),
    Case("train-cache-object-npy", train_case(edit_cache=object_array), r"case PHANTOM_\d+"),
    Case("train-cache-checksum", train_case(edit_cache=altered_array),
         r"case PHANTOM_\d+: .* no longer match the manifest checksum"),
    Case("train-not-a-cache", lambda w, t: (["train", "--profile", "smoke", "--data", str(t / "none"),
                                             "--run-dir", str(t / "run")], t / "run"), r"none"),
    Case("train-existing-run", lambda w, t: (["train", "--profile", "smoke", "--data", str(w["cache"]),
                                              "--run-dir", str(copy_of(w["run"], t / "run"))], t / "run"),
         r"already holds a checkpoint"),
    Case("train-non-finite-loss", train_case(edit_cache=nan_case),
         r"non-finite loss at step 1 \(epoch 1\) on cases \['PHANTOM_\d+'"),
]


# ------------------------------------------------------------------------- evaluate
def evaluate_case(edit_run=None, extra: tuple[str, ...] = (), data=None):
    def build(world, tmp):
        run = copy_of(world["run"], tmp / "run")
        if edit_run:
            edit_run(run)
        cache = world["cache"] if data is None else data(world, tmp)
        return ["evaluate", str(run), "--data", str(cache), "--out", str(tmp / "out"), *extra], tmp / "out"
    return build


def truncated_test_label(world, tmp):
    cache = copy_of(world["cache"], tmp / "cache")
    truncate(_case_dir(cache, "test") / "label.npy", 60)
    return cache


CASES += [
    Case("evaluate-not-a-run", lambda w, t: (["evaluate", str(t), "--data", str(w["cache"]), "--out",
                                              str(t / "out")], t / "out"), r"no config\.json"),
    Case("evaluate-not-a-cache", evaluate_case(data=lambda w, t: w["raw"]),
         r"--data .*raw is not a prepared"),
    Case("evaluate-random-checkpoint", evaluate_case(lambda r: random_bytes(r / "last.pt")),
         r"last\.pt cannot be read"),
    Case("evaluate-empty-checkpoint", evaluate_case(lambda r: (r / "last.pt").write_bytes(b"")),
         r"last\.pt is empty"),
    Case("evaluate-pickle-checkpoint", evaluate_case(lambda r: malicious_pickle(r / "last.pt")),
         r"last\.pt .*refuses to load"),
    Case("evaluate-train-overlap", evaluate_case(extra=("--split", "train")),
         r"2 of the 2 'train' cases were in the training split"),
    Case("evaluate-device-cuda", evaluate_case(extra=("--device", "cuda")), r"--device cuda"),
    Case("evaluate-truncated-label", evaluate_case(data=truncated_test_label), r"case PHANTOM_\d+"),
]


# -------------------------------------------------------------------------- predict
def predict_case(make_inputs, extra: tuple[str, ...] = (), edit_run=None, output: str = "seg.nii.gz"):
    """``predict`` with ``make_inputs(world, tmp) -> ["--flair", F, ...]`` into ``tmp/out/<output>``."""
    def build(world, tmp):
        run = world["run"]
        if edit_run:
            run = copy_of(world["run"], tmp / "run")
            edit_run(run)
        (tmp / "out").mkdir()
        args = make_inputs(world, tmp)
        return ["predict", "--model", str(run), *args, "-o", str(tmp / "out" / output), *extra], tmp / "out"
    return build


def inputs(**edits):
    """The world's first raw case as inputs, each listed modality copied and edited first."""
    def make(world, tmp):
        args = []
        for m, path in world["files"].items():
            if m in edits:
                new = tmp / f"in_{m}.nii.gz"
                shutil.copyfile(path, new)
                if edits[m] is not None:
                    edits[m](new)
                path = new
            args += [f"--{m}", str(path)]
        return args
    return make


def existing_output(world, tmp):
    (tmp / "out" / "seg.nii.gz").write_bytes(b"keep me")
    return inputs()(world, tmp)


CASES += [
    Case("predict-output-exists", predict_case(existing_output), r"seg\.nii\.gz exists; pass --overwrite"),
    Case("predict-zscored-without-mask", predict_case(inputs(**{m: zscored_background for m in
                                                                ("flair", "t1", "t1ce", "t2")})),
         r"background of .* is the constant -3\.19.*--mask"),
    Case("predict-zscored-flag-without-mask", predict_case(inputs(), extra=("--zscored",)), r"--mask"),
    Case("predict-no-input", predict_case(lambda w, t: []), r"--flair"),
    Case("predict-truncated-input", predict_case(inputs(t1=lambda p: truncate(p))), r"in_t1\.nii\.gz"),
    Case("predict-shape-mismatch", predict_case(inputs(t2=lambda p: rewrite(p, lambda a, aff: (a[1:], aff)))),
         r"in_t2\.nii\.gz"),
    Case("predict-4d-input", predict_case(inputs(flair=lambda p: rewrite(p, lambda a, aff: (
        np.stack([a, a], -1), aff)))), r"in_flair\.nii\.gz"),
    Case("predict-bad-output-name", predict_case(inputs(), output="seg.png"), r"seg\.png must end in"),
    Case("predict-corrupt-checkpoint", predict_case(inputs(), edit_run=lambda r: random_bytes(r / "last.pt")),
         r"last\.pt cannot be read"),
    Case("predict-not-a-run", lambda w, t: ((t / "out").mkdir() or ["predict", "--model", str(t / "norun"),
                                                                   "--flair", str(w["files"]["flair"]), "-o",
                                                                   str(t / "out" / "s.nii.gz")], t / "out"),
         r"norun"),
    Case("predict-unknown-convention", predict_case(inputs(), extra=("--convention", "brats1999")),
         r"brats1999"),
    Case("predict-all-inputs-blank", predict_case(inputs(**{m: lambda p: rewrite(p, lambda a, aff: (
        np.zeros_like(a), aff)) for m in ("flair", "t1", "t1ce", "t2")})), r"brain is empty|no sequence"),
    Case("predict-mask-shape-mismatch", predict_case(
        lambda w, t: [*inputs()(w, t), "--mask",
                      str(save_nii(np.ones((3, 3, 3), np.uint8), t / "m.nii.gz"))]),
        r"m\.nii\.gz"),
    Case("bench-negative-seconds", lambda w, t: (["bench", "--seconds", "-5"], t / "none"), r"--seconds"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_one_named_line_exit_2_and_no_debris(case, world, tmp_path, capsys):
    argv, watched = case.build(world, tmp_path)
    before = tree(watched)
    capsys.readouterr()
    assert main(["--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("mmdis ")]
    assert len(lines) == 1 and "error:" in lines[0], err
    assert not [line for line in err if line.startswith(("Traceback", "  File"))], err
    import re

    assert re.search(case.names, lines[0]), lines[0]
    assert tree(watched) == before
    assert not Path("/tmp/mmdis-pwned").exists()


def test_the_suite_is_as_large_as_running_md_says():
    """``book/running.md`` quotes how many bad inputs the suite tries; keep the two in step."""
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 40
    text = (Path(__file__).resolve().parents[1] / "book" / "running.md").read_text()
    assert f"{len(CASES) + len(DISK_FULL)} bad inputs" in text


# ---------------------------------------------------------------------- disk full
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


DISK_FULL = {
    "prepare": ("numpy.save", lambda w, t: (["prepare", str(raw_dataset(t)), str(t / "cache")], t / "cache"),
                r"cannot write .*case\d.*No space left"),
    "train": ("torch.save", lambda w, t: (["train", "--profile", "smoke", "--data", str(w["cache"]),
                                           "--run-dir", str(t / "run"), *FAST], t / "run"),
              r"cannot write .*last\.pt.*No space left"),
    "predict": ("nibabel.save", lambda w, t: ((t / "out").mkdir() or
                                              ["predict", "--model", str(w["run"]), *inputs()(w, t), "-o",
                                               str(t / "out" / "seg.nii.gz")], t / "out"),
                r"cannot write .*seg\.nii\.gz.*No space left"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(DISK_FULL))
def test_disk_full_names_the_file_and_leaves_no_temporary(command, world, tmp_path, capsys, monkeypatch):
    target, build, names = DISK_FULL[command]
    argv, watched = build(world, tmp_path)
    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(__import__(module), name, _enospc)
    assert main(["--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("mmdis ")]
    import re

    assert len(lines) == 1 and re.search(names, lines[0]), err
    left = [p for p in watched.rglob("*") if ".tmp" in p.name] if watched.exists() else []
    assert left == []
    assert not (watched / "last.pt").exists() and not (watched / "seg.nii.gz").exists()


# --------------------------------------------------------------- checks that can fail
def test_a_constant_image_is_refused_by_name(tmp_path):
    images, _ = tiny_volumes()
    from mmdis.data.io import MissingModalityError, informative_images

    images["t2"] = np.full_like(images["t2"], 3.0)
    with pytest.raises(MissingModalityError, match="t2.nii.gz is constant"):
        informative_images(images, {"t2": "t2.nii.gz"}, "x", allow_missing=False)
    images["t2"] = tiny_volumes(seed=1)[0]["t2"]
    assert set(informative_images(images, {}, "x", allow_missing=False)) == set(images)


def test_the_lock_refuses_a_second_writer_and_frees_on_exit(tmp_path):
    from mmdis.runtime.locks import FolderLockedError

    with folder_lock(tmp_path / "run", "--run-dir"):
        with pytest.raises(FolderLockedError, match=r"--run-dir .*run is being written by another process"):
            with folder_lock(tmp_path / "run", "--run-dir"):
                pass
    with folder_lock(tmp_path / "run", "--run-dir"):
        pass  # released: a new holder gets it


def test_second_train_into_a_locked_run_dir_is_refused(world, tmp_path, capsys):
    run = tmp_path / "run"
    with folder_lock(run, "--run-dir"):
        before = tree(run)
        assert main(["--quiet", "train", "--profile", "smoke", "--data", str(world["cache"]), "--run-dir",
                     str(run), *FAST]) == 2
        assert tree(run) == before
    assert "is being written by another process" in capsys.readouterr().err


# ------------------------------------------------------------ killed inside a checkpoint write
KILLER = """
import os, signal, sys
import torch
real, calls = torch.save, []
def dying_save(obj, f, *args, **kwargs):
    calls.append(f)
    if len(calls) == 2:  # the second epoch's checkpoint: half of it, then SIGKILL
        with open(f, "wb") as handle:
            handle.write(b"PK half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *args, **kwargs)
torch.save = dying_save
from mmdis.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_kill_inside_a_checkpoint_write_resumes_bit_exactly(world, tmp_path):
    """SIGKILL halfway through writing ``last.pt``: the previous checkpoint survives, the temporary is
    swept at the next start, and the resumed run ends with the weights of an uninterrupted one."""
    import subprocess
    import sys

    import torch

    args = ["--quiet", "train", "--profile", "smoke", "--data", str(world["cache"]), "--set", "epochs=3",
            "--set", "iters_per_epoch=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLER, *args, "--run-dir", str(tmp_path / "a")], env=env)
    assert killed.returncode == -9
    temporaries = [p.name for p in (tmp_path / "a").glob(".last.pt.*.tmp")]
    assert len(temporaries) == 1
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=True)["epoch"] == 1
    for run, extra in (("a", ["--resume"]), ("b", [])):
        done = subprocess.run([sys.executable, "-m", "mmdis.cli", *args, "--run-dir", str(tmp_path / run),
                               *extra], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "a").glob(".*.tmp")) and not (tmp_path / "a" / ".lock").exists()
    resumed, straight = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("a", "b"))
    assert resumed["epoch"] == straight["epoch"] == 3
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
