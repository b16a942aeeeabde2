r"""Looking inside a trained network (the book's notebooks 01-03): gates, codes, re-rendering, losses.

Every function takes one preprocessed case ``image`` ``(M, D, H, W)`` and zero-pads it at the far end of
each axis to a multiple of 8 (zero is the brain mean after z-scoring); spatial outputs are cropped back,
so voxel ``k`` of a stage-``s`` map covers case voxels ``k 2**s ... (k+1) 2**s - 1``. Symbols:
:math:`c_i` = ``content[s][:, i]``, :math:`g_i` = ``gates[s][i]``, :math:`a_i` = ``appearance[:, i]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from mmdis.conventions import (
    BACKGROUND,
    CANONICAL_LABELS,
    CORE,
    EDEMA,
    ENHANCING,
    LABEL_CONVENTIONS,
    MODALITIES,
    MODALITY_NAMES,
    NUM_MODALITIES,
    SUBSETS,
    subset_dots,
    subset_name,
)
from mmdis.losses import total_loss
from mmdis.models.networks import SIZE_MULTIPLE, Encoded, MultimodalSegNet

#: Regions of the gate analysis: each canonical label on its own (background = healthy brain).
GATE_REGIONS: dict[str, int] = {"background": BACKGROUND, "edema": EDEMA, "core": CORE,
                                "enhancing": ENHANCING}
NAMES = [MODALITY_NAMES[m] for m in MODALITIES]


def pad_to_multiple(x, multiple: int = SIZE_MULTIPLE, value: float = 0.0):
    """Pad the last three axes of ``x`` (numpy array or tensor) at their far end to multiples of ``multiple``.

    Returns:
        ``(padded, shape)``: same type as ``x``, and the original spatial shape for :func:`crop_spatial`.
    """
    shape = tuple(int(s) for s in x.shape[-3:])
    extra = [(-s) % multiple for s in shape]
    if isinstance(x, torch.Tensor):
        return F.pad(x, (0, extra[2], 0, extra[1], 0, extra[0]), value=value), shape
    widths = [(0, 0)] * (x.ndim - 3) + [(0, e) for e in extra]
    return np.pad(x, widths, constant_values=value), shape


def crop_spatial(x, shape: Sequence[int]):
    """Inverse of :func:`pad_to_multiple`: the first ``shape`` voxels of the last three axes."""
    return x[..., : shape[0], : shape[1], : shape[2]]


def _device(model: MultimodalSegNet) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_case(model: MultimodalSegNet, image) -> Encoded:
    r"""Eval-mode :meth:`~MultimodalSegNet.encode` of one case: :math:`c_i = E^c_i(x_i)`, :math:`a_i = \mu_i`.

    Args:
        image: ``(M, D, H, W)``; padded here, so the codes cover the padded grid (batch ``B = 1``).
    """
    model.eval()
    x, _ = pad_to_multiple(torch.from_numpy(np.array(image, dtype=np.float32)))  # copy of a read-only map
    return model.encode(x[None].to(_device(model)))  # (1, M, D', H', W')


def _delta(available, model: MultimodalSegNet) -> torch.Tensor:
    available = [True] * NUM_MODALITIES if available is None else [bool(a) for a in available]
    return torch.tensor([available], dtype=torch.bool, device=_device(model))  # (1, M)


@torch.no_grad()
def gates_from_encoded(model: MultimodalSegNet, encoded: Encoded, available=None,
                       shape: Sequence[int] | None = None) -> list[np.ndarray]:
    r"""Gate maps :math:`[g_1..g_M] = \sigma(\mathrm{conv}_{3^3}([\delta_1 c_1, \dots, \delta_M c_M]))`.

    Only the fusion modules run (each stage fuses the encoders' maps independently), not the decoders.

    Args:
        encoded: from :func:`encode_case`.
        available: ``M`` bools, :math:`\delta` (default all).
        shape: the case's ``(D, H, W)``: stage maps are cropped to ``ceil(shape / 2**s)``.

    Returns:
        Per stage ``s`` a float32 array ``(M, D_s, H_s, W_s)`` in (0, 1), ``[s][i]`` = :math:`g_i`.
    """
    if model.config.fusion != "gated" or model.fusions is None or model.config.early_fusion:
        raise ValueError(f"{model.config.name} has no gated fusion: gates exist only for fusion='gated'")
    delta = _delta(available, model)
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


def appearance_codes(model: MultimodalSegNet, cases: Iterable) -> pd.DataFrame:
    r"""Appearance codes :math:`a_i = \mu_i` (eval mode) of every present modality of every case.

    Args:
        cases: objects with ``case_id``, ``image`` ``(M, D, H, W)`` and ``available`` ``(M,)`` (e.g.
            :class:`~mmdis.data.preprocess.PreprocessedCase`).

    Returns:
        One row per (case, modality): ``case_id``, ``modality``, ``kl`` (:math:`D_{KL}(q(a_i) \| N(0, I))`),
        then ``a0 ... a{A-1}``.
    """
    if not model.config.disentangle:
        raise ValueError(f"{model.config.name} has no appearance encoders (disentangle=False)")
    rows = []
    for case in cases:
        enc = encode_case(model, case.image)
        mu, logvar = enc.mu[0].float().cpu(), enc.logvar[0].float().cpu()  # (M, A) each
        kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(dim=1)  # (M,), gaussian_kl
        for i, name in enumerate(NAMES):
            if case.available[i]:
                rows.append([case.case_id, name, float(kl[i]), *mu[i].tolist()])
    dims = [f"a{k}" for k in range(model.config.appearance_dim)]
    return pd.DataFrame(rows, columns=["case_id", "modality", "kl", *dims])


def modality_separation(codes: pd.DataFrame) -> float:
    r"""Share of the appearance codes' variance that the modality explains (:math:`\eta^2`).

    .. math:: \eta^2 = \frac{\sum_i n_i \|\bar a_i - \bar a\|^2}{\sum_k \|a_k - \bar a\|^2}

    over the rows :math:`a_k` of :func:`appearance_codes`, :math:`\bar a_i` the mean code of modality
    :math:`i`: 1 when the codes of each modality coincide, near 0 when the modality does not matter.
    """
    x = codes.filter(regex=r"^a\d+$").to_numpy(np.float64)
    grand = x.mean(axis=0)
    total = ((x - grand) ** 2).sum()
    groups = codes.groupby("modality", sort=False).indices.values()
    between = sum(len(rows) * ((x[rows].mean(axis=0) - grand) ** 2).sum() for rows in groups)
    return float(between / total) if total > 0 else float("nan")


def pca_2d(x) -> tuple[np.ndarray, np.ndarray]:
    r"""Project rows of ``x`` ``(N, F)`` on their first two principal axes (SVD of the centred data).

    .. math:: X - \bar X = U S V^\top, \qquad \text{scores} = (X - \bar X) V_{:, :2}

    Returns:
        ``(scores (N, 2), explained)``, ``explained`` the fraction of variance of each axis.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2
    return centred @ vt[:2].T, var[:2] / var.sum()


@torch.no_grad()
def single_modality_codes(model: MultimodalSegNet, encoded: Encoded, stage: int = -1) -> torch.Tensor:
    r"""The fused code each modality makes alone, :math:`z^{(i)} = F(0, \dots, c_i, \dots, 0)`, at one stage.

    This puts every modality's content into the one space the decoder reads; for mean fusion
    :math:`z^{(i)} = c_i`. Shape: ``(M, C_s, D_s, H_s, W_s)`` (padded grid).
    """
    if model.fusions is None:
        raise ValueError(f"{model.config.name} fuses its inputs early: it has no per-modality content")
    fusion, content = model.fusions[stage], encoded.content[stage]  # content (1, M, C_s, ...)
    m = content.shape[1]
    single = torch.eye(m, dtype=torch.bool, device=content.device)  # (M, M): row i keeps modality i
    return fusion(content.expand(m, *content.shape[1:]), single)[0]  # (M, C_s, D_s, H_s, W_s)


def content_similarity(model: MultimodalSegNet, encoded: Encoded, stage: int = -1, mask=None) -> np.ndarray:
    r"""Centred cosine similarity of the single-modality codes :math:`z^{(i)}` between modalities.

    .. math:: S_{ij} = \frac{\langle \tilde z^{(i)}, \tilde z^{(j)} \rangle}
        {\|\tilde z^{(i)}\|\, \|\tilde z^{(j)}\|}

    with :math:`\tilde z` the code minus its per-channel mean over the voxels kept (a Pearson correlation
    over channels and voxels), so 1 means the same pattern whichever modality made it.

    ``stage`` defaults to the deepest (the :math:`z` of Eq. (1)); with a brain ``mask`` ``(D, H, W)`` only
    stage voxels touching the brain count. Returns an ``(M, M)`` array.
    """
    z = single_modality_codes(model, encoded, stage).float().cpu()  # (M, C, d, h, w)
    m, c = z.shape[:2]
    flat = z.reshape(m, c, -1)  # (M, C, V)
    if mask is not None:
        brain, _ = pad_to_multiple(torch.from_numpy(np.array(mask, np.float32)))  # (D', H', W')
        factor = brain.shape[-1] // z.shape[-1]
        flat = flat[:, :, F.max_pool3d(brain[None, None], factor).reshape(-1) > 0]  # stage voxels in brain
    flat = (flat - flat.mean(dim=2, keepdim=True)).reshape(m, -1)  # (M, C * V)
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (unit @ unit.T).numpy()


@torch.no_grad()
def swap_appearance(model: MultimodalSegNet, image, available=None) -> np.ndarray:
    r"""Every decoder with every modality's appearance: ``out[i, j]`` = :math:`D^r_i(z, a_j)`.

    :math:`z = F(\delta_1 c_1, \dots, \delta_M c_M)` is the deepest fused code of the modalities in
    ``available`` (default all); the diagonal is the ordinary reconstruction :math:`\hat x_i`.

    Returns:
        float32 ``(M, M, D, H, W)``, cropped to the case.
    """
    if model.recon_decoders is None:
        raise ValueError(f"{model.config.name} has no reconstruction decoders (disentangle=False)")
    encoded = encode_case(model, image)
    z = model.fusions[-1](encoded.content[-1], _delta(available, model))[0]  # (1, 8C, D/8, H/8, W/8)
    a = encoded.appearance[0]  # (M, A)
    grid = [[dec(z, a[j : j + 1])[0, 0] for j in range(len(a))] for dec in model.recon_decoders]
    out = torch.stack([torch.stack(row) for row in grid]).float().cpu().numpy()  # (M, M, D', H', W')
    return crop_spatial(out, image.shape[-3:])


@torch.no_grad()
def case_losses(model: MultimodalSegNet, image, label: np.ndarray, mask=None, available=None,
                present=None) -> tuple[pd.DataFrame, dict[str, float]]:
    r"""The terms of Eq. (3) for one whole case in eval mode, via :func:`mmdis.losses.total_loss`.

    .. math:: \mathcal{L}_{total} = \mathcal{L}_{seg} + \lambda \sum_i \|D^r_i(z, a_i) - x_i\|_1
        + \beta \sum_i D_{KL}(q(a_i) \| \mathcal{N}(0, I))

    Args:
        available: the modalities fused, :math:`\delta` (default all).
        present: the modalities the case has, whose reconstruction and KL count (default all).

    Returns:
        ``(per_modality, terms)``: a frame with ``modality``, ``rec_l1`` (mean absolute error inside the
        mask) and ``kl``, whose column sums over present modalities are ``terms["rec"]`` and
        ``terms["kl"]``; ``terms`` holds ``total``, ``seg``, ``dice``, ``ce``, ``rec``, ``kl`` as floats.
    """
    if not model.config.disentangle:
        raise ValueError(f"{model.config.name} has no reconstruction or KL terms (disentangle=False)")
    dev = _device(model)
    encoded = encode_case(model, image)
    out = model.decode(encoded, _delta(available, model))
    y, _ = pad_to_multiple(torch.from_numpy(np.array(label, dtype=np.int64)))
    keep = np.ones(label.shape, bool) if mask is None else np.array(mask, bool)
    mk, _ = pad_to_multiple(torch.from_numpy(keep))  # padding is outside the brain
    pres = _delta(present, model)
    terms = total_loss(out, encoded.x, y[None].to(dev), present=pres, mask=mk[None].to(dev))
    err = (out.recon - encoded.x).abs()[0]  # (M, D', H', W')
    rec = (err * mk.to(dev)).sum(dim=(1, 2, 3)) / mk.sum().clamp_min(1)  # (M,)
    per_mod = pd.DataFrame({"modality": NAMES, "rec_l1": rec.cpu().numpy(), "kl": out.kl[0].cpu().numpy()})
    return per_mod[pres[0].cpu().numpy()].reset_index(drop=True), {k: float(v) for k, v in terms.items()}


def label_convention_table() -> pd.DataFrame:
    """Canonical labels (rows) against each dataset's label values (columns), from the conventions."""
    table = {}
    for name, conv in LABEL_CONVENTIONS.items():
        table[name] = [", ".join(str(v) for v, c in sorted(conv.to_canonical.items()) if c == k)
                       for k in CANONICAL_LABELS]
    df = pd.DataFrame(table, index=pd.Index(list(CANONICAL_LABELS), name="canonical"))
    df.insert(0, "tissue", list(CANONICAL_LABELS.values()))
    return df[["tissue", *sorted(LABEL_CONVENTIONS)]]


def subset_table() -> pd.DataFrame:
    """The 15 modality subsets in the paper's Table-2 order: a dot column per modality, name and size."""
    rows = [{**{n: "●" if a else "○" for n, a in zip(NAMES, s)}, "subset": subset_name(s), "n": sum(s)}
            for s in SUBSETS]
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(SUBSETS) + 1, name="row"))


