r"""Fusion :math:`z = F(\delta_1 c_1, \dots, \delta_M c_M)` of the per-modality content maps of one stage.

Every fusion module takes the stacked content maps ``content`` of shape ``(B, M, C, D, H, W)`` and the
0/1 indicator ``delta`` ``(B, M)`` (True = modality used) and returns ``(z, gate)`` with ``z`` of shape
``(B, C, D, H, W)`` and ``gate`` ``(B, M, D, H, W)`` for gated fusion, ``None`` otherwise. A modality with
``delta[b, i] = False`` has no influence on ``z[b]``: gated fusion sees its content zeroed, the
statistics of mean, max and HeMIS fusion run over the used modalities only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmdis.models.blocks import LEAKY_SLOPE

FUSIONS = ("gated", "mean", "max", "hemis")


def _keep(delta: Tensor) -> Tensor:
    """``delta`` ``(B, M)`` -> bool ``(B, M, 1, 1, 1, 1)``, broadcastable against ``(B, M, C, D, H, W)``."""
    return delta.bool()[:, :, None, None, None, None]


def drop_unused(content: Tensor, delta: Tensor) -> Tensor:
    r""":math:`\delta_i c_i`: the content of an unused modality replaced by exact zeros.

    ``torch.where`` rather than a product, so that even a non-finite map (a NaN image of a missing
    modality) cannot leak into the fused code through ``0 * nan = nan``.

    Shapes: ``content`` ``(B, M, C, D, H, W)``, ``delta`` ``(B, M)`` -> ``(B, M, C, D, H, W)``.
    """
    return torch.where(_keep(delta), content, torch.zeros((), dtype=content.dtype, device=content.device))


def _count(delta: Tensor, like: Tensor) -> Tensor:
    """Number of used modalities per sample, ``(B, 1, 1, 1, 1)`` in the dtype of ``like``."""
    return delta.to(like.dtype).sum(dim=1)[:, None, None, None, None]


class GatedFusion(nn.Module):
    r"""Learned gating of Section 2.2.

    .. math::
        G = \sigma\big(\mathrm{conv}_{3^3}([\delta_1 c_1, \dots, \delta_M c_M])\big) = [g_1, \dots, g_M],
        \qquad \tilde c_i = \delta_i c_i \cdot g_i,
        \qquad z = \mathrm{LReLU}\big(\mathrm{conv}_{1^3}([\tilde c_1, \dots, \tilde c_M])\big)

    ``content[:, i]`` is :math:`c_i`, ``gate[:, i]`` is :math:`g_i`. With ``gate_norm`` the gate logits
    are instance-normalised (per sample and modality, with an affine) before the sigmoid, as in the
    authors' code: :math:`G = \sigma(\mathrm{IN}(\mathrm{conv}_{3^3}(\cdot)))`.
    """

    def __init__(self, channels: int, num_modalities: int, slope: float = LEAKY_SLOPE,
                 gate_norm: bool = False) -> None:
        super().__init__()
        self.gate_conv = nn.Conv3d(num_modalities * channels, num_modalities, 3, padding=1)
        self.gate_norm: nn.Module = (
            nn.InstanceNorm3d(num_modalities, affine=True) if gate_norm else nn.Identity()
        )
        self.bottleneck = nn.Conv3d(num_modalities * channels, channels, 1)
        self.act = nn.LeakyReLU(slope)

    def forward(self, content: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        r"""Gate and fuse one stage.

        A modality with :math:`\delta_i = 0` enters the gate convolution as zeros (the paper's
        :math:`F(\delta_1 c_1, \dots)`), so ``z`` does not depend on its image at all; its gate is
        still computed but multiplies zeros.

        Args:
            content: :math:`c_i` as ``content[:, i]``, ``(B, M, C, D, H, W)``.
            delta: ``(B, M)`` bool, the modalities to fuse.

        Returns:
            ``(z, gate)``: ``z`` ``(B, C, D, H, W)``, ``gate`` ``(B, M, D, H, W)`` in ``(0, 1)``.
        """
        b, m, c, d, h, w = content.shape
        content = drop_unused(content, delta)  # (B, M, C, D, H, W): delta_i c_i
        stacked = content.reshape(b, m * c, d, h, w)  # (B, M*C, D, H, W): concat over modalities
        gate = torch.sigmoid(self.gate_norm(self.gate_conv(stacked)))  # (B, M, D, H, W)
        gated = content * gate[:, :, None]  # (B, M, C, D, H, W), c~_i = c_i * g_i
        z = self.act(self.bottleneck(gated.reshape(b, m * c, d, h, w)))  # (B, C, D, H, W)
        return z, gate


def masked_mean(content: Tensor, delta: Tensor) -> Tensor:
    r""":math:`\bar c = \sum_i \delta_i c_i / \sum_i \delta_i`; ``(B, M, C, ...)`` -> ``(B, C, ...)``.

    The average runs over the used modalities only, so a missing one is not averaged in as zeros.
    """
    return drop_unused(content, delta).sum(dim=1) / _count(delta, content).clamp_min(1.0)


class MeanFusion(nn.Module):
    r"""Average over the used modalities, :math:`z = \frac{1}{\sum_i \delta_i} \sum_i \delta_i c_i`."""

    def forward(self, content: Tensor, delta: Tensor) -> tuple[Tensor, None]:
        return masked_mean(content, delta), None


class MaxFusion(nn.Module):
    r"""Element-wise maximum over the used modalities, :math:`z = \max_{i:\,\delta_i=1} c_i`."""

    def forward(self, content: Tensor, delta: Tensor) -> tuple[Tensor, None]:
        # -inf can never win the maximum, and every sample has at least one used modality.
        return content.masked_fill(~_keep(delta), float("-inf")).amax(dim=1), None


class HeMISFusion(nn.Module):
    r"""HeMIS abstraction layer: first and second moments over the used modalities, then a 1x1x1 conv.

    .. math::
        \bar c = \frac{\sum_i \delta_i c_i}{\sum_i \delta_i},\quad
        s^2 = \frac{\sum_i \delta_i (c_i - \bar c)^2}{\sum_i \delta_i},\quad
        z = \mathrm{LReLU}\big(\mathrm{conv}_{1^3}([\bar c, s^2])\big)

    The variance is the population variance, so it is 0 when one modality is used (HeMIS sets it to 0
    in that case too).
    """

    def __init__(self, channels: int, num_modalities: int, slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        self.proj = nn.Conv3d(2 * channels, channels, 1)
        self.act = nn.LeakyReLU(slope)

    def forward(self, content: Tensor, delta: Tensor) -> tuple[Tensor, None]:
        mean = masked_mean(content, delta)  # (B, C, D, H, W)
        sq_dev = drop_unused((content - mean[:, None]) ** 2, delta)  # (B, M, C, D, H, W)
        var = sq_dev.sum(dim=1) / _count(delta, content).clamp_min(1.0)  # (B, C, D, H, W)
        return self.act(self.proj(torch.cat([mean, var], dim=1))), None  # cat: (B, 2C, D, H, W)


def build_fusion(kind: str, channels: int, num_modalities: int, slope: float = LEAKY_SLOPE,
                 gate_norm: bool = False) -> nn.Module:
    """Fusion module for ``kind`` in :data:`FUSIONS` (``gate_norm`` applies to gated fusion only)."""
    if kind == "gated":
        return GatedFusion(channels, num_modalities, slope, gate_norm)
    if kind == "mean":
        return MeanFusion()
    if kind == "max":
        return MaxFusion()
    if kind == "hemis":
        return HeMISFusion(channels, num_modalities, slope)
    raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {kind!r}")
