"""Atomic file writes: a file (or folder) appears under its final name complete, or not at all.

Every writer of the package (caches, checkpoints, predictions, tables, figures, executed notebooks) goes
through :func:`atomic_path`: it writes to a temporary sibling and renames it onto the final name only when
the block succeeds, so an interrupted or failed write never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only if the block succeeds.

    Works for files and directories. On any exception the temporary is removed, so an interrupted
    write never leaves a half-written ``final`` behind.

    Args:
        final: the path the result must have.
        suffix: the end of the temporary's name, after ``.tmp`` (e.g. ``.nii.gz`` or ``.ipynb`` for a
            writer that infers the format from the name): ``.<name>.<random>.tmp<suffix>``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and str(final) not in str(exc):
            # A full disk or a read-only folder: say which file could not be written.
            raise OSError(exc.errno, f"cannot write {final}: {exc.strerror or exc}") from exc
        raise


#: The name pattern of :func:`atomic_path`'s temporaries (``.<name>.<random>.tmp<suffix>``).
TEMPORARY_GLOB = ".*.*.tmp*"


def sweep_temporaries(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove what an interrupted writer (a kill, a power cut) left of :func:`atomic_path`'s temporaries.

    Call it only where no other process can be writing: inside the folder's lock
    (:func:`mmdis.runtime.locks.folder_lock`), or with ``name`` for one output only this caller writes.

    Args:
        folder: the folder to clean (not recursive); a missing folder is fine.
        name: only the temporaries of this final file name (e.g. ``seg.nii.gz``); default: all.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*.tmp*" if name else TEMPORARY_GLOB
    removed = []
    for path in folder.glob(pattern):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8). Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def save_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically, indented and with sorted keys; numpy scalars, arrays and paths are converted.

    Returns:
        ``path``.
    """
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
