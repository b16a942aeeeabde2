"""Preprocessing as the paper describes it: crop to the brain, z-score within the brain, and undo both.

The paper (section 3) normalises each volume "to zero mean and unit variance within the brain tissue
area" and trains on 80^3 crops. We also crop to the brain's bounding box (as the authors' evaluation
does) and remember the crop, so that any prediction can be pasted back onto the original grid and
affine (:func:`restore_prediction`). Resampling to a target spacing is optional.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from mmdis.conventions import MODALITIES, NUM_MODALITIES
from mmdis.data.io import IntensityError, RawCase


@dataclass(frozen=True)
class CropInfo:
    """Everything needed to map a preprocessed volume back onto the source grid.

    Attributes:
        original_shape: spatial shape of the source volumes ``(X, Y, Z)``.
        affine: the source affine (4x4, as nested lists for JSON).
        start: first voxel of the brain bounding box per axis (inclusive).
        stop: last voxel + 1 per axis (exclusive).
        original_spacing: voxel size of the source in mm.
        spacing: voxel size of the preprocessed volume in mm (== original unless resampled).
        shape: spatial shape of the preprocessed volume.
    """

    original_shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]
    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    original_spacing: tuple[float, float, float]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]

    @property
    def cropped_shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.start, self.stop))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CropInfo:
        return cls(**{k: _tuplify(v) for k, v in d.items()})


def _tuplify(v):
    return tuple(_tuplify(x) for x in v) if isinstance(v, list | tuple) else v


@dataclass
class PreprocessedCase:
    """A case ready for the network.

    Attributes:
        case_id: identifier.
        image: ``float32 (M, D, H, W)`` in :data:`~mmdis.conventions.MODALITIES` order, z-scored
            within the brain; a missing modality's channel is zero and flagged in ``available``.
        available: ``bool (M,)``; which modalities exist for this case.
        label: canonical labels ``uint8 (D, H, W)`` or ``None``.
        mask: brain mask ``bool (D, H, W)``.
        crop: how to map back to the source grid.
        label_convention: the source dataset's label numbering.
    """

    case_id: str
    image: np.ndarray
    available: np.ndarray
    label: np.ndarray | None
    mask: np.ndarray
    crop: CropInfo
    label_convention: str


def brain_mask_from_images(images: dict[str, np.ndarray], case_id: str = "?") -> np.ndarray:
    """Brain mask of a skull-stripped case: voxels non-zero in any available modality.

    BraTS and MSD volumes are skull-stripped with exactly zero background, so this is the mask the
    field uses. Raises :class:`IntensityError` if it is empty.
    """
    mask = np.zeros(next(iter(images.values())).shape, dtype=bool)
    for modality, vol in images.items():
        check_zero_background(vol, case_id, modality)
        mask |= vol != 0
    if not mask.any():
        raise IntensityError(f"case {case_id}: the brain is empty (every voxel of every modality is 0)")
    return mask


def check_zero_background(volume: np.ndarray, case_id: str = "?", what: str = "image") -> None:
    """Refuse a volume whose background is one non-zero constant: it is not skull-stripped with a zero
    background (most often it was z-scored already, so its background is the mean's negative, e.g. -3.19),
    and the brain mask derived from non-zero voxels would be the whole volume. The background is judged
    by the volume's eight corners (outside the head in any brain MRI): equal, non-zero, and the value of
    more than 5 % of the voxels.

    Raises:
        IntensityError: naming the case, the volume and the background value, with what to do.
    """
    corners = volume[np.ix_(*[[0, -1]] * volume.ndim)].ravel()
    if (corners.size and corners[0] != 0 and np.all(corners == corners[0])
            and np.count_nonzero(volume == corners[0]) > 0.05 * volume.size):
        raise IntensityError(
            f"case {case_id}: the background of {what} is the constant {float(corners[0]):.4g}, not 0, so "
            "the brain cannot be told from it; the volume looks z-scored already: give its brain mask "
            "(mmdis predict: --zscored --mask BRAIN.nii.gz) or a skull-stripped volume with a zero "
            "background")


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(start, stop)`` of the smallest box holding ``mask``, grown by ``margin`` voxels (clipped)."""
    if not mask.any():
        raise ValueError("bounding_box: mask is empty")
    start, stop = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        start.append(max(int(idx[0]) - margin, 0))
        stop.append(min(int(idx[-1]) + 1 + margin, mask.shape[axis]))
    return tuple(start), tuple(stop)


def crop(volume: np.ndarray, start, stop) -> np.ndarray:
    """Crop the last three axes of ``volume`` to ``[start, stop)``."""
    sl = tuple(slice(a, b) for a, b in zip(start, stop))
    return volume[(..., *sl)]


def uncrop(volume: np.ndarray, start, stop, original_shape, fill=0) -> np.ndarray:
    """Paste ``volume`` (``(..., d, h, w)``) back into an array of spatial shape ``original_shape``."""
    expected = tuple(b - a for a, b in zip(start, stop))
    if tuple(volume.shape[-3:]) != expected:
        raise ValueError(f"uncrop: volume shape {volume.shape[-3:]} does not match the crop {expected}")
    out = np.full((*volume.shape[:-3], *original_shape), fill, dtype=volume.dtype)
    sl = tuple(slice(a, b) for a, b in zip(start, stop))
    out[(..., *sl)] = volume
    return out


def zscore(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    r"""Normalise to zero mean and unit variance inside the brain; zero outside.

    .. math:: \hat x_j = (x_j - \mu_\Omega) / \sigma_\Omega \quad (j \in \Omega),\qquad
              \hat x_j = 0 \quad (j \notin \Omega)

    where :math:`\Omega` is the brain mask. A constant image (σ = 0) becomes zero inside the brain.
    """
    values = image[mask].astype(np.float64)
    mean = values.mean()
    std = values.std()
    out = np.zeros(image.shape, dtype=np.float32)
    out[mask] = ((values - mean) / std) if std > 0 else 0.0
    return out


def resize(volume: np.ndarray, out_shape, order: int) -> np.ndarray:
    """Resample the last three axes of ``volume`` to ``out_shape`` exactly (voxel centres aligned).

    ``order=1`` (trilinear) for images, ``order=0`` (nearest) for labels and masks.
    """
    in_shape = volume.shape[-3:]
    if tuple(in_shape) == tuple(out_shape):
        return volume.copy()
    coords = np.meshgrid(
        *[(np.arange(o) + 0.5) * (i / o) - 0.5 for i, o in zip(in_shape, out_shape)], indexing="ij"
    )
    coords = np.stack(coords)  # (3, D', H', W')

    def one(v):
        return ndimage.map_coordinates(v, coords, order=order, mode="nearest").astype(v.dtype)

    if volume.ndim == 3:
        return one(volume)
    return np.stack([one(v) for v in volume])


def preprocess_case(
    raw: RawCase, target_spacing: float | tuple[float, float, float] | None = None, margin: int = 0
) -> PreprocessedCase:
    """Crop to the brain, optionally resample, and z-score each available modality in the brain.

    Args:
        raw: a case from :func:`mmdis.data.layouts.read_case`.
        target_spacing: isotropic mm (or per-axis tuple) to resample to; ``None`` keeps the grid.
        margin: voxels of background kept around the brain's bounding box.

    Returns:
        A :class:`PreprocessedCase` with ``image`` of shape ``(4, D, H, W)``.
    """
    mask = raw.brain_mask if raw.brain_mask is not None else brain_mask_from_images(raw.images, raw.case_id)
    if not mask.any():
        raise IntensityError(f"case {raw.case_id}: the brain mask is empty")
    start, stop = bounding_box(mask, margin)
    mask_c = crop(mask, start, stop)
    images = {m: crop(v, start, stop) for m, v in raw.images.items()}
    if raw.brain_mask is not None:
        # A shipped mask may leave a non-zero background (the authors' z-scored files hold their minimum
        # there); zero it first so that resampling does not blend it into the edge of the brain.
        images = {m: np.where(mask_c, v, 0).astype(v.dtype) for m, v in images.items()}
    label = crop(raw.label, start, stop) if raw.label is not None else None

    spacing = raw.spacing
    new_spacing = spacing
    if target_spacing is not None:
        if np.isscalar(target_spacing):
            ts = (float(target_spacing),) * 3
        else:
            ts = tuple(float(t) for t in target_spacing)
        out_shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(mask_c.shape, spacing, ts))
        new_spacing = tuple(n * s / o for n, s, o in zip(mask_c.shape, spacing, out_shape))
        images = {m: resize(v, out_shape, order=1) for m, v in images.items()}
        mask_c = resize(mask_c.astype(np.uint8), out_shape, order=0).astype(bool)
        if label is not None:
            label = resize(label, out_shape, order=0)

    stack = np.zeros((NUM_MODALITIES, *mask_c.shape), dtype=np.float32)  # (M, D, H, W)
    for i, m in enumerate(MODALITIES):
        if m in images:
            stack[i] = images[m].astype(np.float32) if raw.zscored else zscore(images[m], mask_c)
            if raw.zscored:
                stack[i][~mask_c] = 0.0
    info = CropInfo(
        original_shape=tuple(int(n) for n in mask.shape),
        affine=tuple(tuple(float(x) for x in row) for row in raw.affine),
        start=tuple(start),
        stop=tuple(stop),
        original_spacing=tuple(float(s) for s in spacing),
        spacing=tuple(float(s) for s in new_spacing),
        shape=tuple(int(n) for n in mask_c.shape),
    )
    return PreprocessedCase(
        case_id=raw.case_id,
        image=stack,
        available=np.array(raw.available, dtype=bool),
        label=None if label is None else label.astype(np.uint8),
        mask=mask_c,
        crop=info,
        label_convention=raw.label_convention,
    )


def restore_prediction(pred: np.ndarray, crop_info: CropInfo) -> np.ndarray:
    """Map a prediction on the preprocessed grid back onto the source grid ("un-crop").

    Args:
        pred: ``(D, H, W)`` labels (nearest-neighbour resampling) or ``(K, D, H, W)`` scores
            (trilinear) on the preprocessed grid.
        crop_info: the :class:`CropInfo` of the case.

    Returns:
        The same kind of array with spatial shape ``crop_info.original_shape``; zero outside the crop.
    """
    if tuple(pred.shape[-3:]) != tuple(crop_info.shape):
        raise ValueError(
            f"restore_prediction: prediction shape {pred.shape[-3:]} differs from the preprocessed "
            f"shape {crop_info.shape}"
        )
    if pred.ndim == 3 and tuple(crop_info.shape) != tuple(crop_info.cropped_shape):
        # Labels: resample one-hot maps trilinearly and take the arg-max, which follows region
        # boundaries more closely than nearest-neighbour and keeps the label values.
        values = np.unique(pred)
        onehot = np.stack([(pred == v).astype(np.float32) for v in values])  # (V, D, H, W)
        back = values[resize(onehot, crop_info.cropped_shape, order=1).argmax(axis=0)].astype(pred.dtype)
    else:
        back = resize(pred, crop_info.cropped_shape, order=0 if pred.ndim == 3 else 1)
    return uncrop(back, crop_info.start, crop_info.stop, crop_info.original_shape)
