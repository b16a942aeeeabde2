r"""The terms of the training loss, Eq. (3), for one whole case in eval mode.

.. math:: \mathcal{L}_{total} = \mathcal{L}_{seg} + \lambda \sum_i \|D^r_i(z, a_i) - x_i\|_1
    + \beta \sum_i D_{KL}(q(a_i) \| \mathcal{N}(0, I))
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mmdis.conventions import MODALITIES, MODALITY_NAMES
from mmdis.inspection.encoding import availability, encode_case, model_device
from mmdis.inspection.padding import pad_to_multiple
from mmdis.losses import total_loss
from mmdis.models.networks import MultimodalSegNet

NAMES = [MODALITY_NAMES[m] for m in MODALITIES]


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

    Raises:
        ValueError: if the model has no reconstruction or KL terms.
    """
    if not model.config.disentangle:
        raise ValueError(f"{model.config.name} has no reconstruction or KL terms (disentangle=False)")
    dev = model_device(model)
    encoded = encode_case(model, image)
    out = model.decode(encoded, availability(available, model))
    y, _ = pad_to_multiple(torch.from_numpy(np.array(label, dtype=np.int64)))
    keep = np.ones(label.shape, bool) if mask is None else np.array(mask, bool)
    mk, _ = pad_to_multiple(torch.from_numpy(keep))  # padding is outside the brain
    pres = availability(present, model)
    terms = total_loss(out, encoded.x, y[None].to(dev), present=pres, mask=mk[None].to(dev))
    err = (out.recon - encoded.x).abs()[0]  # (M, D', H', W')
    rec = (err * mk.to(dev)).sum(dim=(1, 2, 3)) / mk.sum().clamp_min(1)  # (M,)
    per_mod = pd.DataFrame({"modality": NAMES, "rec_l1": rec.cpu().numpy(), "kl": out.kl[0].cpu().numpy()})
    return per_mod[pres[0].cpu().numpy()].reset_index(drop=True), {k: float(v) for k, v in terms.items()}
