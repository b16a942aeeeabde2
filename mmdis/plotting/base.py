"""What every figure shares: slice orientation, colours, the grey-level window, the best slice, saving.

Orientation: volumes are in the voxel order of RAS-like NIfTI files (x left to right, y posterior to
anterior, z inferior to superior). Slices are transposed and drawn with ``origin="lower"``, so axial
slices show anterior at the top, coronal and sagittal slices superior at the top, and the patient's left
on the left of the screen (neurological convention).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mmdis.conventions import CORE, EDEMA, ENHANCING
from mmdis.runtime.files import atomic_path

#: Label colours shared by every figure (edema green, core red, enhancing yellow, as BraTS papers draw).
LABEL_COLOURS: dict[int, str] = {EDEMA: "#3cb44b", CORE: "#e6194b", ENHANCING: "#ffe119"}
#: Contour colours of the regions (Fig. 2): whole tumour yellow, core red, enhancing blue.
REGION_COLOURS: dict[str, str] = {"WT": "yellow", "TC": "red", "ET": "deepskyblue"}
#: How the book names each method.
METHOD_LABELS: dict[str, str] = {"robustseg": "RobustSeg", "hemis": "HeMIS", "imputation": "imputation",
                                 "ablation-mean": "mean fusion", "ablation-mean-dis": "mean + dis.",
                                 "robustseg-nogatenorm": "RobustSeg, no gate norm"}
#: Percentiles of the brain's pixels that bound the grey-level window.
GREY_PERCENTILES: tuple[float, float] = (1.0, 99.0)


def method_label(method: str) -> str:
    """The book's name of ``method`` (:data:`METHOD_LABELS`), or the method itself."""
    return METHOD_LABELS.get(method, method)


def best_slice(label: np.ndarray | None, axis: int = 2) -> int:
    """Index along ``axis`` of the slice with the most tumour; the middle slice when there is none.

    Args:
        label: canonical labels ``(X, Y, Z)`` (any non-zero value counts as tumour), or ``None``.
        axis: 0, 1 or 2.

    Raises:
        ValueError: if ``label`` is ``None``.
    """
    if label is None:
        raise ValueError("best_slice needs a label volume")
    per_slice = (label > 0).sum(axis=tuple(a for a in range(3) if a != axis))  # (n_slices,)
    return int(np.argmax(per_slice)) if per_slice.any() else label.shape[axis] // 2


def plane(volume: np.ndarray, index: int, axis: int = 2) -> np.ndarray:
    """Slice ``index`` of ``volume`` ``(X, Y, Z)`` across ``axis``, transposed for ``origin="lower"``."""
    # Rows of the transposed slice are the higher voxel axis (y or z), drawn bottom-up by origin="lower".
    return np.take(volume, index, axis=axis).T


def grey_window(image: np.ndarray, reference: np.ndarray | None = None) -> tuple[float, float]:
    """The grey-level window of every figure: :data:`GREY_PERCENTILES` of the non-zero (brain) pixels.

    Args:
        image: the slice (or volume) to show.
        reference: take the window from this one instead (e.g. a reconstruction in its real image's window).

    Returns:
        ``(vmin, vmax)`` with ``vmax > vmin``; ``(0, 1)`` when every pixel is zero.
    """
    ref = np.asarray(image if reference is None else reference)
    inside = ref[ref != 0]
    if inside.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(inside, GREY_PERCENTILES))
    return lo, max(hi, lo + 1e-6)


def show_grey(ax: Axes, image: np.ndarray, reference: np.ndarray | None = None) -> None:
    """Draw a transposed slice (:func:`plane`) in grey, windowed by :func:`grey_window`, without ticks."""
    lo, hi = grey_window(image, reference)
    ax.imshow(image, cmap="gray", origin="lower", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set(xticks=[], yticks=[])


def show_missing(ax: Axes, shape: tuple[int, ...]) -> None:
    """An empty black panel marked "missing", for a modality a case or a subset lacks."""
    ax.imshow(np.zeros(shape), cmap="gray", origin="lower", vmin=0, vmax=1)
    ax.text(0.5, 0.5, "missing", color="white", ha="center", va="center", transform=ax.transAxes)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` atomically (:func:`mmdis.runtime.files.atomic_path`).

    Args:
        fig: the figure.
        path: destination; the format follows its suffix (``.png``, ``.pdf``, ``.svg``).
        dpi: resolution of raster formats.

    Returns:
        ``path``.
    """
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        # The format is given explicitly rather than read from the temporary's name.
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or None)
    return path
