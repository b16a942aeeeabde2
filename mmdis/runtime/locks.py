"""One writer at a time: an exclusive lock file per folder that several processes could write.

``mmdis reproduce`` waits for its work folder's lock (two notebooks take turns); ``mmdis train`` and
``mmdis prepare`` refuse at once when their run or cache folder is locked, since a second writer would mix
one run's config with another's weights. The lock is ``fcntl.flock`` on ``FOLDER/.lock``: the kernel
releases it when the holder exits, however it exits (a kill included), so a stale lock never blocks.
The holder's process id is written into the file for the refusal message, and the file is removed when
the lock is released.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Name of the lock file inside a locked folder.
LOCK_NAME = ".lock"


class FolderLockedError(ValueError):
    """Another process holds the folder's lock (a ``ValueError``: the CLI prints it on one line)."""


@contextmanager
def folder_lock(folder: str | Path, what: str, wait: bool = False) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if needed) for the duration of the block.

    The lock file is removed on release, and the folder too when this call created it and it is empty
    then, so a refused or failed command leaves the tree as it found it. A holder checks after locking
    that the file it locked is still the one at the path (another holder may have just removed it), and
    tries again if not.

    Args:
        folder: the folder to guard; its lock file is ``folder/.lock``.
        what: how the folder is named in a refusal, e.g. ``"--run-dir"``.
        wait: block until the other holder is done instead of refusing.

    Yields:
        The lock file's path.

    Raises:
        FolderLockedError: when ``wait`` is False and another process holds the lock; the message names
            the folder and, where it wrote it, that process's id.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    try:
        handle = _acquire(path, what, folder, wait)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield path
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
    finally:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _acquire(path: Path, what: str, folder: Path, wait: bool):
    """An open handle on ``path`` holding its exclusive lock (see :func:`folder_lock`)."""
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise FolderLockedError(
                f"{what} {folder} is being written by another process (pid {holder}); wait for it to "
                "finish or choose another folder") from None
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()  # the previous holder removed the file we locked: lock the new one
