"""A case's four sequences side by side and its labels over FLAIR, on one slice (CLI, README, book)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mmdis.conventions import (
    CANONICAL_LABELS,
    CORE,
    EDEMA,
    ENHANCING,
    MODALITIES,
    MODALITY_NAMES,
    NUM_CLASSES,
)
from mmdis.plotting.base import LABEL_COLOURS, best_slice, plane, show_grey, show_missing

_AXIS_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}


def plot_case(images: dict[str, np.ndarray], label: np.ndarray | None, *, slice_index: int | None = None,
              axis: int = 2, title: str | None = None) -> Figure:
    """The four sequences side by side and the labels over FLAIR, on one slice.

    Args:
        images: modality (:data:`~mmdis.conventions.MODALITIES`) -> volume ``(X, Y, Z)``; a missing
            modality is drawn as an empty panel marked "missing".
        label: canonical labels ``uint8 (X, Y, Z)``, or ``None`` for an unlabelled case.
        slice_index: the slice to show; default the slice with the most tumour (the middle slice
            without a label).
        axis: the axis the slice is taken across: 2 axial, 1 coronal, 0 sagittal.
        title: figure title.

    Returns:
        A :class:`~matplotlib.figure.Figure` with five axes: FLAIR, T1, T1c, T2 and the label overlay.

    Raises:
        ValueError: ``images`` is empty, ``axis`` is not 0-2 or ``slice_index`` is out of range.
    """
    if not images:
        raise ValueError("images is empty: plot_case needs at least one modality")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    ref = next(iter(images.values()))
    if slice_index is None:
        slice_index = best_slice(label, axis) if label is not None else ref.shape[axis] // 2
    if not 0 <= slice_index < ref.shape[axis]:
        raise ValueError(f"slice_index {slice_index} is outside 0..{ref.shape[axis] - 1} along axis {axis}")

    fig = Figure(figsize=(13.0, 3.3), layout="constrained")
    axes = fig.subplots(1, 5)
    for ax, m in zip(axes, MODALITIES):
        ax.set_title(MODALITY_NAMES[m])
        if m in images:
            show_grey(ax, plane(images[m], slice_index, axis))
        else:
            show_missing(ax, plane(ref, slice_index, axis).shape)

    overlay_on = "flair" if "flair" in images else next(m for m in MODALITIES if m in images)
    ax = axes[4]
    ax.set_title(f"labels on {MODALITY_NAMES[overlay_on]}")
    show_grey(ax, plane(images[overlay_on], slice_index, axis))
    if label is not None:
        colours = ["none"] + [LABEL_COLOURS[k] for k in range(1, NUM_CLASSES)]  # index = canonical label
        lab = np.ma.masked_equal(plane(label, slice_index, axis).astype(np.int16), 0)
        ax.imshow(lab, cmap=ListedColormap(colours), vmin=-0.5, vmax=NUM_CLASSES - 0.5, origin="lower",
                  alpha=0.55, interpolation="nearest")
        handles = [Patch(color=LABEL_COLOURS[k], label=CANONICAL_LABELS[k]) for k in (EDEMA, CORE, ENHANCING)]
        ax.legend(handles=handles, loc="lower right", fontsize=6, framealpha=0.8)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title if title else f"{_AXIS_NAMES[axis]} slice {slice_index}")
    return fig
