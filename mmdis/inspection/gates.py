r"""Gate maps of the gated fusion and their means per tumour region, per stage and per subset.

.. math:: [g_1, \dots, g_M] = \sigma(\mathrm{conv}_{3^3}([\delta_1 c_1, \dots, \delta_M c_M]))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from mmdis.conventions import (
    BACKGROUND,
    CORE,
    EDEMA,
    ENHANCING,
    MODALITIES,
    MODALITY_NAMES,
    SUBSETS,
    subset_dots,
    subset_name,
)
from mmdis.inspection.encoding import availability, encode_case
from mmdis.inspection.padding import crop_spatial
from mmdis.models.networks import Encoded, MultimodalSegNet

#: Regions of the gate analysis: each canonical label on its own (background = healthy brain).
GATE_REGIONS: dict[str, int] = {"background": BACKGROUND, "edema": EDEMA, "core": CORE,
                                "enhancing": ENHANCING}
NAMES = [MODALITY_NAMES[m] for m in MODALITIES]


@torch.no_grad()
def gates_from_encoded(model: MultimodalSegNet, encoded: Encoded, available=None,
                       shape: Sequence[int] | None = None) -> list[np.ndarray]:
    r"""Gate maps :math:`[g_1..g_M] = \sigma(\mathrm{conv}_{3^3}([\delta_1 c_1, \dots, \delta_M c_M]))`.

    Only the fusion modules run (each stage fuses the encoders' maps independently), not the decoders.

    Args:
        encoded: from :func:`~mmdis.inspection.encoding.encode_case`.
        available: ``M`` bools, :math:`\delta` (default all).
        shape: the case's ``(D, H, W)``: stage maps are cropped to ``ceil(shape / 2**s)``.

    Returns:
        Per stage ``s`` a float32 array ``(M, D_s, H_s, W_s)`` in (0, 1), ``[s][i]`` = :math:`g_i`.

    Raises:
        ValueError: if the model has no gated fusion.
    """
    if model.config.fusion != "gated" or model.fusions is None or model.config.early_fusion:
        raise ValueError(f"{model.config.name} has no gated fusion: gates exist only for fusion='gated'")
    delta = availability(available, model)
    out = []
    for s, (fusion, content) in enumerate(zip(model.fusions, encoded.content)):
        gate = fusion(content, delta)[1][0].float().cpu().numpy()  # (M, D_s', H_s', W_s')
        if shape is not None:
            gate = crop_spatial(gate, [-(-n // 2**s) for n in shape])
        out.append(gate)
    return out


def gate_maps(model: MultimodalSegNet, image, available=None) -> list[np.ndarray]:
    """:func:`gates_from_encoded` of ``image`` ``(M, D, H, W)``: per stage ``(M, D_s, H_s, W_s)``."""
    return gates_from_encoded(model, encode_case(model, image), available, image.shape[-3:])


def region_fractions(label: np.ndarray, factor: int, grid: Sequence[int], mask=None) -> np.ndarray:
    r"""The label downsampled to a stage grid as soft region fractions.

    :math:`f^{(s)}_r(v)` is the fraction of the ``factor**3`` voxels under stage voxel :math:`v` that carry
    region :math:`r` of :data:`GATE_REGIONS` (and lie inside ``mask``); voxels beyond the case count as
    none. Shapes: ``label`` ``(D, H, W)`` -> ``(R, *grid)``.

    Raises:
        ValueError: if the grid does not cover the label.
    """
    full = [g * factor for g in grid]
    if any(f < n for f, n in zip(full, label.shape)):
        raise ValueError(f"a grid {tuple(grid)} x {factor} does not cover a label of shape {label.shape}")
    keep = np.ones(label.shape, bool) if mask is None else np.asarray(mask, bool)
    one_hot = np.stack([(label == k) & keep for k in GATE_REGIONS.values()]).astype(np.float32)  # (R,D,H,W)
    one_hot = np.pad(one_hot, [(0, 0)] + [(0, f - n) for f, n in zip(full, label.shape)])
    r, (d, h, w) = len(GATE_REGIONS), grid
    return one_hot.reshape(r, d, factor, h, factor, w, factor).mean(axis=(2, 4, 6))  # (R, d, h, w)


def gate_region_means(gates: Sequence[np.ndarray], label: np.ndarray, mask=None) -> pd.DataFrame:
    r"""Mean gate of every modality in every region, at every stage.

    .. math:: \bar g^{(s)}_{i,r} = \frac{\sum_v g^{(s)}_i(v)\, f^{(s)}_r(v)}{\sum_v f^{(s)}_r(v)}

    with :math:`f^{(s)}_r` from :func:`region_fractions`: the mean, over the region's voxels, of the gate
    repeated up to full resolution. ``gates``: per stage ``(M, D_s, H_s, W_s)`` at ``1 / 2**s`` of the
    resolution of ``label`` ``(D, H, W)``; ``mask`` ``(D, H, W)``: outside it nothing counts.

    Returns:
        Columns ``stage``, ``modality``, ``region``, ``mean_gate`` (NaN for an empty region), ``voxels``
        (full-resolution voxels of the region).
    """
    rows = []
    for s, gate in enumerate(gates):
        frac = region_fractions(label, 2**s, gate.shape[1:], mask)  # (R, D_s, H_s, W_s)
        weight = frac.reshape(len(frac), -1).sum(axis=1)  # (R,)
        sums = gate.reshape(len(gate), -1) @ frac.reshape(len(frac), -1).T  # (M, R)
        for i, name in enumerate(NAMES[: len(gate)]):
            for r, region in enumerate(GATE_REGIONS):
                mean = sums[i, r] / weight[r] if weight[r] > 0 else np.nan
                rows.append((s, name, region, float(mean), int(round(weight[r] * 8**s))))
    return pd.DataFrame(rows, columns=["stage", "modality", "region", "mean_gate", "voxels"])


def gates_by_subset(model: MultimodalSegNet, image, label: np.ndarray, mask=None,
                    subsets: Iterable[Sequence[bool]] = SUBSETS) -> pd.DataFrame:
    """:func:`gate_region_means` for every subset (encoded once), keeping only the modalities fused.

    A missing modality's gate multiplies zeros, so its rows would mean nothing and are left out.

    Returns:
        The columns of :func:`gate_region_means` plus ``subset`` (name), ``dots`` and ``n_modalities``.
    """
    encoded = encode_case(model, image)
    frames = []
    for subset in subsets:
        df = gate_region_means(gates_from_encoded(model, encoded, subset, image.shape[-3:]), label, mask)
        df = df[df["modality"].isin([n for n, a in zip(NAMES, subset) if a])]
        frames.append(df.assign(subset=subset_name(subset), dots=subset_dots(subset),
                                n_modalities=sum(subset)))
    return pd.concat(frames, ignore_index=True)
