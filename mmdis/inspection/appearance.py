r"""Appearance codes :math:`a_i = \mu_i`: collecting them, how much the modality explains, a 2-D view, and
re-rendering a modality with another's appearance."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from mmdis.conventions import MODALITIES, MODALITY_NAMES
from mmdis.inspection.encoding import availability, encode_case
from mmdis.inspection.padding import crop_spatial
from mmdis.models.encoders import gaussian_kl
from mmdis.models.networks import MultimodalSegNet

NAMES = [MODALITY_NAMES[m] for m in MODALITIES]


def appearance_codes(model: MultimodalSegNet, cases: Iterable) -> pd.DataFrame:
    r"""Appearance codes :math:`a_i = \mu_i` (eval mode) of every present modality of every case.

    Args:
        cases: objects with ``case_id``, ``image`` ``(M, D, H, W)`` and ``available`` ``(M,)`` (e.g.
            :class:`~mmdis.data.preprocess.PreprocessedCase`).

    Returns:
        One row per (case, modality): ``case_id``, ``modality``, ``kl`` (:math:`D_{KL}(q(a_i) \| N(0, I))`,
        :func:`~mmdis.models.encoders.gaussian_kl`), then ``a0 ... a{A-1}``.

    Raises:
        ValueError: if the model has no appearance encoders.
    """
    if not model.config.disentangle:
        raise ValueError(f"{model.config.name} has no appearance encoders (disentangle=False)")
    rows = []
    for case in cases:
        enc = encode_case(model, case.image)
        mu, logvar = enc.mu[0].float().cpu(), enc.logvar[0].float().cpu()  # (M, A) each
        kl = gaussian_kl(mu, logvar)  # (M,)
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
def swap_appearance(model: MultimodalSegNet, image, available=None) -> np.ndarray:
    r"""Every decoder with every modality's appearance: ``out[i, j]`` = :math:`D^r_i(z, a_j)`.

    :math:`z = F(\delta_1 c_1, \dots, \delta_M c_M)` is the deepest fused code of the modalities in
    ``available`` (default all); the diagonal is the ordinary reconstruction :math:`\hat x_i`.

    Returns:
        float32 ``(M, M, D, H, W)``, cropped to the case.

    Raises:
        ValueError: if the model has no reconstruction decoders.
    """
    if model.recon_decoders is None:
        raise ValueError(f"{model.config.name} has no reconstruction decoders (disentangle=False)")
    encoded = encode_case(model, image)
    z = model.fusions[-1](encoded.content[-1], availability(available, model))[0]  # (1, 8C, D/8, H/8, W/8)
    a = encoded.appearance[0]  # (M, A)
    grid = [[dec(z, a[j : j + 1])[0, 0] for j in range(len(a))] for dec in model.recon_decoders]
    out = torch.stack([torch.stack(row) for row in grid]).float().cpu().numpy()  # (M, M, D', H', W')
    return crop_spatial(out, image.shape[-3:])
