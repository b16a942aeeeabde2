r"""Segmentation metrics per tumour region, with the HD95 definition and the empty-mask convention named.

Segmentation metrics are computed per tumour region :math:`r \in \{WT, TC, ET\}` (see
:data:`mmdis.conventions.REGIONS`) from a predicted mask :math:`P` and a true mask :math:`T`
(:math:`|\cdot|` counts voxels, :math:`\partial` takes the surface voxels):

.. math::

    \mathrm{Dice} = \frac{2|P \cap T|}{|P| + |T|}, \qquad
    \mathrm{Sensitivity} = \frac{|P \cap T|}{|T|}, \qquad
    \mathrm{Precision} = \frac{|P \cap T|}{|P|},

.. math::

    \mathrm{HD95} = \max\Big(q_{95}\{d(p, \partial T) : p \in \partial P\},\;
                             q_{95}\{d(t, \partial P) : t \in \partial T\}\Big),

where :math:`d(x, S)` is the Euclidean distance in millimetres (voxel spacing applied) from voxel :math:`x`
to the nearest voxel of :math:`S` and :math:`q_{95}` is the 95th percentile with linear interpolation. This
is exactly MONAI's ``compute_hausdorff_distance(..., percentile=95)``: the surface of a mask is the mask
minus its binary erosion (6-connected structuring element, voxels outside the volume count as
background), and the symmetric value is the larger of the two directed percentiles.

The HD95 above is the ``directed-max`` definition; ``pooled`` (the BraTS 2023+ evaluation's) takes one
percentile of both lists together. What every metric is when a mask is empty is a named convention,
``brats2018`` (the default: a ratio 0/0 is 1, HD95 0 for two empty masks and 373.13 mm when one is empty)
or ``brats2025`` (the ``brats-evaluation`` package's: NaN when both are empty, HD95 373 mm whenever the
masks share no voxel). Both choices, their sources and why the defaults are what they are, are in
:mod:`mmdis.metrics.definitions`; compare only numbers computed under the same choices (medpy's Dice is
0 for two empty masks, RFNet's epsilon form is about 1, which moves ET averages by points).

Reconstruction metrics are in :mod:`mmdis.metrics.reconstruction`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from mmdis.conventions import NUM_CLASSES, REGIONS
from mmdis.metrics.definitions import check_hd95_definition, get_empty_convention

#: Names of the per-region segmentation metrics, in report order.
SEGMENTATION_METRICS: tuple[str, ...] = ("dice", "sensitivity", "precision", "hd95")

Spacing = Sequence[float]


def _check_spacing(spacing: Spacing, ndim: int) -> np.ndarray:
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.shape != (ndim,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be {ndim} positive finite numbers (mm per axis), got {spacing!r}")
    return sp


def _check_labels(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3-D label array (D, H, W), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold integer canonical labels, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must hold integer canonical labels, found non-integer values")
    if arr.size and (arr.min() < 0 or arr.max() >= NUM_CLASSES):
        raise ValueError(
            f"{name} holds values in [{arr.min()}, {arr.max()}]; canonical labels lie in 0..{NUM_CLASSES - 1}"
        )
    return arr


def _check_masks(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pred has shape {pred.shape} but truth has shape {truth.shape}")
    return pred.astype(bool, copy=False), truth.astype(bool, copy=False)


def _ratio(num: int, den: int, zero_by_zero: float) -> float:
    # A ratio 0/0 takes the convention's value (1 under brats2018, NaN under brats2025).
    return zero_by_zero if den == 0 else num / den


def overlap_scores(pred: np.ndarray, truth: np.ndarray, empty: str = "brats2018") -> dict[str, float]:
    r"""Dice, sensitivity and precision of two binary masks.

    .. math::

        \mathrm{Dice} = \frac{2\,TP}{2\,TP + FP + FN},\quad
        \mathrm{sensitivity} = \frac{TP}{TP + FN},\quad
        \mathrm{precision} = \frac{TP}{TP + FP},

    with :math:`TP = |P \cap T|`, :math:`FP = |P \setminus T|`, :math:`FN = |T \setminus P|`; a ratio 0/0
    is 1 under ``brats2018`` and NaN under ``brats2025`` (:mod:`mmdis.metrics.definitions`).

    Args:
        pred: predicted mask, any shape, cast to bool.
        truth: true mask of the same shape.
        empty: the empty-mask convention.

    Returns:
        ``{"dice", "sensitivity", "precision"}`` as floats in [0, 1] (or NaN, see above).

    Raises:
        ValueError: if the shapes differ or the convention is unknown.
    """
    zero_by_zero = get_empty_convention(empty).zero_by_zero
    pred, truth = _check_masks(pred, truth)
    tp = int(np.count_nonzero(pred & truth))
    n_pred, n_truth = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    return {
        "dice": _ratio(2 * tp, n_pred + n_truth, zero_by_zero),
        "sensitivity": _ratio(tp, n_truth, zero_by_zero),
        "precision": _ratio(tp, n_pred, zero_by_zero),
    }


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a binary mask: the mask minus its 6-connected erosion (MONAI's edges).

    Voxels on the border of the array count as surface (outside is background).
    """
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask)


def union_box(pred: np.ndarray, truth: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    # Bounding box of pred | truth grown by `margin` and clipped to the array; every surface voxel and
    # every voxel whose erosion could differ from the full volume's lies inside it.
    union = pred | truth
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        idx = np.flatnonzero(union.any(axis=others))
        box.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, union.shape[axis])))
    return tuple(box)


