"""Load and validate one case (:func:`read_case`) or every case of a folder (:func:`load_dataset`) into
:class:`~mmdis.data.io.RawCase` objects with canonical labels (see :mod:`mmdis.conventions`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mmdis.conventions import MODALITIES, NUM_MODALITIES, to_canonical
from mmdis.data.io import (
    CaseError,
    GeometryError,
    IntensityError,
    MissingModalityError,
    RawCase,
    check_same_geometry,
    informative_images,
    load_mha,
    load_nifti,
)
from mmdis.data.layouts.registry import discover_cases
from mmdis.data.layouts.walk import CaseFiles


def _binary_mask(data: np.ndarray, case_id: str, path: Path) -> np.ndarray:
    """A shipped brain mask as ``bool``: it must hold two values (0 and one other) and some brain."""
    values = np.unique(data)
    if values.size > 2 or (values.size == 2 and values[0] != 0 and values[1] != 0):
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise CaseError(f"case {case_id}: brain mask {path} must be binary (0 and 1), found values {shown}")
    mask = data != 0
    if not mask.any():
        raise IntensityError(f"case {case_id}: brain mask {path} is empty (every voxel is 0)")
    return mask


def _load(path: Path, case_id: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    data, affine = (load_mha if path.suffix == ".mha" else load_nifti)(path, case_id, what)
    return data, affine


def _as_3d(data: np.ndarray, case_id: str, path: Path) -> np.ndarray:
    # Some converters write (X, Y, Z, 1); a genuine fourth axis is an error, not something to guess about.
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise GeometryError(f"case {case_id}: {path} must be a 3-D volume, got shape {data.shape}")
    return data


def read_case(files: CaseFiles, allow_missing: bool = False) -> RawCase:
    """Load and validate one case.

    Args:
        files: from :func:`discover_cases`.
        allow_missing: keep a case that lacks some modality (it is left out of ``images``, never
            zero-filled); otherwise that raises. At least one modality must exist either way.

    Returns:
        The case with ``float32 (X, Y, Z)`` images per present modality and a canonical ``uint8
        (X, Y, Z)`` label (or ``None``).

    Raises:
        MissingModalityError: a modality file is missing (and not allowed), or no modality exists.
        GeometryError: shapes or affines differ between the case's volumes; an MSD image is not
            ``(X, Y, Z, 4)``.
        IntensityError: non-finite voxels, every image voxel is zero (an empty brain), or a shipped
            brain mask is empty.
        CorruptFileError: a file cannot be decoded.
        LabelError: label values outside the dataset's label set.
        CaseError: the layout ships a brain mask and this case's is missing or not binary.
    """
    cid = files.case_id
    expected_files = files.expected or {}
    missing = [m for m in MODALITIES if m not in files.images]
    if missing and not allow_missing:
        where = ", ".join(f"{m} ({expected_files.get(m, '?')})" for m in missing)
        raise MissingModalityError(f"case {cid}: missing modality file(s): {where}")
    if not files.images:
        expected = ", ".join(str(expected_files[m]) for m in MODALITIES if m in expected_files)
        raise MissingModalityError(f"case {cid}: no modality file found (expected {expected})")
    if files.brain_mask is None and "brain_mask" in expected_files:
        raise CaseError(f"case {cid}: brain mask file {expected_files['brain_mask']} does not exist "
                        f"(the {files.layout} layout ships one per case)")
    images, shapes, affines, sources = {}, {}, {}, {}
    if files.channels is not None:  # MSD: one 4-D file holds every modality
        path = next(iter(files.images.values()))
        data, affines["image"] = _load(path, cid, "4-D image")
        if data.ndim != 4 or data.shape[-1] != NUM_MODALITIES:
            raise GeometryError(f"case {cid}: {path} must be 4-D (X, Y, Z, {NUM_MODALITIES}) with channels "
                                f"FLAIR, T1w, T1gd, T2w; got shape {data.shape}")
        images = {m: np.ascontiguousarray(data[..., files.channels[m]]) for m in MODALITIES}  # (X, Y, Z)
        shapes["image"] = data.shape[:3]
        sources = {"image": str(path), **dict.fromkeys(MODALITIES, str(path))}
    else:
        for m in (m for m in MODALITIES if m in files.images):
            path = files.images[m]
            data, affines[m] = _load(path, cid, m)
            images[m] = _as_3d(data, cid, path)
            shapes[m], sources[m] = images[m].shape, str(path)
    raw_mask = None
    if files.brain_mask is not None:  # checked against the images' geometry like any other volume
        raw_mask, affines["brain_mask"] = _load(files.brain_mask, cid, "brain mask")
        raw_mask = _as_3d(raw_mask, cid, files.brain_mask)
        shapes["brain_mask"], sources["brain_mask"] = raw_mask.shape, str(files.brain_mask)
    raw_label = None
    if files.label is not None:
        raw_label, affines["label"] = _load(files.label, cid, "label")
        raw_label = _as_3d(raw_label, cid, files.label)
        shapes["label"], sources["label"] = raw_label.shape, str(files.label)
    check_same_geometry(shapes, affines, cid, sources)
    brain_mask = None if raw_mask is None else _binary_mask(raw_mask, cid, files.brain_mask)
    label = None
    if raw_label is not None:
        label = to_canonical(raw_label, files.label_convention, where=f"case {cid}: {files.label}")
    if not any(np.any(v != 0) for v in images.values()):
        read = ", ".join(sorted({sources[m] for m in images}))
        raise IntensityError(f"case {cid}: the brain is empty (every voxel of {read} is 0)")
    images = informative_images(images, sources, cid, allow_missing)
    return RawCase(cid, files.layout, images, label, next(iter(affines.values())), files.label_convention,
                   brain_mask=brain_mask, zscored=files.zscored, sources=sources)


def load_dataset(
    root: str | Path, layout: str | None = None, allow_missing: bool = False
) -> Iterator[RawCase]:
    """Yield every case of a folder as a :class:`~mmdis.data.io.RawCase`, in case-id order."""
    for files in discover_cases(root, layout):
        yield read_case(files, allow_missing=allow_missing)
