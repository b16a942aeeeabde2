r"""The multimodal segmentation networks: RobustSeg (Chen et al., 2019), its ablations and baselines.

All five networks are one class, :class:`MultimodalSegNet`, switched by the flags of :class:`ModelConfig`;
:func:`build_model` knows the named presets of :data:`VARIANTS`.

``model(x, available)`` is :meth:`~MultimodalSegNet.encode`, then modality dropout (training only), then
:meth:`~MultimodalSegNet.decode`. Encoding and decoding are public because every encoder of RobustSeg
sees one modality: which modalities are available matters only from the fusion on, so one encoding of a
case serves all 15 modality subsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mmdis.models.config import ModelConfig, variant_config
from mmdis.models.decoders import ReconDecoder, SegDecoder
from mmdis.models.dropout import modality_dropout
from mmdis.models.encoders import (
    NUM_STAGES,
    AppearanceEncoder,
    ContentEncoder,
    gaussian_kl,
    reparameterize,
    stage_channels,
)
from mmdis.models.fusion import build_fusion

#: Input spatial sizes must be multiples of this (three stride-2 stages).
SIZE_MULTIPLE = 2 ** (NUM_STAGES - 1)


@dataclass
class Encoded:
    """What the encoders make of a full input, before anything depends on availability.

    Attributes:
        x: the input ``(B, M, D, H, W)``, kept for the early-fusion baseline, which can only encode once
            it knows which images to zero-fill.
        content: per stage ``s``, ``content[s][:, i]`` is :math:`c_i`, shape
            ``(B, M, C * 2**s, D / 2**s, H / 2**s, W / 2**s)``; ``None`` for early fusion.
        appearance: ``appearance[:, i]`` is :math:`a_i`, ``(B, M, appearance_dim)``: sampled in train mode,
            the mean in eval mode; ``None`` without disentanglement.
        mu, logvar: Gaussian posterior of the appearance codes, each ``(B, M, appearance_dim)`` or ``None``.
    """

    x: Tensor
    content: list[Tensor] | None = None
    appearance: Tensor | None = None
    mu: Tensor | None = None
    logvar: Tensor | None = None

    def repeat(self, n: int) -> Encoded:
        """Every sample repeated ``n`` times along the batch (row ``b * n + k`` is copy ``k`` of ``b``),
        e.g. to decode the 15 modality subsets of one case as one batch."""

        def rep(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.repeat_interleave(n, dim=0)  # (B * n, ...)

        content = None if self.content is None else [rep(c) for c in self.content]
        return Encoded(rep(self.x), content, rep(self.appearance), rep(self.mu), rep(self.logvar))


@dataclass
class ModelOutput:
    """Everything the losses and the evaluation need from one pass.

    Attributes:
        seg: logits :math:`\\hat Y`, ``(B, K, D, H, W)``.
        delta: ``(B, M)`` bool, the modalities actually fused (:math:`\\delta`, after modality dropout).
        recon: reconstructions :math:`\\hat x_i` as ``recon[:, i]``, ``(B, M, D, H, W)``, or ``None``.
        mu, logvar: appearance posteriors, ``(B, M, appearance_dim)``, or ``None``.
        kl: per-sample, per-modality KL divergence of the appearance code, ``(B, M)``, or ``None``.
        gates: per stage the gate maps :math:`g_i` as ``gates[s][:, i]``, ``(B, M, D_s, H_s, W_s)``
            (gated fusion only), or ``None``.
        fused: per stage the fused map ``z``, ``(B, C * 2**s, D_s, H_s, W_s)``; the last is the ``z`` of
            Eq. (1).
    """

    seg: Tensor
    delta: Tensor
    recon: Tensor | None = None
    mu: Tensor | None = None
    logvar: Tensor | None = None
    kl: Tensor | None = None
    gates: list[Tensor] | None = None
    fused: list[Tensor] = field(default_factory=list)


class MultimodalSegNet(nn.Module):
    """Per-modality content encoders, per-stage fusion and a U-Net segmentation decoder, optionally with
    the appearance encoders and reconstruction decoders of feature disentanglement; or, with
    ``early_fusion``, a plain 3-D U-Net over the stacked modalities.

    Call as ``model(x, available)`` with ``x`` ``(B, M, D, H, W)`` and ``available`` ``(B, M)`` bool.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        m, base, slope = config.in_modalities, config.base_channels, config.leaky_slope
        widths = stage_channels(base)
        self.fusions: nn.ModuleList | None = None
        if config.early_fusion:
            self.encoders = nn.ModuleList([ContentEncoder(m, base, slope)])
        else:
            self.encoders = nn.ModuleList([ContentEncoder(1, base, slope) for _ in range(m)])
            self.fusions = nn.ModuleList(
                [build_fusion(config.fusion, w, m, slope, config.gate_norm) for w in widths]
            )
        self.seg_decoder = SegDecoder(base, config.num_classes, slope)
        self.appearance_encoders: nn.ModuleList | None = None
        self.recon_decoders: nn.ModuleList | None = None
        if config.disentangle:
            dim = config.appearance_dim
            self.appearance_encoders = nn.ModuleList(
                [AppearanceEncoder(1, config.appearance_channels, dim, config.appearance_kernel)
                 for _ in range(m)]
            )
            self.recon_decoders = nn.ModuleList([
                ReconDecoder(widths[-1], config.recon_width, dim, config.recon_res_blocks,
                             up_kernel=config.recon_up_kernel, out_kernel=config.recon_out_kernel,
                             shared_adain=config.recon_shared_adain)
                for _ in range(m)
            ])

    # ----------------------------------------------------------------------------------- checks
    def _check_x(self, x: Tensor) -> None:
        m = self.config.in_modalities
        if not isinstance(x, Tensor) or x.dim() != 5:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {m}, D, H, W), got {shape}")
        if x.shape[1] != m:
            raise ValueError(f"x must have {m} channels (one per modality) in dim 1, got {x.shape[1]}")
        if any(s % SIZE_MULTIPLE for s in x.shape[2:]):
            raise ValueError(
                f"x spatial size {tuple(x.shape[2:])} must be divisible by {SIZE_MULTIPLE} in every axis"
            )

    def _check_available(self, available: Tensor, batch: int) -> Tensor:
        m = self.config.in_modalities
        if not isinstance(available, Tensor) or tuple(available.shape) != (batch, m):
            shape = tuple(available.shape) if isinstance(available, Tensor) else type(available).__name__
            raise ValueError(f"available must be a bool tensor of shape ({batch}, {m}), got {shape}")
        if available.is_floating_point() or available.is_complex():
            # A float mask is usually a probability or a weight by mistake; refuse to guess.
            raise ValueError(f"available must be a bool tensor, got dtype {available.dtype}")
        meta = available.device.type == "meta"
        if available.dtype != torch.bool and not meta and bool(((available != 0) & (available != 1)).any()):
            raise ValueError("available must be a bool tensor; an integer mask must hold only 0 and 1")
        available = available.bool()
        if not meta and not bool(available.any(dim=1).all()):
            rows = (~available.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"available has no modality for sample(s) {rows}: at least one must be True")
        return available

    # ---------------------------------------------------------------------------------- passes
    def encode(self, x: Tensor) -> Encoded:
        """Run the per-modality encoders once; nothing here depends on which modalities are available.

        In train mode the appearance codes are sampled (reparameterisation), in eval mode they are the
        posterior means.

        Args:
            x: ``(B, M, D, H, W)``.

        Raises:
            ValueError: if ``x`` has the wrong shape.
        """
        self._check_x(x)
        if self.config.early_fusion:
            return Encoded(x=x)
        per_modality = [enc(x[:, i : i + 1]) for i, enc in enumerate(self.encoders)]  # M x S x (B, C_s, ..)
        content = [torch.stack(stage, dim=1) for stage in zip(*per_modality)]  # S x (B, M, C_s, D_s, ..)
        encoded = Encoded(x=x, content=content)
        if self.appearance_encoders is not None:
            posteriors = [enc(x[:, i : i + 1]) for i, enc in enumerate(self.appearance_encoders)]
            encoded.mu = torch.stack([p[0] for p in posteriors], dim=1)  # (B, M, appearance_dim)
            encoded.logvar = torch.stack([p[1] for p in posteriors], dim=1)  # (B, M, appearance_dim)
            encoded.appearance = reparameterize(encoded.mu, encoded.logvar) if self.training else encoded.mu
        return encoded

    def decode(self, encoded: Encoded, available: Tensor, reconstruct: bool = True) -> ModelOutput:
        """Fuse exactly the modalities marked in ``available`` (:math:`\\delta = ` ``available``) and decode.

        No dropout happens here, so that decoding the 15 subsets of one encoding is deterministic.

        Args:
            encoded: output of :meth:`encode` (or its :meth:`Encoded.repeat`).
            available: ``(B, M)`` bool, the modalities to fuse.
            reconstruct: run the reconstruction decoders (``False`` skips them when only the segmentation
                is wanted, e.g. evaluating Dice; ``recon`` and ``kl`` are then ``None``).

        Returns:
            :class:`ModelOutput` with ``delta = available``.

        Raises:
            ValueError: if ``available`` has the wrong shape or dtype or a row without any modality.
        """
        x = encoded.x
        delta = self._check_available(available, x.shape[0])
        if self.config.early_fusion:
            # Zero-fill what is missing: after z-scoring inside the brain, 0 is the mean intensity.
            keep = delta[:, :, None, None, None]  # (B, M, 1, 1, 1)
            fused = self.encoders[0](torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)))
            gates = None
        else:
            assert encoded.content is not None and self.fusions is not None
            fused, gates = [], []
            for fusion, content in zip(self.fusions, encoded.content):
                z, gate = fusion(content, delta)
                fused.append(z)
                gates.append(gate)
            gates = gates if self.config.fusion == "gated" else None
        out = ModelOutput(seg=self.seg_decoder(fused), delta=delta, gates=gates, fused=fused)
        if self.recon_decoders is not None and reconstruct:
            assert encoded.appearance is not None and encoded.mu is not None and encoded.logvar is not None
            z = fused[-1]  # (B, 8C, D/8, H/8, W/8): Eq. (1) renders from the deepest fused code only
            recon = [dec(z, encoded.appearance[:, i]) for i, dec in enumerate(self.recon_decoders)]
            out.recon = torch.cat(recon, dim=1)  # M x (B, 1, D, H, W) -> (B, M, D, H, W)
            out.mu, out.logvar = encoded.mu, encoded.logvar
            out.kl = gaussian_kl(encoded.mu, encoded.logvar)  # (B, M)
        return out

    def forward(self, x: Tensor, available: Tensor, generator: torch.Generator | None = None) -> ModelOutput:
        """Encode, draw :math:`\\delta` by :func:`modality_dropout` (train mode, when enabled), decode.

        Args:
            x: ``(B, M, D, H, W)``; the image of a modality marked unavailable is never used.
            available: ``(B, M)`` bool.
            generator: optional random generator for the modality dropout draw.

        Returns:
            :class:`ModelOutput`; ``delta`` is the mask actually fused.

        Raises:
            ValueError: for a wrongly shaped ``x`` or ``available``, or a sample without any modality.
        """
        self._check_x(x)
        available = self._check_available(available, x.shape[0])  # before the costly encoders
        encoded = self.encode(x)
        delta = available
        if self.training and self.config.modality_dropout:
            delta = modality_dropout(available, self.config.p_keep, generator)
        return self.decode(encoded, delta)


def build_model(name: str = "robustseg", **overrides: Any) -> MultimodalSegNet:
    """Build a named preset of :data:`VARIANTS`, with :class:`ModelConfig` fields overridden.

    Example: ``build_model("hemis", base_channels=8)``.

    Raises:
        ValueError: for an unknown variant name (the message lists the known ones) or an unknown or
            invalid config field (the message names it).
    """
    return MultimodalSegNet(variant_config(name, **overrides))
