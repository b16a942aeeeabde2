r"""Segmentation and reconstruction metrics, with one stated convention for empty masks.

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

Empty-mask convention (the BraTS challenge's, stated once and used everywhere in mmdis):

=======================  =====  ===========  =========  =================
case                     Dice   sensitivity  precision  HD95 (mm)
=======================  =====  ===========  =========  =================
both masks empty         1      1            1          0
truth empty, pred not    0      1            0          373.13 (worst case)
pred empty, truth not    0      0            1          373.13 (worst case)
=======================  =====  ===========  =========  =================

The rule behind the overlap columns is a single one: **a ratio 0/0 is 1**. Each ratio measures the absence
of one kind of error (sensitivity: no false negatives; precision: no false positives; Dice: neither), and
an empty denominator means that error cannot have happened. Ratios with a non-zero denominator are never
overridden, so "truth empty, prediction not" scores a false-positive-free sensitivity of 1 but a precision
and Dice of 0. HD95 is 0 when there is nothing to delineate and the BraTS worst case
(:data:`HD95_WORST_CASE_MM`, the diagonal of the 240 x 240 x 155 mm BraTS volume) when exactly one surface
is missing. Other repositories differ (medpy's Dice is 0 for two empty masks, RFNet's epsilon form is
about 1), which moves ET averages by points; compare only numbers computed under the same convention.

Reconstruction metrics are in :mod:`mmdis.metrics.reconstruction`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from mmdis.conventions import CORE, ENHANCING, NUM_CLASSES, REGIONS

#: HD95 (mm) when exactly one of prediction and truth is empty: the BraTS evaluation's worst case,
#: :math:`\sqrt{240^2 + 240^2 + 155^2}` rounded to 0.01 mm.
HD95_WORST_CASE_MM = 373.13
#: Predicted enhancing tumour smaller than this (in voxels) is relabelled by :func:`et_postprocess`.
ET_MIN_VOXELS = 500
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


def _ratio(num: int, den: int) -> float:
    # The module's convention: a ratio 0/0 is 1 (the error it measures could not happen).
    return 1.0 if den == 0 else num / den


def overlap_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    r"""Dice, sensitivity and precision of two binary masks.

    .. math::

        \mathrm{Dice} = \frac{2\,TP}{2\,TP + FP + FN},\quad
        \mathrm{sensitivity} = \frac{TP}{TP + FN},\quad
        \mathrm{precision} = \frac{TP}{TP + FP},

    with :math:`TP = |P \cap T|`, :math:`FP = |P \setminus T|`, :math:`FN = |T \setminus P|`; a ratio 0/0
    is 1 (module docstring).

    Args:
        pred: predicted mask, any shape, cast to bool.
        truth: true mask of the same shape.

    Returns:
        ``{"dice", "sensitivity", "precision"}`` as floats in [0, 1].

    Raises:
        ValueError: if the shapes differ.
    """
    pred, truth = _check_masks(pred, truth)
    tp = int(np.count_nonzero(pred & truth))
    n_pred, n_truth = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    return {
        "dice": _ratio(2 * tp, n_pred + n_truth),
        "sensitivity": _ratio(tp, n_truth),
        "precision": _ratio(tp, n_pred),
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


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0),
         percentile: float = 95.0) -> float:
    r"""Symmetric 95th-percentile Hausdorff distance between two binary masks, in mm.

    .. math::

        \mathrm{HD95} = \max\big(q_{95}\{d(p, \partial T)\}_{p \in \partial P},\;
                                 q_{95}\{d(t, \partial P)\}_{t \in \partial T}\big)

    Both masks are cropped to the bounding box of their union (plus one voxel), the surface of each is
    taken (:func:`surface`) and ``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing`` gives
    the exact distance from every voxel to the other mask's surface, so a 240 x 240 x 155 volume costs
    only as much as the tumour's box. Matches ``monai.metrics.compute_hausdorff_distance`` with
    ``percentile=95`` and the same ``spacing``.

    Args:
        pred: predicted mask ``(D, H, W)``, cast to bool.
        truth: true mask of the same shape.
        spacing: voxel size in mm along the array's axes.
        percentile: which percentile of the surface distances (100 gives the Hausdorff distance).

    Returns:
        The distance in mm; 0 if both masks are empty, :data:`HD95_WORST_CASE_MM` if exactly one is.

    Raises:
        ValueError: if the shapes differ, the spacing does not have one positive entry per axis, or the
            percentile is outside [0, 100].
    """
    pred, truth = _check_masks(pred, truth)
    sp = _check_spacing(spacing, pred.ndim)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return 0.0
    if not has_pred or not has_truth:
        return HD95_WORST_CASE_MM
    box = union_box(pred, truth)
    surf_pred, surf_truth = surface(pred[box]), surface(truth[box])
    # Distance of every voxel to the nearest surface voxel of the other mask (0 on that surface).
    to_truth = ndimage.distance_transform_edt(~surf_truth, sampling=sp)
    to_pred = ndimage.distance_transform_edt(~surf_pred, sampling=sp)
    pred_to_truth = np.percentile(to_truth[surf_pred], percentile)
    truth_to_pred = np.percentile(to_pred[surf_truth], percentile)
    return float(max(pred_to_truth, truth_to_pred))


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray,
                         spacing: Spacing = (1.0, 1.0, 1.0)) -> dict[str, dict[str, float]]:
    """Dice, sensitivity, precision and HD95 of WT, TC and ET for one case.

    Args:
        pred: predicted canonical labels ``(D, H, W)`` (0 background, 1 core, 2 edema, 3 enhancing).
        truth: true canonical labels, same shape.
        spacing: voxel size in mm along the three axes (for HD95).

    Returns:
        ``{region: {"dice", "sensitivity", "precision", "hd95"}}`` for region in WT, TC, ET; overlap
        metrics in [0, 1], HD95 in mm, empty masks scored by the module's convention.

    Raises:
        ValueError: naming ``pred`` or ``truth`` if it is not a 3-D array of canonical labels, if the
            shapes differ, or if the spacing is not three positive numbers.
    """
    pred = _check_labels(pred, "pred")
    truth = _check_labels(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred has shape {pred.shape} but truth has shape {truth.shape}")
    _check_spacing(spacing, 3)
    out: dict[str, dict[str, float]] = {}
    for region, classes in REGIONS.items():
        p, t = np.isin(pred, classes), np.isin(truth, classes)
        out[region] = {**overlap_scores(p, t), "hd95": hd95(p, t, spacing)}
    return out


def et_postprocess(pred: np.ndarray, min_voxels: int = ET_MIN_VOXELS, replace_with: int = CORE) -> np.ndarray:
    """Relabel a predicted enhancing tumour that is too small to be believed.

    The common BraTS post-processing: if the prediction holds fewer than ``min_voxels`` enhancing voxels
    in total, they are false positives more often than not (ET is often absent in low-grade cases, where
    any prediction scores Dice 0 under the empty-mask convention). By default they become tumour core
    (label 1), which leaves WT and TC unchanged and only removes the ET; ``replace_with=0`` instead deletes
    them from the tumour. Report ET with and without this step.

    Args:
        pred: predicted canonical labels, any shape.
        min_voxels: threshold on the total number of predicted ET voxels.
        replace_with: canonical label that small ET becomes (1 core by default, or 0 background).

    Returns:
        A new array (same shape and dtype), ``pred`` untouched.

    Raises:
        ValueError: if ``min_voxels`` is negative or ``replace_with`` is not 0 or 1.
    """
    if min_voxels < 0:
        raise ValueError(f"min_voxels must be >= 0, got {min_voxels}")
    if replace_with not in (0, CORE):
        raise ValueError(f"replace_with must be 0 (background) or {CORE} (core), got {replace_with}")
    out = np.array(pred, copy=True)
    et = out == ENHANCING
    if np.count_nonzero(et) < min_voxels:
        out[et] = replace_with
    return out
