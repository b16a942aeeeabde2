"""Gate maps :math:`g_i` of the gated fusion (:func:`mmdis.inspection.gates.gate_maps`) over a slice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from mmdis.conventions import MODALITIES, MODALITY_NAMES, NUM_MODALITIES
from mmdis.plotting.base import plane, show_grey, show_missing

_NAMES = [MODALITY_NAMES[m] for m in MODALITIES]


def plot_gates(anatomy: np.ndarray, gates: Sequence[np.ndarray], slice_index: int,
               stages: Sequence[int] | None = None, label: np.ndarray | None = None, mask=None,
               modalities: Sequence[int] | None = None, title: str | None = None) -> Figure:
    """Gate maps (stages as rows, modalities as columns) over an axial slice of ``anatomy`` ``(D, H, W)``.

    Each stage's gate ``(M, D_s, H_s, W_s)`` is repeated up to full resolution (a stage voxel covers
    ``2**s`` voxels per axis) and drawn inside ``mask`` only (default everywhere); ``label`` adds the
    whole-tumour outline; a modality not in ``modalities`` (default all) is drawn as an empty "missing"
    panel. Slices are oriented as in :mod:`mmdis.plotting.base`.
    """
    stages = list(range(len(gates))) if stages is None else list(stages)
    modalities = list(range(NUM_MODALITIES)) if modalities is None else list(modalities)
    base = plane(anatomy, slice_index)  # (H, D)
    inside = np.ones(base.shape, bool) if mask is None else plane(np.asarray(mask), slice_index).astype(bool)
    fig = Figure(figsize=(2.6 * NUM_MODALITIES + 0.8, 2.5 * len(stages) + 0.4), layout="constrained")
    axes = fig.subplots(len(stages), NUM_MODALITIES, squeeze=False)
    for row, s in zip(axes, stages):
        f = 2**s
        for i, ax in enumerate(row):
            if i in modalities:
                show_grey(ax, base)
                g = gates[s][i][:, :, slice_index // f].repeat(f, 0).repeat(f, 1)  # (D, H) at full size
                g = np.ma.masked_where(~inside, g[: base.shape[1], : base.shape[0]].T)
                ax.imshow(g, cmap="magma", origin="lower", vmin=0, vmax=1, alpha=0.6)
            else:
                show_missing(ax, base.shape)
            if label is not None and np.any(label[:, :, slice_index] > 0):
                ax.contour(plane(label > 0, slice_index), levels=[0.5], colors="cyan", linewidths=0.8)
            ax.set_title(f"$g_{{{_NAMES[i]}}}$, stage {s}", fontsize=9)
            ax.set_axis_off()
    fig.colorbar(ScalarMappable(Normalize(0, 1), "magma"), ax=axes, shrink=0.8, label="gate")
    if title:
        fig.suptitle(title)
    return fig
