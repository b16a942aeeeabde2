"""Download and unpack MSD Task01 BrainTumour where the internet is reachable.

Nothing in mmdis calls this at run time; it is for people preparing real data on their own machine::

    mmdis fetch-msd data/msd && mmdis prepare data/msd/Task01_BrainTumour data/msd-cache

The archive is streamed to a temporary file inside ``dest``, checked, unpacked into a temporary folder
beside the final one and renamed into place, so an interrupted or failed run leaves nothing behind and a
finished one is never half there.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

#: The Medical Segmentation Decathlon's copy on the AWS Registry of Open Data (bucket ``msd-for-monai``,
#: about 7 GB); the same file MONAI's ``DecathlonDataset`` downloads.
DEFAULT_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task01_BrainTumour.tar"
TASK = "Task01_BrainTumour"
#: MD5 of the tar at :data:`DEFAULT_URL`, as published in MONAI (``monai.apps.DecathlonDataset.md5``);
#: checked whenever that URL is used and no ``sha256`` is given.
KNOWN_MD5 = {DEFAULT_URL: "240a19d752f0d9e9101544901065d872"}
_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """The downloaded archive does not have the expected checksum."""


def _download(url: str, dest: Path, progress: bool) -> dict[str, str]:
    """Stream ``url`` into ``dest``; returns the ``sha256`` and ``md5`` hex digests of what was written."""
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"download {TASK}", disable=not progress)
        with bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                for d in digests.values():
                    d.update(chunk)
                bar.update(len(chunk))
    return {name: d.hexdigest() for name, d in digests.items()}


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    # Stand-in for tarfile's "data" filter on Pythons that predate it: refuse anything that would land
    # outside ``dest`` (absolute paths, "..", links) or that is not a plain file or folder.
    target = (dest / member.name).resolve()
    if not target.is_relative_to(dest.resolve()) or not (member.isfile() or member.isdir()):
        raise ValueError(f"unsafe archive member {member.name!r}: refusing to unpack it")


def _extract(archive: Path, dest: Path, progress: bool) -> None:
    """Unpack a tar into ``dest``, one member at a time so that the progress bar moves."""
    dest.mkdir()
    bar = tqdm(desc=f"unpack {TASK}", unit=" files", disable=not progress)
    with tarfile.open(archive) as tar, bar:
        for member in tar:
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, dest, filter="data")
            else:  # pragma: no cover - Python without PEP 706
                _check_member(member, dest)
                tar.extract(member, dest)
            bar.update()


def fetch_msd_task01(dest: str | Path, url: str = DEFAULT_URL, *, sha256: str | None = None,
                     progress: bool = True) -> Path:
    """Download the Task01 tar and unpack it to ``dest/Task01_BrainTumour``.

    An existing dataset folder is returned as it is, without opening ``url``.

    Args:
        dest: parent folder (created if needed).
        url: where to download from (``file://`` works too).
        sha256: expected SHA-256 of the tar. When ``None`` and ``url`` is :data:`DEFAULT_URL`, the
            published MD5 (:data:`KNOWN_MD5`) is checked instead.
        progress: show progress bars.

    Returns:
        The dataset root, holding ``imagesTr``, ``labelsTr``, ``imagesTs`` and ``dataset.json``.

    Raises:
        ChecksumError: the download does not match ``sha256`` (or the known MD5); nothing is kept.
        ValueError: the archive holds no ``imagesTr`` folder, or an unsafe member; nothing is kept.
        FileExistsError: ``dest/Task01_BrainTumour`` exists but is not a dataset (it is left alone).
        urllib.error.URLError: the download fails; nothing is kept.
    """
    dest = Path(dest)
    root = dest / TASK
    if (root / "imagesTr").is_dir():
        return root
    if root.exists():
        if not root.is_dir() or any(root.iterdir()):
            raise FileExistsError(f"{root} exists but holds no imagesTr folder; move it away and run again")
        root.rmdir()  # an empty folder is nobody's data
    dest.mkdir(parents=True, exist_ok=True)
    # The temporary folder sits in ``dest`` so that the final rename stays on one file system.
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{TASK}.") as tmp:
        archive, unpacked = Path(tmp) / f"{TASK}.tar", Path(tmp) / "unpacked"
        got = _download(url, archive, progress)
        expected = ("sha256", sha256.lower()) if sha256 else ("md5", KNOWN_MD5.get(url))
        if expected[1] is not None and got[expected[0]] != expected[1]:
            raise ChecksumError(f"{expected[0]} checksum of {url} is {got[expected[0]]}, expected "
                                f"{expected[1]}: the download is corrupt or not {TASK}")
        _extract(archive, unpacked, progress)
        archive.unlink()  # 7 GB less on disk before the rename
        # The official tar holds Task01_BrainTumour/...; accept an archive of its content too.
        found = unpacked / TASK if (unpacked / TASK).is_dir() else unpacked
        if not (found / "imagesTr").is_dir():
            raise ValueError(f"{url} holds no {TASK}/imagesTr folder: it is not the MSD Task01 archive")
        os.replace(found, root)
    return root
