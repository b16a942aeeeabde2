"""Download and unpack MSD Task01 BrainTumour where the internet is reachable.

Nothing in mmdis calls this at run time; it is for people preparing real data on their own machine::

    mmdis fetch-msd data/msd && mmdis prepare data/msd/Task01_BrainTumour data/msd-cache
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from mmdis.data.io import atomic_path

#: The Medical Segmentation Decathlon's public copy of Task01 (about 7 GB).
DEFAULT_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task01_BrainTumour.tar"
TASK = "Task01_BrainTumour"


def _download(url: str, dest: Path, progress: bool) -> str:
    """Stream ``url`` into ``dest``; returns the SHA-256 of what was written."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=TASK, disable=not progress) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def fetch_msd_task01(dest: str | Path, url: str = DEFAULT_URL, *, sha256: str | None = None,
                     progress: bool = True) -> Path:
    """Download the Task01 tar and unpack it to ``dest/Task01_BrainTumour``.

    The archive goes to a temporary file and is unpacked into a temporary folder that is renamed at
    the end, so an interrupted or failed download leaves nothing behind. An existing dataset folder is
    returned as it is.

    Args:
        dest: parent folder.
        url: where to download from (``file://`` works too).
        sha256: expected checksum of the tar; a mismatch raises ``ValueError``.
        progress: show a progress bar.

    Returns:
        The dataset root (holding ``imagesTr``, ``labelsTr``, ``imagesTs``).
    """
    dest = Path(dest)
    root = dest / TASK
    if (root / "imagesTr").is_dir():
        return root
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        archive = Path(tmp) / "task.tar"
        got = _download(url, archive, progress)
        if sha256 is not None and got != sha256.lower():
            raise ValueError(f"checksum of {url} is {got}, expected {sha256}: the download is corrupt")
        with atomic_path(root) as unpack:
            unpack.mkdir()
            with tarfile.open(archive) as tar:
                tar.extractall(unpack, filter="data")
            inner = unpack / TASK
            if inner.is_dir():  # the tar holds Task01_BrainTumour/...; lift its content up one level
                for item in inner.iterdir():
                    shutil.move(str(item), unpack / item.name)
                inner.rmdir()
            if not (unpack / "imagesTr").is_dir():
                raise ValueError(f"{url} does not contain {TASK}/imagesTr")
    return root
