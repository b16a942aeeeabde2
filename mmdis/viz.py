"""Figures: a case's four sequences and its labels, for the CLI, the README and the book.

Everything draws on :class:`matplotlib.figure.Figure` objects directly (no ``pyplot`` state, no GUI
backend), so the functions work in scripts, tests and notebooks alike.

Orientation: volumes are in the voxel order of RAS-like NIfTI files (x left to right, y posterior to
anterior, z inferior to superior). Slices are transposed and drawn with ``origin="lower"``, so axial
slices show anterior at the top, coronal and sagittal slices superior at the top, and the patient's left
on the left of the screen (neurological convention).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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

#: Label colours shared by every figure (edema green, core red, enhancing yellow, as BraTS papers draw).
LABEL_COLOURS: dict[int, str] = {EDEMA: "#3cb44b", CORE: "#e6194b", ENHANCING: "#ffe119"}
_AXIS_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}


def best_slice(label: np.ndarray | None, axis: int = 2) -> int:
    """Index along ``axis`` of the slice with the most tumour; the middle slice when there is none.

    Args:
        label: canonical labels ``(X, Y, Z)`` (any non-zero value counts as tumour), or ``None``.
        axis: 0, 1 or 2.
    """
    if label is None:
        raise ValueError("best_slice needs a label volume")
    per_slice = (label > 0).sum(axis=tuple(a for a in range(3) if a != axis))  # (n_slices,)
    return int(np.argmax(per_slice)) if per_slice.any() else label.shape[axis] // 2


def _plane(volume: np.ndarray, index: int, axis: int) -> np.ndarray:
    # Rows of the transposed slice are the higher voxel axis (y or z), drawn bottom-up by origin="lower".
    return np.take(volume, index, axis=axis).T


def _display_range(plane: np.ndarray) -> tuple[float, float]:
    """Grey-level window: 0.5th to 99.5th percentile of the non-zero (brain) pixels of a slice."""
    inside = plane[plane != 0]
    if inside.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(inside, [0.5, 99.5])
    return (min(0.0, float(lo)), float(hi) if hi > lo else float(lo) + 1.0)


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
            plane = _plane(images[m], slice_index, axis)
            lo, hi = _display_range(plane)
            ax.imshow(plane, cmap="gray", origin="lower", vmin=lo, vmax=hi, interpolation="nearest")
        else:
            ax.imshow(np.zeros_like(_plane(ref, slice_index, axis)), cmap="gray", origin="lower", vmin=0,
                      vmax=1)
            ax.text(0.5, 0.5, "missing", color="white", ha="center", va="center", transform=ax.transAxes)

    overlay_on = "flair" if "flair" in images else next(m for m in MODALITIES if m in images)
    ax = axes[4]
    ax.set_title(f"labels on {MODALITY_NAMES[overlay_on]}")
    base = _plane(images[overlay_on], slice_index, axis)
    lo, hi = _display_range(base)
    ax.imshow(base, cmap="gray", origin="lower", vmin=lo, vmax=hi, interpolation="nearest")
    if label is not None:
        colours = ["none"] + [LABEL_COLOURS[k] for k in range(1, NUM_CLASSES)]  # index = canonical label
        lab = np.ma.masked_equal(_plane(label, slice_index, axis).astype(np.int16), 0)
        ax.imshow(lab, cmap=ListedColormap(colours), vmin=-0.5, vmax=NUM_CLASSES - 0.5, origin="lower",
                  alpha=0.55, interpolation="nearest")
        handles = [Patch(color=LABEL_COLOURS[k], label=CANONICAL_LABELS[k]) for k in (EDEMA, CORE, ENHANCING)]
        ax.legend(handles=handles, loc="lower right", fontsize=6, framealpha=0.8)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title if title else f"{_AXIS_NAMES[axis]} slice {slice_index}")
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` atomically: into a temporary file next to ``path``, then renamed onto it.

    Args:
        fig: the figure.
        path: destination; the format follows its suffix (``.png``, ``.pdf``, ``.svg``).
        dpi: resolution of raster formats.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        # The temporary keeps the real suffix, so matplotlib picks the format from it.
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or None)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