def surface_distances(pred: np.ndarray, truth: np.ndarray,
                      spacing: Spacing = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    r"""The two directed lists of surface distances, in mm: :math:`D_{PT}` and :math:`D_{TP}`.

    Both masks are cropped to the bounding box of their union (plus one voxel), the surface of each is
    taken (:func:`surface`) and ``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing`` gives
    the exact distance from every voxel to the other mask's surface, so a 240 x 240 x 155 volume costs
    only as much as the tumour's box.

    Returns:
        ``(pred_to_truth, truth_to_pred)``: one distance per surface voxel of ``pred`` (to the surface of
        ``truth``), and one per surface voxel of ``truth``.

    Raises:
        ValueError: if either mask is empty, the shapes differ or the spacing is invalid.
    """
    pred, truth = _check_masks(pred, truth)
    sp = _check_spacing(spacing, pred.ndim)
    if not pred.any() or not truth.any():
        raise ValueError("surface distances need two non-empty masks")
    box = union_box(pred, truth)
    surf_pred, surf_truth = surface(pred[box]), surface(truth[box])
    # Distance of every voxel to the nearest surface voxel of the other mask (0 on that surface).
    to_truth = ndimage.distance_transform_edt(~surf_truth, sampling=sp)
    to_pred = ndimage.distance_transform_edt(~surf_pred, sampling=sp)
    return to_truth[surf_pred], to_pred[surf_truth]


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0), percentile: float = 95.0,
         definition: str = "directed-max", empty: str = "brats2018") -> float:
    r"""95th-percentile Hausdorff distance between two binary masks, in mm.

    .. math::

        \mathrm{HD95}_{\text{directed-max}} = \max\big(q_{95}(D_{PT}),\; q_{95}(D_{TP})\big), \qquad
        \mathrm{HD95}_{\text{pooled}} = q_{95}(D_{PT} \cup D_{TP}),

    with :math:`D_{PT}, D_{TP}` from :func:`surface_distances`. ``directed-max`` matches
    ``monai.metrics.compute_hausdorff_distance(..., percentile=95)``; ``pooled`` matches Panoptica's
    ``_compute_hausdorff_distance95`` as the ``brats-evaluation`` package calls it.

    Args:
        pred: predicted mask ``(D, H, W)``, cast to bool.
        truth: true mask of the same shape.
        spacing: voxel size in mm along the array's axes.
        percentile: which percentile of the surface distances (100 gives the Hausdorff distance).
        definition: ``directed-max`` or ``pooled`` (:data:`~mmdis.metrics.definitions.HD95_DEFINITIONS`).
        empty: the empty-mask convention, which decides the value when a mask is empty (and, under
            ``brats2025``, when the masks share no voxel).

    Returns:
        The distance in mm, or the convention's value for the edge cases (0, NaN, 373.13 or 373).

    Raises:
        ValueError: if the shapes differ, the spacing does not have one positive entry per axis, the
            percentile is outside [0, 100], or the definition or convention is unknown.
    """
    check_hd95_definition(definition)
    convention = get_empty_convention(empty)
    pred, truth = _check_masks(pred, truth)
    _check_spacing(spacing, pred.ndim)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return convention.hd95_both_empty
    if not has_pred or not has_truth:
        return convention.hd95_worst
    if convention.disjoint_is_worst and not (pred & truth).any():
        return convention.hd95_worst
    pred_to_truth, truth_to_pred = surface_distances(pred, truth, spacing)
    if definition == "pooled":
        return float(np.percentile(np.concatenate([pred_to_truth, truth_to_pred]), percentile))
    return float(max(np.percentile(pred_to_truth, percentile), np.percentile(truth_to_pred, percentile)))


def region_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0),
                   hd95_definition: str = "directed-max", empty: str = "brats2018") -> dict[str, float]:
    """Dice, sensitivity, precision and HD95 of one pair of binary masks (:func:`overlap_scores`,
    :func:`hd95`)."""
    return {**overlap_scores(pred, truth, empty),
            "hd95": hd95(pred, truth, spacing, definition=hd95_definition, empty=empty)}


def check_label_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays validated as 3-D canonical labels of one shape (errors name ``pred`` or ``truth``)."""
    pred = _check_labels(pred, "pred")
    truth = _check_labels(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred has shape {pred.shape} but truth has shape {truth.shape}")
    return pred, truth


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0),
                         hd95_definition: str = "directed-max",
                         empty: str = "brats2018") -> dict[str, dict[str, float]]:
    """Dice, sensitivity, precision and HD95 of WT, TC and ET for one case.

    Args:
        pred: predicted canonical labels ``(D, H, W)`` (0 background, 1 core, 2 edema, 3 enhancing).
        truth: true canonical labels, same shape.
        spacing: voxel size in mm along the three axes (for HD95).
        hd95_definition: ``directed-max`` (default, MONAI's) or ``pooled`` (BraTS 2023+).
        empty: the empty-mask convention, ``brats2018`` (default) or ``brats2025``.

    Returns:
        ``{region: {"dice", "sensitivity", "precision", "hd95"}}`` for region in WT, TC, ET; overlap
        metrics in [0, 1], HD95 in mm, edge cases scored by ``empty``.

    Raises:
        ValueError: naming ``pred`` or ``truth`` if it is not a 3-D array of canonical labels, if the
            shapes differ, if the spacing is not three positive numbers, or for an unknown option.
    """
    pred, truth = check_label_pair(pred, truth)
    _check_spacing(spacing, 3)
    check_hd95_definition(hd95_definition)
    get_empty_convention(empty)
    return {region: region_metrics(np.isin(pred, classes), np.isin(truth, classes), spacing,
                                   hd95_definition, empty)
            for region, classes in REGIONS.items()}
