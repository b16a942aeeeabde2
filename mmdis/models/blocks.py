"""Building blocks shared by the encoders and decoders.

All blocks are 3-D and keep the layout ``(B, C, D, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Negative slope of every LeakyReLU in the content path (PyTorch's and TensorFlow's default is
#: 0.01 and 0.2 respectively; the paper does not say).
LEAKY_SLOPE = 0.01


def conv3d(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Conv3d:
    """A 3-D convolution with "same" padding for odd kernels (halving the size when ``stride=2``)."""
    return nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


class ResBlock(nn.Module):
    """Residual block ``conv-IN-LReLU-conv-IN (+ shortcut) -> LReLU``.

    The shortcut is the identity when the channel count is kept and a 1x1x1 convolution otherwise.

    Shapes:
        input ``(B, C_in, D, H, W)`` -> output ``(B, C_out, D, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        self.conv1 = conv3d(in_channels, out_channels)
        self.norm1 = nn.InstanceNorm3d(out_channels, affine=True)
        self.conv2 = conv3d(out_channels, out_channels)
        self.norm2 = nn.InstanceNorm3d(out_channels, affine=True)
        self.act = nn.LeakyReLU(slope)
        self.shortcut: nn.Module = (
            nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.act(h + self.shortcut(x))


def adain(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    r"""Adaptive instance normalisation.

    .. math:: \mathrm{AdaIN}(h, \gamma, \beta) = (1 + \gamma)\,\frac{h - \mu(h)}{\sigma(h)} + \beta

    where :math:`\mu, \sigma` are per-sample, per-channel statistics over the spatial axes. The scale is
    parameterised as ``1 + gamma`` so that a freshly initialised MLP starts near plain instance norm.

    Args:
        x: ``(B, C, D, H, W)``.
        gamma, beta: ``(B, C)``.
    """
    h = F.instance_norm(x, eps=eps)
    return (1 + gamma)[:, :, None, None, None] * h + beta[:, :, None, None, None]  # (B, C, 1, 1, 1) bcast


class AdaINResBlock(nn.Module):
    """Residual block ``conv-AdaIN-ReLU-conv-AdaIN + x`` whose norm parameters come from outside.

    Shapes:
        ``x`` ``(B, C, D, H, W)``; ``params`` ``(B, 4 C)`` = (gamma1, beta1, gamma2, beta2).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv1 = conv3d(channels, channels)
        self.conv2 = conv3d(channels, channels)

    @property
    def num_params(self) -> int:
        return 4 * self.channels

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        g1, b1, g2, b2 = params.split(self.channels, dim=1)  # 4 x (B, C)
        h = F.relu(adain(self.conv1(x), g1, b1))
        h = adain(self.conv2(h), g2, b2)
        return x + h


class LayerNorm3d(nn.Module):
    """Layer norm over ``(C, D, H, W)`` per sample with a per-channel affine (as in MUNIT's decoder)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        h = F.layer_norm(x, x.shape[1:], eps=self.eps)
        return h * self.weight[:, None, None, None] + self.bias[:, None, None, None]  # (C, 1, 1, 1) bcast
