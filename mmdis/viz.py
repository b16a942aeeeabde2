"""Figures: a case's four sequences with its labels, used by the CLI, the README and the book."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mmdis.conventions import CANONICAL_LABELS, CORE, EDEMA, ENHANCING, MODALITIES, MODALITY_NAMES

#: Label colours shared by every figure: edema yellow, core red, enhancing blue (as the paper's Fig. 2).
LABEL_COLOURS = {EDEMA: "#f5d742", CORE: "#e0402a", ENHANCING: "#2a7de0"}


def best_slice(label: np.ndarray | None, axis: int = 2) -> int:
    """Index along ``axis`` of the slice with the most tumour (the middle slice if there is none)."""
    if label is None or not np.any(label):
        return (label.shape[axis] if label is not None else 1) // 2
    other = tuple(a for a in range(3) if a != axis)
    return int(np.argmax((label > 0).sum(axis=other)))


def _plane(volume: np.ndarray, index: int, axis: int) -> np.ndarray:
    # Transposed so that the first voxel axis runs left-right on screen; shown with origin="lower"
    # this puts anterior/superior up for RAS-oriented volumes.
    return np.take(volume, index, axis=axis).T


def plot_case(images: dict[str, np.ndarray], label: np.ndarray | None, *, slice_index: int | None = None,
              axis: int = 2, title: str | None = None) -> Figure:
    """The four sequences side by side, plus the labels over FLAIR.

    Args:
        images: modality -> ``(X, Y, Z)`` volume; missing modalities are drawn as empty panels.
        label: canonical labels ``(X, Y, Z)`` or ``None``.
        slice_index: slice to show; default the one with the most tumour.
        axis: 2 for axial, 1 coronal, 0 sagittal.
        title: figure title.

    Returns:
        A matplotlib :class:`~matplotlib.figure.Figure` with five axes.
    """
    ref = next(iter(images.values()))
    if slice_index is None:
        slice_index = best_slice(label, axis) if label is not None else ref.shape[axis] // 2
    fig = Figure(figsize=(13, 3.2), layout="constrained")
    axes = fig.subplots(1, 5)
    for ax, m in zip(axes, MODALITIES):
        ax.set_title(MODALITY_NAMES[m])
        if m in images:
            plane = _plane(images[m], slice_index, axis)
            inside = plane[plane != 0]
            vmax = np.percentile(inside, 99.5) if inside.size else 1.0
            ax.imshow(plane, cmap="gray", origin="lower", vmin=0 if plane.min() >= 0 else None, vmax=vmax)
        else:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
    base = images.get("flair", ref)
    ax = axes[4]
    ax.set_title("labels on " + ("FLAIR" if "flair" in images else "first sequence"))
    plane = _plane(base, slice_index, axis)
    ax.imshow(plane, cmap="gray", origin="lower")
    if label is not None:
        lab = _plane(label, slice_index, axis).astype(float)
        cmap = ListedColormap(["none", LABEL_COLOURS[CORE], LABEL_COLOURS[EDEMA], LABEL_COLOURS[ENHANCING]])
        ax.imshow(np.ma.masked_equal(lab, 0), cmap=cmap, vmin=0, vmax=3, origin="lower", alpha=0.6,
                  interpolation="nearest")
        handles = [Patch(color=LABEL_COLOURS[k], label=CANONICAL_LABELS[k]) for k in (EDEMA, CORE, ENHANCING)]
        ax.legend(handles=handles, loc="lower right", fontsize=6, framealpha=0.7)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` atomically (temporary file, then rename) in the format given by the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
