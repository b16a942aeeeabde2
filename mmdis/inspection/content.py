r"""Content codes made comparable: each modality's code through the fusion alone, and their similarity."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mmdis.inspection.padding import pad_to_multiple
from mmdis.models.networks import Encoded, MultimodalSegNet


@torch.no_grad()
def single_modality_codes(model: MultimodalSegNet, encoded: Encoded, stage: int = -1) -> torch.Tensor:
    r"""The fused code each modality makes alone, :math:`z^{(i)} = F(0, \dots, c_i, \dots, 0)`, at one stage.

    This puts every modality's content into the one space the decoder reads; for mean fusion
    :math:`z^{(i)} = c_i`. Shape: ``(M, C_s, D_s, H_s, W_s)`` (padded grid).

    Raises:
        ValueError: if the model fuses its inputs early (no per-modality content).
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
