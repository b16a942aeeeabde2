"""One cached case on disk: writing it atomically, reading it back checked, and fingerprints.

See :mod:`mmdis.data.cache` for the folder layout. A case folder ``cases/<case_id>/`` holds
``image.npy`` ``float32 (M, D, H, W)``, ``mask.npy`` ``bool (D, H, W)``, ``label.npy`` ``uint8 (D, H, W)``
(labelled cases) and ``meta.json``. Arrays are read with ``allow_pickle=False``, and every failure to read
one names the case and the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmdis.conventions import MODALITIES
from mmdis.data.io import CaseError
from mmdis.data.preprocess import CropInfo, PreprocessedCase
from mmdis.runtime.files import atomic_path


def checksum_of(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def source_fingerprint(paths: Sequence[str | Path], case_id: str = "?") -> str:
    """A hash of the resolved path, size and modification time of every source file of a case.

    Editing, replacing, adding or removing any of them (a fixed label, a sequence that was missing)
    changes the fingerprint, so :func:`~mmdis.data.cache.prepare` rebuilds the case instead of reusing
    its old arrays.

    Raises:
        CaseError: naming the file, if one cannot be resolved or read (a symlink loop, a broken link).
    """
    items = []
    for path in sorted({str(p) for p in paths}):
        try:
            resolved = Path(path).resolve(strict=True)
            stat = resolved.stat()
        except (OSError, RuntimeError) as exc:
            raise CaseError(f"case {case_id}: cannot read {path} ({type(exc).__name__}: {exc})") from None
        items.append([str(resolved), stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()[:16]


def source_files(files) -> list[Path]:
    """Every file a :class:`~mmdis.data.layouts.CaseFiles` is read from."""
    return [*files.images.values(), *(p for p in (files.label, files.brain_mask) if p is not None)]


def write_cached_case(case: PreprocessedCase, cases_dir: Path, key: dict, source: str = "",
                      fingerprint: str = "") -> dict:
    """Write one case into ``cases_dir/<case_id>/`` atomically and return its manifest entry."""
    final = Path(cases_dir) / case.case_id
    with atomic_path(final) as tmp:
        tmp.mkdir()
        np.save(tmp / "image.npy", case.image.astype(np.float32))
        np.save(tmp / "mask.npy", case.mask.astype(bool))
        if case.label is not None:
            np.save(tmp / "label.npy", case.label.astype(np.uint8))
        arrays = [tmp / "image.npy"] + ([tmp / "label.npy"] if case.label is not None else [])
        meta = {
            "case_id": case.case_id,
            "available": [bool(a) for a in case.available],
            "modalities": [m for m, a in zip(MODALITIES, case.available) if a],
            "labelled": case.label is not None,
            "label_convention": case.label_convention,
            "crop": case.crop.to_dict(),
            "preprocessing": key,
            "source": source,
            "source_fingerprint": fingerprint,
            "checksum": checksum_of(*arrays),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return manifest_entry(meta)


def manifest_entry(meta: dict) -> dict:
    crop = meta["crop"]
    return {
        "case_id": meta["case_id"],
        "modalities": meta["modalities"],
        "available": meta["available"],
        "labelled": meta["labelled"],
        "shape": list(crop["shape"]),
        "spacing": list(crop["spacing"]),
        "checksum": meta["checksum"],
        "source": meta.get("source", ""),
        "source_fingerprint": meta.get("source_fingerprint", ""),
    }


def load_cached_case(cache_dir: str | Path, case_id: str, mmap: bool = True,
                     checksum: str | None = None) -> PreprocessedCase:
    """Read one cached case; arrays are memory-mapped unless ``mmap=False``.

    Args:
        cache_dir: the cache folder.
        case_id: the case to read.
        mmap: memory-map the arrays.
        checksum: the manifest's checksum of the case; when given, the arrays are hashed and compared.

    Raises:
        FileNotFoundError: the case folder or its ``meta.json`` is missing.
        CaseError: naming the case and file, for an unreadable, truncated or non-numeric array, or a
            checksum that no longer matches (the arrays were changed after ``prepare``).
    """
    d = Path(cache_dir) / "cases" / case_id
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"case {case_id}: {meta_path} does not exist (was the cache prepared?)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CaseError(f"case {case_id}: {meta_path} is not valid JSON ({exc})") from None
    names = ["image", "mask"] + (["label"] if meta.get("labelled") else [])
    if checksum is not None:
        arrays = [d / "image.npy"] + ([d / "label.npy"] if meta.get("labelled") else [])
        missing = [p for p in arrays if not p.is_file()]
        if missing:
            raise CaseError(f"case {case_id}: {missing[0]} is missing from the cache; prepare it again")
        if checksum_of(*arrays) != checksum:
            raise CaseError(f"case {case_id}: the arrays in {d} no longer match the manifest checksum (they "
                            "were changed after `mmdis prepare`); prepare the cache again")
    loaded = {name: _load_array(d / f"{name}.npy", case_id, mmap) for name in names}
    return PreprocessedCase(
        case_id=case_id,
        image=loaded["image"],
        available=np.array(meta["available"], dtype=bool),
        label=loaded.get("label"),
        mask=loaded["mask"],
        crop=CropInfo.from_dict(meta["crop"]),
        label_convention=meta["label_convention"],
    )


def _load_array(path: Path, case_id: str, mmap: bool) -> np.ndarray:
    """``np.load`` of one cached array (never a pickle), any failure named by case and file."""
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise CaseError(f"case {case_id}: {path} is missing from the cache; prepare it again") from None
    except (ValueError, OSError, EOFError) as exc:
        raise CaseError(f"case {case_id}: {path} cannot be read (truncated, or not a numeric array: "
                        f"{exc}); prepare the cache again") from None
    if arr.dtype.kind not in "biuf":
        raise CaseError(f"case {case_id}: {path} holds {arr.dtype} values, not numbers")
    return arr


def manifest_checksums(cache_dir: str | Path) -> dict[str, str]:
    """Case id -> checksum from ``cache_dir/manifest.json`` (empty when there is no manifest, e.g. for
    hand-written test cases), for :func:`load_cached_case` to verify against."""
    path = Path(cache_dir) / "manifest.json"
    if not path.is_file():
        return {}
    return {e["case_id"]: e["checksum"] for e in json.loads(path.read_text()).get("cases", [])}