def plot_gates(anatomy: np.ndarray, gates: Sequence[np.ndarray], slice_index: int,
               stages: Sequence[int] | None = None, label: np.ndarray | None = None, mask=None,
               modalities: Sequence[int] | None = None, title: str | None = None) -> Figure:
    """Gate maps (stages as rows, modalities as columns) over an axial slice of ``anatomy`` ``(D, H, W)``.

    Each stage's gate is repeated up to full resolution (a stage voxel covers ``2**s`` voxels per axis)
    and drawn inside ``mask`` only (default everywhere); ``label`` adds the whole-tumour outline; a
    modality not in ``modalities`` (default all) is drawn as an empty "missing" panel. Slices are
    transposed and drawn with ``origin="lower"``, as in :func:`mmdis.viz.plot_case`.
    """
    stages = list(range(len(gates))) if stages is None else list(stages)
    modalities = list(range(NUM_MODALITIES)) if modalities is None else list(modalities)
    base = anatomy[:, :, slice_index].T  # (H, D)
    inside = np.ones(base.shape, bool) if mask is None else np.asarray(mask)[:, :, slice_index].T.astype(bool)
    lo, hi = np.percentile(base[base != 0], [1, 99]) if np.any(base != 0) else (0.0, 1.0)
    fig = Figure(figsize=(2.6 * NUM_MODALITIES + 0.8, 2.5 * len(stages) + 0.4), layout="constrained")
    axes = fig.subplots(len(stages), NUM_MODALITIES, squeeze=False)
    for row, s in zip(axes, stages):
        f = 2**s
        for i, ax in enumerate(row):
            if i in modalities:
                ax.imshow(base, cmap="gray", origin="lower", vmin=lo, vmax=hi)
                g = gates[s][i][:, :, slice_index // f].repeat(f, 0).repeat(f, 1)  # (D, H) at full size
                g = np.ma.masked_where(~inside, g[: base.shape[1], : base.shape[0]].T)
                ax.imshow(g, cmap="magma", origin="lower", vmin=0, vmax=1, alpha=0.6)
            else:
                ax.imshow(np.zeros_like(base), cmap="gray", origin="lower", vmin=0, vmax=1)
                ax.text(0.5, 0.5, "missing", color="white", ha="center", va="center", transform=ax.transAxes)
            if label is not None and np.any(label[:, :, slice_index] > 0):
                ax.contour((label[:, :, slice_index] > 0).T, levels=[0.5], colors="cyan", linewidths=0.8)
            ax.set_title(f"$g_{{{NAMES[i]}}}$, stage {s}", fontsize=9)
            ax.set_axis_off()
    fig.colorbar(ScalarMappable(Normalize(0, 1), "magma"), ax=axes, shrink=0.8, label="gate")
    if title:
        fig.suptitle(title)
    return fig
