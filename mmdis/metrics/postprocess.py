r"""The small-ET post-processing, and ET scored with and without it.

The rule (source and threshold in :mod:`mmdis.metrics.definitions`): with :math:`E` the set of voxels
predicted enhancing,

.. math::

    \hat y_v = \begin{cases} 1 \text{ (core)} & \text{if } \hat y_v = 3 \text{ and } |E| < \tau \\
                             \hat y_v & \text{otherwise,} \end{cases} \qquad \tau = 500 \text{ voxels}.

It removes only the ET: WT and TC keep every voxel, so only the ET row changes. In a case without
enhancing tumour (most low-grade gliomas) any predicted ET scores Dice 0 under both empty-mask
conventions; a small one is more often such a false positive than a real enhancing rim.
"""

from __future__ import annotations

import numpy as np

from mmdis.conventions import CORE, ENHANCING
from mmdis.metrics.definitions import ET_MIN_VOXELS, ET_PP, MetricConfig
from mmdis.metrics.segmentation import Spacing, check_label_pair, region_metrics, segmentation_metrics


def et_postprocess(pred: np.ndarray, min_voxels: int = ET_MIN_VOXELS, replace_with: int = CORE) -> np.ndarray:
    """Relabel a predicted enhancing tumour that is too small to be believed (module docstring).

    By default the small ET becomes tumour core (label 1), which leaves WT and TC unchanged;
    ``replace_with=0`` instead deletes it from the tumour.

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


def case_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0),
                 config: MetricConfig | None = None) -> dict[str, dict[str, float]]:
    """:func:`~mmdis.metrics.segmentation_metrics` under ``config``, plus region ``ET-pp`` if it asks.

    ``ET-pp`` is the ET of :func:`et_postprocess` ``(pred, config.et_min_voxels)`` against the same truth;
    WT, TC and ET are always those of the raw prediction, so a consumer that reads only them sees the
    same numbers whether or not the post-processing is reported.

    Returns:
        ``{region: {"dice", "sensitivity", "precision", "hd95"}}`` for WT, TC, ET (and ``ET-pp``).
    """
    config = config or MetricConfig()
    out = segmentation_metrics(pred, truth, spacing, config.hd95, config.empty)
    if config.et_postprocess:
        pred, truth = check_label_pair(pred, truth)
        post = et_postprocess(pred, config.et_min_voxels) == ENHANCING
        out[ET_PP] = region_metrics(post, truth == ENHANCING, spacing, config.hd95, config.empty)
    return out
