"""The MSD downloader, on a tiny fake archive served from a file:// URL (never the network)."""

import hashlib
import tarfile

import pytest
from conftest import write_msd_case

from mmdis.data.fetch import TASK, fetch_msd_task01
from mmdis.data.layouts import detect_layout, discover_cases


@pytest.fixture
def fake_tar(tmp_path):
    src = tmp_path / "src" / TASK
    write_msd_case(src, "BRATS_001")
    write_msd_case(src, "BRATS_002", seed=1)
    (src / "dataset.json").write_text("{}")
    tar_path = tmp_path / "Task01.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(src, arcname=TASK)
    return tar_path


def test_fetch_unpacks_a_readable_dataset(tmp_path, fake_tar):
    root = fetch_msd_task01(tmp_path / "out", fake_tar.as_uri(), progress=False,
                            sha256=hashlib.sha256(fake_tar.read_bytes()).hexdigest())
    assert root == tmp_path / "out" / TASK
    assert detect_layout(root) == "msd"
    assert [c.case_id for c in discover_cases(root)] == ["BRATS_001", "BRATS_002"]
    # a second call reuses what is there (the URL is not even opened)
    assert fetch_msd_task01(tmp_path / "out", "file:///nonexistent.tar", progress=False) == root


def test_bad_checksum_leaves_nothing(tmp_path, fake_tar):
    with pytest.raises(ValueError, match="checksum"):
        fetch_msd_task01(tmp_path / "out", fake_tar.as_uri(), sha256="0" * 64, progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_archive_without_the_task_leaves_nothing(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "readme.txt").write_text("no images")
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(tmp_path / "x", arcname="x")
    with pytest.raises(ValueError, match="imagesTr"):
        fetch_msd_task01(tmp_path / "out", bad.as_uri(), progress=False)
    assert list((tmp_path / "out").iterdir()) == []
