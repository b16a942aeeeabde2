"""The MSD downloader, on tiny fake archives served from file:// URLs (never the network)."""

import hashlib
import io
import tarfile
import urllib.error

import pytest
from conftest import write_msd_case

from mmdis.data import fetch
from mmdis.data.fetch import TASK, ChecksumError, fetch_msd_task01
from mmdis.data.layouts import detect_layout, discover_cases, read_case


def _tar_of(folder, tar_path, arcname):
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname=arcname)
    return tar_path


@pytest.fixture
def fake_tar(tmp_path):
    """A two-case MSD Task01 tar laid out like the official one (top folder, dataset.json, ``._`` files)."""
    src = tmp_path / "src" / TASK
    write_msd_case(src, "BRATS_001")
    write_msd_case(src, "BRATS_002", seed=1)
    write_msd_case(src, "BRATS_900", labelled=False)
    (src / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\0\5\26\7")
    (src / "dataset.json").write_text('{"name": "BRATS", "modality": {"0": "FLAIR", "1": "T1w", '
                                      '"2": "t1gd", "3": "T2w"}}')
    return _tar_of(src, tmp_path / "Task01_BrainTumour.tar", TASK)


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(dest):
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_fetch_unpacks_a_readable_dataset(tmp_path, fake_tar, capsys):
    out = tmp_path / "out"
    root = fetch_msd_task01(out, fake_tar.as_uri(), sha256=_sha256(fake_tar).upper(), progress=True)
    assert root == out / TASK and _leftovers(out) == [TASK]  # no temporary left beside it
    assert detect_layout(root) == "msd"
    cases = discover_cases(root)
    assert [(c.case_id, c.label is not None) for c in cases] == [
        ("BRATS_001", True), ("BRATS_002", True), ("BRATS_900", False)]
    assert read_case(cases[0]).available == (True,) * 4
    assert TASK in capsys.readouterr().err  # the progress bar ran
    # A second call reuses what is there: the URL is not even opened.
    assert fetch_msd_task01(out, "file:///nonexistent/Task01.tar", progress=False) == root


def test_archive_of_the_content_without_top_folder(tmp_path, fake_tar):
    flat = _tar_of(tmp_path / "src" / TASK, tmp_path / "flat.tar", ".")
    root = fetch_msd_task01(tmp_path / "out", flat.as_uri(), progress=False)
    assert len(discover_cases(root)) == 3


def test_bad_checksum_leaves_nothing(tmp_path, fake_tar):
    with pytest.raises(ChecksumError, match=r"sha256.*expected 0000"):
        fetch_msd_task01(tmp_path / "out", fake_tar.as_uri(), sha256="0" * 64, progress=False)
    assert _leftovers(tmp_path / "out") == []


def test_known_md5_is_checked_for_a_known_url(tmp_path, fake_tar, monkeypatch):
    url = fake_tar.as_uri()
    monkeypatch.setitem(fetch.KNOWN_MD5, url, "f" * 32)
    with pytest.raises(ChecksumError, match="md5"):
        fetch_msd_task01(tmp_path / "out", url, progress=False)
    assert _leftovers(tmp_path / "out") == []
    monkeypatch.setitem(fetch.KNOWN_MD5, url, hashlib.md5(fake_tar.read_bytes()).hexdigest())
    assert (fetch_msd_task01(tmp_path / "out", url, progress=False) / "imagesTr").is_dir()


def test_default_url_has_a_known_checksum():
    assert fetch.DEFAULT_URL.endswith(f"/{TASK}.tar") and len(fetch.KNOWN_MD5[fetch.DEFAULT_URL]) == 32


def test_archive_without_the_task_leaves_nothing(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "readme.txt").write_text("no images")
    bad = _tar_of(tmp_path / "x", tmp_path / "bad.tar", "x")
    with pytest.raises(ValueError, match="imagesTr"):
        fetch_msd_task01(tmp_path / "out", bad.as_uri(), progress=False)
    assert _leftovers(tmp_path / "out") == []


def test_truncated_archive_leaves_nothing(tmp_path, fake_tar):
    data = fake_tar.read_bytes()
    fake_tar.write_bytes(data[: len(data) // 2])
    with pytest.raises(tarfile.TarError):
        fetch_msd_task01(tmp_path / "out", fake_tar.as_uri(), progress=False)
    assert _leftovers(tmp_path / "out") == []


def test_unreachable_url_leaves_nothing(tmp_path):
    with pytest.raises(urllib.error.URLError):
        fetch_msd_task01(tmp_path / "out", (tmp_path / "absent.tar").as_uri(), progress=False)
    assert _leftovers(tmp_path / "out") == []


def test_member_escaping_the_folder_is_refused(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        payload = b"overwritten"
        info = tarfile.TarInfo(f"{TASK}/../../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises((tarfile.TarError, ValueError)):
        fetch_msd_task01(tmp_path / "a" / "out", evil.as_uri(), progress=False)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert _leftovers(tmp_path / "a" / "out") == []


def test_existing_foreign_folder_is_left_alone(tmp_path, fake_tar):
    (tmp_path / "out" / TASK).mkdir(parents=True)
    (tmp_path / "out" / TASK / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="imagesTr"):
        fetch_msd_task01(tmp_path / "out", fake_tar.as_uri(), progress=False)
    assert (tmp_path / "out" / TASK / "mine.txt").read_text() == "keep me"
    (tmp_path / "out" / TASK / "mine.txt").unlink()  # an empty folder is simply replaced
    assert len(discover_cases(fetch_msd_task01(tmp_path / "out", fake_tar.as_uri(), progress=False))) == 3


def test_member_check_for_pythons_without_the_data_filter(tmp_path):
    fetch._check_member(tarfile.TarInfo(f"{TASK}/imagesTr/BRATS_001.nii.gz"), tmp_path)
    for name, kind in [("../x", tarfile.REGTYPE), ("/etc/x", tarfile.REGTYPE), ("ok", tarfile.SYMTYPE)]:
        info = tarfile.TarInfo(name)
        info.type = kind
        with pytest.raises(ValueError, match="unsafe"):
            fetch._check_member(info, tmp_path)
