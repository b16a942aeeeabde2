r"""One case's predictions for a few subsets: the paper's Fig. 2 (segmentation contours) and Fig. 3b
(reconstructions :math:`\hat x_i = D^r_i(z, a_i)`), from a :class:`~mmdis.inference.SubsetPrediction`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mmdis.conventions import MODALITIES, MODALITY_NAMES, REGIONS
from mmdis.plotting.base import REGION_COLOURS, best_slice, method_label, plane, show_grey


def plot_overlays(case, predictions: dict, slice_index: int | None = None) -> Figure:
    """Fig. 2: contours of WT (yellow), TC (red) and ET (blue) over FLAIR on one axial slice (default: the
    most tumour), the ground truth then one column per subset, one row per method.

    Args:
        case: ``image (M, D, H, W)``, canonical ``label (D, H, W)``; predictions: method ->
            :class:`~mmdis.inference.SubsetPrediction`, the same subsets for each.
    """
    z = best_slice(case.label) if slice_index is None else slice_index
    names = next(iter(predictions.values())).names()
    fig = Figure(figsize=(2.1 * (len(names) + 1), 2.3 * len(predictions) + 0.3), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(predictions), len(names) + 1))
    for row, (method, pred) in zip(axes, predictions.items()):
        for ax, title, lab in zip(row, ["ground truth", *names], [case.label, *pred.labels]):
            show_grey(ax, plane(case.image[0], z))
            for region, classes in REGIONS.items():
                mask = np.isin(plane(lab, z), classes)
                if mask.any() and not mask.all():
                    ax.contour(mask.astype(float), levels=[0.5], colors=[REGION_COLOURS[region]])
            ax.set_title(title, fontsize=8)
        row[0].set_ylabel(method_label(method), fontsize=9)
    return fig


def plot_reconstruction_grid(case, prediction, modalities: Sequence[str] = ("flair", "t2"),
                             slice_index: int | None = None) -> Figure:
    r"""Fig. 3b: the real images (first row), then :math:`\hat x_i = D^r_i(z, a_i)` from each subset (one
    row per subset, one column per modality) on one axial slice, each column in the real image's window.

    Raises:
        ValueError: if ``prediction.recon`` is ``None``.
    """
    if prediction.recon is None:
        raise ValueError("the prediction has no reconstructions: use with_recon=True on a model with them")
    z = best_slice(case.label) if slice_index is None else slice_index
    names, idx = prediction.names(), [MODALITIES.index(m) for m in modalities]
    fig = Figure(figsize=(2.2 * len(idx) + 0.8, 2.1 * (len(names) + 1)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names) + 1, len(idx)))
    for col, i in enumerate(idx):
        real, shown = plane(case.image[i], z), MODALITY_NAMES[MODALITIES[i]]
        show_grey(axes[0, col], real)
        axes[0, col].set_title(f"real {shown}", fontsize=9)
        for row, (name, subset) in enumerate(zip(names, prediction.subsets), start=1):
            show_grey(axes[row, col], plane(prediction.recon[row - 1, i], z), reference=real)
            axes[row, col].set_title(f"from {name}" + ("" if subset[i] else f" (no {shown})"), fontsize=7,
                                     color="black" if subset[i] else "firebrick")
    return fig
