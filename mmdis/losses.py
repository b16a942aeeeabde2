r"""Training objective of RobustSeg, Eqs. (1)-(3) of Chen et al. (2019).

.. math:: \mathcal{L}_{total} = \mathcal{L}_{seg} + \lambda \mathcal{L}_{rec} + \beta \mathcal{L}_{KL}

Each term is a scalar averaged over the batch. :func:`total_loss` is the entry point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmdis.models.networks import ModelOutput

#: Where the reconstruction L1 is averaged (:attr:`LossConfig.recon_region`).
RECON_REGIONS = ("brain", "patch")


@dataclass(frozen=True)
class LossConfig:
    """Weights of Eq. (3) and the Dice stabiliser of Eq. (2).

    Attributes:
        lambda_rec: :math:`\\lambda`, weight of the reconstruction loss (paper: 0.1).
        beta_kl: :math:`\\beta`, weight of the KL loss (paper: 0.1).
        eps: :math:`\\varepsilon` in the Dice denominator (paper: 1e-7).
        recon_region: where the L1 of Eq. (1) is averaged: ``brain`` (inside the brain mask; ours) or
            ``patch`` (every voxel of the patch, background included; the authors' code).
    """

    lambda_rec: float = 0.1
    beta_kl: float = 0.1
    eps: float = 1e-7
    recon_region: str = "brain"

    def __post_init__(self) -> None:
        for name in ("lambda_rec", "beta_kl"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.eps <= 0:
            raise ValueError(f"eps must be positive, got {self.eps}")
        if self.recon_region not in RECON_REGIONS:
            raise ValueError(f"loss.recon_region must be one of {list(RECON_REGIONS)}, "
                             f"got {self.recon_region!r}")


def _only_present(values: Tensor, present: Tensor | None) -> Tensor:
    """Zero the entries of ``values`` ``(B, M, ...)`` that belong to modalities absent from the data.

    ``torch.where`` rather than a product: the image of an absent modality may hold anything, even
    NaN, and ``0 * nan`` would still be ``nan``.
    """
    if present is None:
        return values
    if tuple(present.shape) != tuple(values.shape[:2]):
        raise ValueError(f"present must have shape {tuple(values.shape[:2])}, got {tuple(present.shape)}")
    keep = present.bool().reshape(*present.shape, *(1,) * (values.dim() - 2))  # (B, M, 1, ...)
    return torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))


def _one_hot(y: Tensor, num_classes: int) -> Tensor:
    """Labels ``(B, D, H, W)`` -> one-hot ``(B, K, D, H, W)`` float."""
    classes = torch.arange(num_classes, device=y.device)[None, :, None, None, None]  # (1, K, 1, 1, 1)
    return (y.long()[:, None] == classes).float()  # (B, 1, D, H, W) vs (1, K, 1, 1, 1) -> (B, K, D, H, W)


def dice_loss(logits: Tensor, y: Tensor, eps: float = 1e-7) -> Tensor:
    r"""Soft multi-class Dice loss, the Dice term of Eq. (2).

    .. math::
        \mathrm{Dice}(\hat Y, Y) = 1 - \frac{1}{|K|} \sum_{k \in K}
        \frac{2 \sum_{j=1}^{N} y^k_j q^k_j}{\sum_{j=1}^{N} y^k_j y^k_j + q^k_j q^k_j + \varepsilon}

    with :math:`q^k_j` the softmax probabilities (the paper writes the one-hot output :math:`\hat y`,
    which has no gradient) and :math:`j` running over every voxel of the batch. This is the paper's
    :math:`-\sum_k(\cdot)` rescaled by :math:`1/|K|` and shifted by 1, so it lies in :math:`[0, 1]`;
    the gradient differs only by the constant factor :math:`1/|K|`.

    Args:
        logits: ``(B, K, D, H, W)``.
        y: integer labels ``(B, D, H, W)`` in ``0..K-1``.
    """
    q = logits.softmax(dim=1)
    onehot = _one_hot(y, logits.shape[1])
    dims = (0, 2, 3, 4)
    inter = (onehot * q).sum(dims)  # (K,)
    denom = (onehot * onehot).sum(dims) + (q * q).sum(dims) + eps  # (K,)
    return 1.0 - (2.0 * inter / denom).mean()


def class_weights(y: Tensor, num_classes: int) -> Tensor:
    r"""Online class weights of the weighted cross-entropy, computed from the labels of the batch.

    .. math:: w_k = 1 - \frac{N_k}{N}

    with :math:`N_k` the number of voxels of class :math:`k` in the batch and :math:`N` all voxels (the
    authors' code). Rare classes get weights close to 1, the dominant background a small one. The
    weights are not renormalised: with :math:`K = 4` they sum to :math:`K - 1 = 3` whatever the batch.
    A batch of a single class gets weight 0 for it, so its cross-entropy vanishes and only the Dice
    term trains on such a patch (the authors' behaviour; background-only crops are where it happens).

    Args:
        y: integer labels ``(B, D, H, W)``.

    Returns:
        ``(K,)`` float weights.
    """
    flat = y.reshape(-1).long()  # (N,)
    ones = torch.ones_like(flat, dtype=torch.float)
    counts = torch.zeros(num_classes, device=y.device).scatter_add_(0, flat, ones)  # (K,): N_k
    return 1.0 - counts / counts.sum()


def weighted_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    r"""Class-weighted cross-entropy, the :math:`H(\hat Y, Y)` term of Eq. (2).

    .. math:: H(\hat Y, Y) = -\frac{1}{N} \sum_{j=1}^{N} \sum_{k \in K} w_k\, y^k_j \log q^k_j

    with :math:`w_k` from :func:`class_weights`. The mean is over all :math:`N` voxels (not over the
    weights, unlike ``F.cross_entropy(weight=...)`` with ``reduction="mean"``).

    Args:
        logits: ``(B, K, D, H, W)``.
        y: integer labels ``(B, D, H, W)``.
    """
    w = class_weights(y, logits.shape[1]).to(logits.dtype)
    logq = logits.log_softmax(dim=1)  # (B, K, D, H, W)
    nll = -logq.gather(1, y.long()[:, None]).squeeze(1)  # (B, D, H, W): -log q^{y_j}_j
    return (w[y.long()] * nll).mean()


def segmentation_loss(logits: Tensor, y: Tensor, eps: float = 1e-7) -> tuple[Tensor, Tensor, Tensor]:
    r"""Eq. (2): :math:`\mathcal{L}_{seg} = \mathrm{Dice}(\hat Y, Y) + H(\hat Y, Y)`.

    Returns:
        ``(seg, dice, ce)`` scalars.
    """
    dice = dice_loss(logits, y, eps)
    ce = weighted_cross_entropy(logits, y)
    return dice + ce, dice, ce


def reconstruction_loss(
    recon: Tensor, x: Tensor, present: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    r"""Eq. (1): :math:`\mathcal{L}_{rec} = \sum_{i=1}^{M} \| D^r_i(z, a_i) - x_i \|_1`.

    The L1 norm of each modality is the mean absolute error over its voxels (over the brain mask when
    given), summed over the modalities that are present in the data, then averaged over the batch.

    Args:
        recon: :math:`\hat x` ``(B, M, D, H, W)``.
        x: images ``(B, M, D, H, W)``.
        present: ``(B, M)`` bool, modalities whose image exists in the data (``None``: all). An absent
            modality contributes nothing, since there is no target to reconstruct. (For training, fill
            absent images with zeros anyway: the appearance encoder still reads them, and a NaN there
            would reach the weights' gradients.)
        mask: brain mask ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` (``None``: every voxel).
    """
    # Masked before the absolute value, whose derivative at a NaN target would be NaN even where the
    # incoming gradient is zero.
    err = _only_present(recon - x, present).abs()  # (B, M, D, H, W)
    if mask is None:
        per_mod = err.mean(dim=(2, 3, 4))  # (B, M)
    else:
        mk = mask.reshape(mask.shape[0], 1, *x.shape[2:]).to(err.dtype)  # (B, 1, D, H, W)
        per_mod = (err * mk).sum(dim=(2, 3, 4)) / mk.sum(dim=(2, 3, 4)).clamp_min(1.0)  # (B, M)
    return per_mod.sum(dim=1).mean()


def kl_loss(kl: Tensor, present: Tensor | None = None) -> Tensor:
    r""":math:`\mathcal{L}_{KL} = \sum_{i=1}^{M} \mathbb{E}[D_{KL}(p(a_i) \| \mathcal{N}(0, I))]`.

    Args:
        kl: per-sample, per-modality divergences ``(B, M)`` (``ModelOutput.kl``).
        present: ``(B, M)`` bool, modalities present in the data (``None``: all).

    Returns:
        The sum over present modalities, averaged over the batch (the expectation).
    """
    return _only_present(kl, present).sum(dim=1).mean()


def total_loss(
    out: ModelOutput,
    x: Tensor,
    y: Tensor,
    config: LossConfig | None = None,
    present: Tensor | None = None,
    mask: Tensor | None = None,
) -> dict[str, Tensor]:
    r"""Eq. (3), the overall objective.

    .. math::
        \mathcal{L}_{total} = \mathcal{L}_{seg} + \lambda \mathcal{L}_{rec} + \beta \mathcal{L}_{KL}

    Models without disentanglement have ``rec = kl = 0``.

    Args:
        out: model output (``seg`` ``(B, K, D, H, W)``, optional ``recon`` and ``kl``).
        x: input images ``(B, M, D, H, W)``, the reconstruction targets.
        y: integer labels ``(B, D, H, W)``.
        config: loss weights (default :class:`LossConfig`).
        present: ``(B, M)`` bool, modalities present in the data (``None``: all).
        mask: brain mask ``(B, D, H, W)``; the reconstruction L1 is averaged inside it when
            ``config.recon_region`` is ``brain`` (and over the whole patch when ``patch`` or ``None``).

    Returns:
        Scalars ``"total"``, ``"seg"``, ``"dice"``, ``"ce"``, ``"rec"``, ``"kl"``.
    """
    config = config or LossConfig()
    if y.shape != (out.seg.shape[0], *out.seg.shape[2:]):
        raise ValueError(f"y must have shape {(out.seg.shape[0], *out.seg.shape[2:])}, got {tuple(y.shape)}")
    seg, dice, ce = segmentation_loss(out.seg, y, config.eps)
    zero = out.seg.new_zeros(())
    rec_mask = mask if config.recon_region == "brain" else None
    rec = zero if out.recon is None else reconstruction_loss(out.recon, x, present, rec_mask)
    kl = zero if out.kl is None else kl_loss(out.kl, present)
    total = seg + config.lambda_rec * rec + config.beta_kl * kl
    return {"total": total, "seg": seg, "dice": dice, "ce": ce, "rec": rec, "kl": kl}
