"""Low-level I/O: the in-memory case, validated image loading and atomic writes.

Every error raised while reading data is a :class:`CaseError` (or a subclass) whose message names the
case and the file, so that a failure deep inside a 300-case conversion says exactly what to fix.
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from mmdis.conventions import MODALITIES
from mmdis.runtime.files import atomic_path

#: The most voxels one volume may claim in its header (2^28, 1 GiB as float32; BraTS has 8.9 million):
#: a corrupt header cannot make the reader allocate more.
MAX_VOXELS = 1 << 28


class CaseError(ValueError):
    """A case cannot be read or fails validation. The message names the case and the file."""


class MissingModalityError(CaseError):
    """A modality file is absent and the caller did not allow missing modalities."""


class GeometryError(CaseError):
    """Shapes or affines of a case's volumes disagree."""


class IntensityError(CaseError):
    """A volume holds non-finite voxels, or the brain is empty."""


class CorruptFileError(CaseError):
    """A file cannot be decoded (truncated, not an image, wrong format)."""


@dataclass
class RawCase:
    """One case as read from disk, before preprocessing.

    Attributes:
        case_id: identifier, e.g. ``"BraTS2021_00000"``.
        layout: the layout it was read from (``"brats2021"``, ``"msd"``, ...).
        images: modality name -> float32 volume of shape ``(X, Y, Z)``; only present modalities.
        label: canonical labels ``uint8 (X, Y, Z)``, or ``None`` for an unlabelled case.
        affine: 4x4 voxel-to-world matrix shared by all volumes.
        brain_mask: ``bool (X, Y, Z)`` when the dataset ships one, else ``None`` (derived later).
        zscored: ``True`` when the images are already normalised within the brain.
        label_convention: the dataset's label numbering, used to write predictions back.
        sources: the files each volume came from, for error messages and the manifest.
    """

    case_id: str
    layout: str
    images: dict[str, np.ndarray]
    label: np.ndarray | None
    affine: np.ndarray
    label_convention: str
    brain_mask: np.ndarray | None = None
    zscored: bool = False
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def available(self) -> tuple[bool, ...]:
        """Availability mask in :data:`~mmdis.conventions.MODALITIES` order."""
        return tuple(m in self.images for m in MODALITIES)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(next(iter(self.images.values())).shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore


def load_nifti(path: str | Path, case_id: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI volume fully, turning every decoding problem into a :class:`CorruptFileError`.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        case_id: named in error messages.
        what: what the file should hold (``"flair"``, ``"label"``), named in error messages.

    Returns:
        ``(data, affine)``: data as ``float32`` (any dimensionality), affine ``(4, 4)``.

    Raises:
        MissingModalityError: the file does not exist.
        CorruptFileError: the file is truncated or not a NIfTI image.
        IntensityError: the volume holds NaN or infinite voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingModalityError(f"case {case_id}: {what} file {path} does not exist")
    try:
        img = nib.load(str(path))
        shape = tuple(int(n) for n in img.shape)
        voxels = float(np.prod(shape, dtype=np.float64))
        if voxels > MAX_VOXELS:
            raise CorruptFileError(f"case {case_id}: the header of {what} file {path} claims shape {shape} "
                                   f"({voxels:.3g} voxels, more than {MAX_VOXELS}); the file is corrupt or "
                                   "not a brain MRI")
        data = np.asarray(img.dataobj, dtype=np.float32)
        affine = np.asarray(img.affine, dtype=np.float64)
    except CaseError:
        raise
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile,
            nib.filebasedimages.ImageFileError) as exc:
        raise CorruptFileError(
            f"case {case_id}: cannot read {what} file {path} ({type(exc).__name__}: {exc})"
        ) from exc
    check_finite(data, case_id, path)
    return data, affine


def load_mha(path: str | Path, case_id: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a MetaImage (``.mha``) volume with SimpleITK, returned in NIfTI (x, y, z) order.

    SimpleITK is an optional dependency (``pip install mmdis[mha]``); BraTS 2015 ships ``.mha``.
    The affine is built in LPS (ITK's convention) and flipped to RAS, as nibabel expects.
    """
    try:
        import SimpleITK as sitk
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"case {case_id}: reading {path} needs SimpleITK; install it with `pip install mmdis[mha]`"
        ) from exc
    path = Path(path)
    if not path.is_file():
        raise MissingModalityError(f"case {case_id}: {what} file {path} does not exist")
    try:
        img = sitk.ReadImage(str(path))
        data = np.ascontiguousarray(sitk.GetArrayFromImage(img).astype(np.float32).transpose(2, 1, 0))
    except RuntimeError as exc:
        raise CorruptFileError(f"case {case_id}: cannot read {what} file {path} ({exc})") from exc
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(img.GetSpacing())[None, :]
    affine[:3, 3] = img.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS -> RAS
    check_finite(data, case_id, path)
    return data, affine


def check_finite(data: np.ndarray, case_id: str, path: str | Path) -> None:
    """Raise :class:`IntensityError` naming the file if ``data`` has NaN or infinite voxels."""
    bad = ~np.isfinite(data)
    if bad.any():
        raise IntensityError(
            f"case {case_id}: {path} has {int(bad.sum())} non-finite voxels (NaN or inf)"
        )


def informative_images(images: dict[str, np.ndarray], sources: dict[str, str], case_id: str,
                       allow_missing: bool) -> dict[str, np.ndarray]:
    r"""The volumes of a case that carry an image; an all-zero or constant sequence counts as missing.

    A volume is uninformative when it is constant everywhere (all zeros: an empty export) or constant
    inside the brain that the other sequences show (a mask saved as an image). Kept as data it would be
    z-scored to zeros and fused as if it were a scan, and a non-zero constant would make the whole volume
    count as brain. With ``allow_missing`` it is dropped with a warning (it becomes a missing modality,
    :math:`\delta_i = 0`); otherwise it is refused.

    Args:
        images: modality -> volume ``(X, Y, Z)``.
        sources: modality -> file, for the messages.
        case_id: named in the messages.
        allow_missing: drop (and warn) instead of raising.

    Returns:
        ``images`` without the uninformative volumes.

    Raises:
        MissingModalityError: naming the file, if a volume is uninformative and ``allow_missing`` is
            False, or if no volume is left.
    """
    why = {m: f"constant ({float(v.flat[0]):g} everywhere)" for m, v in images.items() if v.min() == v.max()}
    rest = [v for m, v in images.items() if m not in why]
    if rest:
        brain = np.logical_or.reduce([v != 0 for v in rest])
        for m in (m for m in images if m not in why):
            inside = images[m][brain]
            if inside.size and inside.min() == inside.max():
                why[m] = f"constant inside the brain ({float(inside[0]):g})"
    if not why:
        return images
    named = "; ".join(f"{sources.get(m, m)} is {reason}" for m, reason in why.items())
    if not allow_missing:
        raise MissingModalityError(f"case {case_id}: {named}: it carries no image (allow missing modalities "
                                   "to treat it as missing)")
    kept = {m: v for m, v in images.items() if m not in why}
    if not kept:
        raise MissingModalityError(f"case {case_id}: no sequence carries an image: {named}")
    warnings.warn(f"case {case_id}: {named}; treated as missing", stacklevel=2)
    return kept


def check_same_geometry(
    shapes: dict[str, tuple[int, ...]],
    affines: dict[str, np.ndarray],
    case_id: str,
    sources: dict[str, str],
    atol: float = 1e-3,
) -> None:
    """Raise :class:`GeometryError` if the volumes of a case differ in shape or affine.

    Args:
        shapes: volume name -> spatial shape.
        affines: volume name -> 4x4 affine.
        case_id: named in the message.
        sources: volume name -> file path, named in the message.
        atol: tolerance on affine entries (mm), for float rounding in headers.
    """
    names = list(shapes)
    ref = names[0]
    for name in names[1:]:
        if tuple(shapes[name]) != tuple(shapes[ref]):
            raise GeometryError(
                f"case {case_id}: shape {tuple(shapes[name])} of {sources.get(name, name)} differs "
                f"from shape {tuple(shapes[ref])} of {sources.get(ref, ref)}"
            )
        if not np.allclose(affines[name], affines[ref], atol=atol):
            raise GeometryError(
                f"case {case_id}: the affine of {sources.get(name, name)} differs from that of "
                f"{sources.get(ref, ref)}"
            )


def save_nifti(data: np.ndarray, affine: np.ndarray, path: str | Path, dtype=None,
               description: str = "") -> Path:
    """Write a NIfTI file atomically (temporary file, then rename); ``description`` goes into the
    header's ``descrip`` field (79 characters at most). Returns the path."""
    path = Path(path)
    arr = np.asarray(data if dtype is None else data.astype(dtype))
    img = nib.Nifti1Image(arr, affine)
    if description:
        img.header["descrip"] = description[:79].encode("ascii", "replace")
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:  # the temporary ends in the suffix nibabel reads
        nib.save(img, str(tmp))
    return path
