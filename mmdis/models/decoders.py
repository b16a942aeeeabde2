r"""Segmentation decoder :math:`D^s` and reconstruction decoders :math:`D^r_i`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdis.models.blocks import LEAKY_SLOPE, AdaINResBlock, LayerNorm3d, ResBlock, conv3d
from mmdis.models.encoders import NUM_STAGES, stage_channels


class SegDecoder(nn.Module):
    r"""Segmentation decoder :math:`\hat Y = D^s(z)` with the fused maps of every stage as skips.

    Four residual blocks, mirroring the four of each content encoder: one on the deepest fused map
    :math:`z^{(4)}`, then three stages that each upsample by 2 with a 2x2x2 transposed convolution
    halving the channels, concatenate the fused skip map of that resolution and apply a residual block.
    A 1x1x1 convolution gives the class logits.

    Shapes:
        ``skips[s]`` ``(B, C * 2**s, D / 2**s, H / 2**s, W / 2**s)`` for ``s = 0..3`` -> logits
        ``(B, K, D, H, W)``.
    """

    def __init__(self, base_channels: int, num_classes: int, slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        widths = stage_channels(base_channels)
        self.bottom = ResBlock(widths[-1], widths[-1], slope)
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for s in reversed(range(NUM_STAGES - 1)):
            self.ups.append(nn.ConvTranspose3d(widths[s + 1], widths[s], kernel_size=2, stride=2))
            self.blocks.append(ResBlock(2 * widths[s], widths[s], slope))
        self.head = nn.Conv3d(widths[0], num_classes, 1)

    def forward(self, skips: list[Tensor]) -> Tensor:
        """Decode the per-stage fused maps (finest first) into class logits ``(B, K, D, H, W)``."""
        h = self.bottom(skips[-1])
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips[:-1])):
            h = block(torch.cat([up(h), skip], dim=1))  # cat: (B, 2 C_s, D_s, H_s, W_s)
        return self.head(h)


class ReconDecoder(nn.Module):
    r"""Reconstruction decoder :math:`\hat x_i = D^r_i(z, a_i)` (MUNIT-style).

    The deepest fused code ``z`` is projected to ``width`` channels by a 1x1x1 conv and goes through
    ``num_res`` residual blocks whose AdaIN parameters are produced by an MLP of the appearance code
    ``a_i`` (one ``(gamma, beta)`` per norm layer, or with ``shared_adain`` one pair shared by every
    norm layer, as in the authors' code); then ``num_up`` times (nearest upsampling x2, an
    ``up_kernel``-cubed conv halving the width, layer norm, ReLU) and a final ``out_kernel``-cubed conv
    to one channel. The authors use ``width`` 128, ``up_kernel`` 5, ``out_kernel`` 7 and a shared AdaIN.

    Shapes:
        ``z`` ``(B, 8C, D/8, H/8, W/8)``, ``a`` ``(B, appearance_dim)`` -> ``(B, 1, D, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        appearance_dim: int = 8,
        num_res: int = 4,
        num_up: int = NUM_STAGES - 1,
        mlp_hidden: int | None = None,
        up_kernel: int = 3,
        out_kernel: int = 3,
        shared_adain: bool = False,
    ) -> None:
        super().__init__()
        self.inp = nn.Conv3d(in_channels, width, 1)
        self.res = nn.ModuleList([AdaINResBlock(width) for _ in range(num_res)])
        self.shared_adain = shared_adain
        n_params = 2 * width if shared_adain else sum(block.num_params for block in self.res)
        hidden = mlp_hidden or width
        self.mlp = nn.Sequential(
            nn.Linear(appearance_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, n_params),
        )  # fmt: skip
        ups: list[nn.Module] = []
        w = width
        for _ in range(num_up):
            w_out = max(w // 2, 2)
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), conv3d(w, w_out, up_kernel)]
            ups += [LayerNorm3d(w_out), nn.ReLU()]
            w = w_out
        self.up = nn.Sequential(*ups)
        self.out = conv3d(w, 1, out_kernel)

    def forward(self, z: Tensor, a: Tensor) -> Tensor:
        """Render the content ``z`` ``(B, 8C, D/8, H/8, W/8)`` in the appearance ``a`` ``(B, A)``.

        Returns:
            :math:`\\hat x_i` ``(B, 1, D, H, W)``.
        """
        params = self.mlp(a)  # (B, sum of 4 * width over blocks), or (B, 2 * width) when shared
        if self.shared_adain:
            per_block = [params.repeat(1, 2)] * len(self.res)  # (gamma, beta, gamma, beta): (B, 4 width)
        else:
            per_block = params.split([b.num_params for b in self.res], dim=1)
        h = F.relu(self.inp(z))
        for block, p in zip(self.res, per_block):
            h = block(h, p)
        return self.out(self.up(h))
