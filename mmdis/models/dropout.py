r"""Modality dropout: the Bernoulli indicators :math:`\delta_i` of Eq. (1).

During training each *available* content code is kept with probability ``p_keep`` (the paper's 0.5) and
switched off otherwise, so that the fused code :math:`z = F(\delta_1 c_1, \dots, \delta_M c_M)` learns
to do without any of them. A sample that would keep nothing gets one of its available modalities back.
At inference :math:`\delta_i` is simply the availability of modality :math:`i`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def modality_dropout(
    available: Tensor, p_keep: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    r"""Draw the keep indicators :math:`\delta_i` among the available modalities.

    .. math::
        \delta_i = \mathbb{1}[\text{available}_i] \cdot \mathrm{Bernoulli}(p_{keep}),
        \qquad \text{and if } \textstyle\sum_i \delta_i = 0:\ \delta_{i^*} = 1,\
        i^* \sim \mathrm{Uniform}\{i : \text{available}_i\}

    An unavailable modality is never kept, and no sample ends with nothing. The draw uses no
    data-dependent Python branch, so it also runs on the ``meta`` device (FLOP counting).

    Args:
        available: ``(B, M)`` bool; every row must hold at least one True.
        p_keep: keep probability of each available modality, in ``(0, 1]``.
        generator: optional random generator (on the device of ``available``) for reproducible draws.

    Returns:
        ``(B, M)`` bool, the indicators :math:`\delta`.

    Raises:
        ValueError: if ``available`` is not two-dimensional or ``p_keep`` lies outside ``(0, 1]``.
    """
    if available.dim() != 2:
        raise ValueError(f"available must have shape (B, M), got {tuple(available.shape)}")
    if not 0.0 < p_keep <= 1.0:
        raise ValueError(f"p_keep must lie in (0, 1], got {p_keep}")
    available = available.bool()
    uniform = torch.rand(available.shape, generator=generator, device=available.device)  # (B, M)
    keep = available & (uniform < p_keep)
    # The fallback modality: the argmax of fresh uniform scores, with unavailable ones pushed below
    # every available score, is a uniform draw among the available modalities of the row.
    scores = torch.rand(available.shape, generator=generator, device=available.device)  # (B, M)
    scores = scores.masked_fill(~available, -1.0)
    fallback = torch.nn.functional.one_hot(scores.argmax(dim=1), available.shape[1]).bool()  # (B, M)
    kept_none = ~keep.any(dim=1, keepdim=True)  # (B, 1)
    return keep | (kept_none & fallback & available)
