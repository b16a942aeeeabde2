"""Content encoders :math:`E^c_i` and appearance encoders :math:`E^a_i`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmdis.models.blocks import LEAKY_SLOPE, ResBlock, conv3d

#: Number of resolution stages of the content encoders and the segmentation decoder.
NUM_STAGES = 4


def stage_channels(base_channels: int, stages: int = NUM_STAGES) -> list[int]:
    """Channel widths per stage: ``[C, 2C, 4C, 8C]``."""
    return [base_channels * 2**s for s in range(stages)]


class ContentEncoder(nn.Module):
    r"""Content encoder :math:`c_i = E^c_i(x_i)`: a residual U-Net encoder with four stages.

    Stage 0 is a residual block at full resolution; each later stage is a stride-2 3x3x3 convolution
    (channels doubled) followed by a residual block. Instance norm and LeakyReLU throughout.

    Shapes:
        input ``(B, in_channels, D, H, W)`` -> list of 4 maps, stage ``s`` of shape
        ``(B, C * 2**s, D / 2**s, H / 2**s, W / 2**s)``.
    """

    def __init__(self, in_channels: int, base_channels: int, slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        widths = stage_channels(base_channels)
        self.blocks = nn.ModuleList([ResBlock(in_channels, widths[0], slope)])
        self.downs = nn.ModuleList()
        for s in range(1, NUM_STAGES):
            self.downs.append(
                nn.Sequential(
                    conv3d(widths[s - 1], widths[s], stride=2),
                    nn.InstanceNorm3d(widths[s], affine=True),
                    nn.LeakyReLU(slope),
                )
            )
            self.blocks.append(ResBlock(widths[s], widths[s], slope))

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = [self.blocks[0](x)]
        for down, block in zip(self.downs, self.blocks[1:]):
            feats.append(block(down(feats[-1])))
        return feats


class AppearanceEncoder(nn.Module):
    r"""Appearance encoder :math:`a_i = E^a_i(x_i)` returning the Gaussian posterior of an 8-d code.

    A 7x7x7 convolution, then four stride-2 convolutions of ``kernel_size`` (3; the authors' 4) with
    widths ``w, 2w, 4w, 4w, 4w`` (the authors' 32, 64, 128, 128, 128; ReLU, no normalisation, as in
    MUNIT's style encoder), global average pooling, and a linear layer to ``(mu, logvar)``.

    Shapes:
        input ``(B, 1, D, H, W)`` -> ``mu``, ``logvar`` each ``(B, appearance_dim)``.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, appearance_dim: int = 8,
                 kernel_size: int = 3) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = [conv3d(in_channels, widths[0], kernel_size=7), nn.ReLU()]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            # padding (k - 1) // 2 halves an even size exactly for k = 3 and for the authors' k = 4.
            down = nn.Conv3d(w_in, w_out, kernel_size, stride=2, padding=(kernel_size - 1) // 2)
            layers += [down, nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], 2 * appearance_dim)
        self.appearance_dim = appearance_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x).mean(dim=(2, 3, 4))  # (B, 4 width): global average pool
        mu, logvar = self.head(h).split(self.appearance_dim, dim=1)  # 2 x (B, appearance_dim)
        return mu, logvar


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""Reparameterised sample of the appearance code.

    .. math:: a_i = \mu_i + \sigma_i \odot \epsilon,\quad \epsilon \sim \mathcal{N}(0, I),
        \quad \sigma_i = \exp(\tfrac12 \log \sigma_i^2)

    Shapes: ``mu``, ``logvar`` ``(..., appearance_dim)`` -> same.
    """
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""KL divergence of :math:`\mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)` from :math:`\mathcal{N}(0, I)`.

    .. math::
        D_{KL}\big(q(a_i) \,\|\, \mathcal{N}(0, I)\big)
        = \tfrac12 \sum_{d} \big(\mu_d^2 + \sigma_d^2 - 1 - \log \sigma_d^2\big)

    the summand of :math:`\mathcal{L}_{KL} = \sum_{i=1}^{M} \mathbb{E}[D_{KL}(p(a_i) \| \mathcal{N}(0, I))]`.

    Shapes: ``mu``, ``logvar`` ``(..., appearance_dim)`` -> ``(...)`` (summed over the code dimension).
    Computed in float32 even under bf16 autocast, where ``exp(v) - 1 - v`` of a small ``v`` would round
    to a (slightly negative) number of the order of the bf16 precision.
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)
