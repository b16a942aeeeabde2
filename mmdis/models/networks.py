r"""The multimodal segmentation networks: RobustSeg (Chen et al., 2019) and its ablations and baselines.

``model(x, available)`` runs :meth:`MultimodalSegNet.encode` and :meth:`MultimodalSegNet.decode`; the
two are public so that one encoding of a case serves all 15 modality subsets (the encoders of RobustSeg
see one modality each, so which modalities are available only matters from the fusion on).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor, nn

from mmdis.conventions import NUM_CLASSES, NUM_MODALITIES
from mmdis.models.blocks import LEAKY_SLOPE
from mmdis.models.decoders import ReconDecoder, SegDecoder
from mmdis.models.encoders import (
    NUM_STAGES,
    AppearanceEncoder,
    ContentEncoder,
    gaussian_kl,
    reparameterize,
    stage_channels,
)
from mmdis.models.fusion import FUSIONS, build_fusion

#: Input spatial sizes must be multiples of this (three stride-2 stages).
SIZE_MULTIPLE = 2 ** (NUM_STAGES - 1)


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a network; kept as ``model.config``.

    Attributes:
        variant: name the config was built from (informative only).
        base_channels: width ``C`` of the first stage; stages have ``C, 2C, 4C, 8C`` channels.
        num_classes: segmentation classes ``K`` (4 canonical labels).
        num_modalities: ``M`` input modalities.
        fusion: one of ``gated``, ``mean``, ``max``, ``hemis`` (ignored when ``early_fusion``).
        disentangle: add appearance encoders, reconstruction decoders and the KL term.
        early_fusion: one encoder over the ``M``-channel input with missing inputs zero-filled
            (the "imputation" baseline) instead of one content encoder per modality.
        modality_dropout: drop available modalities at random in train mode (``delta_i``).
        p_keep: probability of keeping an available modality under modality dropout.
        code_dim: size of the appearance code ``a_i``.
        appearance_channels: width of the first appearance-encoder layer.
        recon_channels: width of the reconstruction decoders' residual blocks (``None``: ``2 C``).
        recon_res_blocks: number of AdaIN residual blocks per reconstruction decoder.
        leaky_slope: negative slope of the LeakyReLUs.
    """

    variant: str = "custom"
    base_channels: int = 16
    num_classes: int = NUM_CLASSES
    num_modalities: int = NUM_MODALITIES
    fusion: str = "gated"
    disentangle: bool = True
    early_fusion: bool = False
    modality_dropout: bool = True
    p_keep: float = 0.5
    code_dim: int = 8
    appearance_channels: int = 16
    recon_channels: int | None = None
    recon_res_blocks: int = 4
    leaky_slope: float = LEAKY_SLOPE

    def __post_init__(self) -> None:
        for name in ("base_channels", "num_classes", "num_modalities", "code_dim", "appearance_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        rc, nres = self.recon_channels, self.recon_res_blocks
        if rc is not None and (not isinstance(rc, int) or rc < 2):
            raise ValueError(f"recon_channels must be an integer >= 2 or None, got {rc!r}")
        if not isinstance(nres, int) or nres < 0:
            raise ValueError(f"recon_res_blocks must be a non-negative integer, got {nres!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {self.fusion!r}")
        if not 0.0 < self.p_keep <= 1.0:
            raise ValueError(f"p_keep must lie in (0, 1], got {self.p_keep}")
        if self.early_fusion and self.disentangle:
            raise ValueError(
                "disentangle needs per-modality encoders; it cannot be combined with early_fusion"
            )

    @property
    def recon_width(self) -> int:
        return self.recon_channels if self.recon_channels is not None else 2 * self.base_channels


#: Named variants: overrides of :class:`ModelConfig`.
VARIANTS: dict[str, dict] = {
    "robustseg": {"fusion": "gated", "disentangle": True},
    "ablation-mean": {"fusion": "mean", "disentangle": False},
    "ablation-mean-dis": {"fusion": "mean", "disentangle": True},
    "hemis": {"fusion": "hemis", "disentangle": False},
    "imputation": {"early_fusion": True, "disentangle": False, "modality_dropout": False},
}


@dataclass
class Encoded:
    """What the encoders produce from a full input, independent of availability.

    Attributes:
        x: the input ``(B, M, D, H, W)`` (kept for the early-fusion baseline, which encodes in ``decode``).
        content: per stage ``s``, ``content[s][:, i]`` is :math:`c_i` at stage ``s``:
            ``(B, M, C * 2**s, D / 2**s, ...)``; ``None`` for early fusion.
        appearance: :math:`a_i` as ``appearance[:, i]`` ``(B, M, code_dim)`` (sampled in train mode, ``mu``
            in eval), or ``None`` without disentanglement.
        mu, logvar: posterior of the appearance codes, ``(B, M, code_dim)`` or ``None``.
    """

    x: Tensor
    content: list[Tensor] | None = None
    appearance: Tensor | None = None
    mu: Tensor | None = None
    logvar: Tensor | None = None

    def repeat(self, n: int) -> Encoded:
        """Each sample repeated ``n`` times along the batch (``b * n + k`` is copy ``k`` of ``b``), e.g.
        to decode all 15 modality subsets of one case in one batch."""

        def rep(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.repeat_interleave(n, dim=0)  # (B * n, ...)

        content = None if self.content is None else [rep(c) for c in self.content]
        return Encoded(rep(self.x), content, rep(self.appearance), rep(self.mu), rep(self.logvar))


@dataclass
class ModelOutput:
    """Everything the losses and the evaluation need from one forward pass.

    Attributes:
        seg: logits ``(B, K, D, H, W)``.
        recon: reconstructions :math:`\\hat x_i` ``(B, M, D, H, W)`` or ``None``.
        mu, logvar: appearance posteriors ``(B, M, code_dim)`` or ``None``.
        kl: per-sample, per-modality KL divergence ``(B, M)`` or ``None``.
        gates: per stage the gate maps ``(B, M, D_s, H_s, W_s)`` (gated fusion only) or ``None``.
        delta: ``(B, M)`` bool, the modalities actually fused (after modality dropout).
        fused: per stage the fused maps ``z`` ``(B, C_s, D_s, H_s, W_s)``.
    """

    seg: Tensor
    delta: Tensor
    recon: Tensor | None = None
    mu: Tensor | None = None
    logvar: Tensor | None = None
    kl: Tensor | None = None
    gates: list[Tensor] | None = None
    fused: list[Tensor] = field(default_factory=list)


def modality_dropout(
    available: Tensor, p_keep: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    r"""Bernoulli indicators :math:`\delta_i` of Eq. (1).

    .. math::
        \delta_i = \mathbb{1}[\text{available}_i] \cdot \mathrm{Bernoulli}(p_{keep}),

    and where a sample would keep nothing, one of its available modalities (uniformly at random) is
    switched back on. Never keeps an unavailable modality. Written without data-dependent Python
    branches, so it also runs on the ``meta`` device.

    Args:
        available: ``(B, M)`` bool; every row must hold at least one True.
        p_keep: keep probability of each available modality.
        generator: optional random generator (on the device of ``available``).

    Returns:
        ``(B, M)`` bool.
    """
    if available.dim() != 2:
        raise ValueError(f"available must have shape (B, M), got {tuple(available.shape)}")
    available = available.bool()
    u = torch.rand(available.shape, generator=generator, device=available.device)
    keep = available & (u < p_keep)
    # A random available modality per row: the argmax of uniform scores restricted to available ones.
    scores = torch.rand(available.shape, generator=generator, device=available.device)
    scores = scores.masked_fill(~available, -1.0)
    pick = nn.functional.one_hot(scores.argmax(dim=1), available.shape[1]).bool()  # (B, M)
    none_kept = ~keep.any(dim=1, keepdim=True)  # (B, 1)
    return keep | (none_kept & pick & available)


class MultimodalSegNet(nn.Module):
    """Per-modality content encoders, per-stage fusion, a U-Net segmentation decoder and (optionally)
    the appearance encoders and reconstruction decoders of feature disentanglement.

    Call as ``model(x, available)`` with ``x`` ``(B, M, D, H, W)`` and ``available`` ``(B, M)`` bool.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        m, base = config.num_modalities, config.base_channels
        widths = stage_channels(base)
        if config.early_fusion:
            self.encoders = nn.ModuleList([ContentEncoder(m, base, config.leaky_slope)])
            self.fusions = None
        else:
            self.encoders = nn.ModuleList([ContentEncoder(1, base, config.leaky_slope) for _ in range(m)])
            self.fusions = nn.ModuleList(
                [build_fusion(config.fusion, w, m, config.leaky_slope) for w in widths]
            )
        self.seg_decoder = SegDecoder(base, config.num_classes, config.leaky_slope)
        if config.disentangle:
            self.appearance_encoders = nn.ModuleList(
                [AppearanceEncoder(1, config.appearance_channels, config.code_dim) for _ in range(m)]
            )
            self.recon_decoders = nn.ModuleList(
                [
                    ReconDecoder(widths[-1], config.recon_width, config.code_dim, config.recon_res_blocks)
                    for _ in range(m)
                ]
            )
        else:
            self.appearance_encoders = None
            self.recon_decoders = None

    # ----------------------------------------------------------------------------------- checks
    def _check_x(self, x: Tensor) -> None:
        m = self.config.num_modalities
        if x.dim() != 5:
            raise ValueError(f"x must have shape (B, {m}, D, H, W), got {tuple(x.shape)}")
        if x.shape[1] != m:
            raise ValueError(f"x must have {m} channels (one per modality) in dim 1, got {x.shape[1]}")
        bad = [s for s in x.shape[2:] if s % SIZE_MULTIPLE]
        if bad:
            raise ValueError(
                f"x spatial size {tuple(x.shape[2:])} must be divisible by {SIZE_MULTIPLE} in every axis"
            )

    def _check_available(self, available: Tensor, batch: int) -> Tensor:
        m = self.config.num_modalities
        if not isinstance(available, Tensor) or tuple(available.shape) != (batch, m):
            shape = tuple(available.shape) if isinstance(available, Tensor) else type(available).__name__
            raise ValueError(f"available must be a bool tensor of shape ({batch}, {m}), got {shape}")
        available = available.bool()
        if available.device.type != "meta" and not bool(available.any(dim=1).all()):
            rows = (~available.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"available has no modality for sample(s) {rows}: at least one must be True")
        return available

    # ------------------------------------------------------------------------------ forward
    def encode(self, x: Tensor) -> Encoded:
        """Run the encoders that do not depend on availability.

        Args:
            x: ``(B, M, D, H, W)``.
        """
        self._check_x(x)
        if self.config.early_fusion:
            return Encoded(x=x)
        per_mod = [enc(x[:, i : i + 1]) for i, enc in enumerate(self.encoders)]  # M x S x (B, C_s, ...)
        content = [torch.stack(stage, dim=1) for stage in zip(*per_mod)]  # S x (B, M, C_s, D_s, H_s, W_s)
        enc = Encoded(x=x, content=content)
        if self.appearance_encoders is not None:
            posts = [e(x[:, i : i + 1]) for i, e in enumerate(self.appearance_encoders)]
            enc.mu = torch.stack([p[0] for p in posts], dim=1)  # (B, M, code_dim)
            enc.logvar = torch.stack([p[1] for p in posts], dim=1)  # (B, M, code_dim)
            enc.appearance = reparameterize(enc.mu, enc.logvar) if self.training else enc.mu
        return enc

    def decode(self, encoded: Encoded, available: Tensor) -> ModelOutput:
        """Fuse the available modalities and decode.

        In train mode ``delta`` is drawn by :func:`modality_dropout` (when enabled), otherwise
        ``delta = available``.

        Args:
            encoded: output of :meth:`encode` (or its :meth:`Encoded.repeat`).
            available: ``(B, M)`` bool.
        """
        x = encoded.x
        available = self._check_available(available, x.shape[0])
        cfg = self.config
        if self.training and cfg.modality_dropout:
            delta = modality_dropout(available, cfg.p_keep)
        else:
            delta = available
        if cfg.early_fusion:
            x_in = x * delta.to(x.dtype)[:, :, None, None, None]  # (B, M, D, H, W), missing -> 0
            fused = self.encoders[0](x_in)
            gates = None
        else:
            assert encoded.content is not None and self.fusions is not None
            fused, gate_list = [], []
            for fusion, content in zip(self.fusions, encoded.content):
                z, g = fusion(content, delta)
                fused.append(z)
                gate_list.append(g)
            gates = gate_list if cfg.fusion == "gated" else None
        out = ModelOutput(seg=self.seg_decoder(fused), delta=delta, gates=gates, fused=fused)
        if self.recon_decoders is not None:
            assert encoded.appearance is not None and encoded.mu is not None and encoded.logvar is not None
            z = fused[-1]  # (B, 8C, D/8, H/8, W/8)
            recon = [dec(z, encoded.appearance[:, i]) for i, dec in enumerate(self.recon_decoders)]
            out.recon = torch.cat(recon, dim=1)  # M x (B, 1, D, H, W) -> (B, M, D, H, W)
            out.mu, out.logvar = encoded.mu, encoded.logvar
            out.kl = gaussian_kl(encoded.mu, encoded.logvar)  # (B, M)
        return out

    def forward(self, x: Tensor, available: Tensor) -> ModelOutput:
        """``x`` ``(B, M, D, H, W)``, ``available`` ``(B, M)`` bool -> :class:`ModelOutput`."""
        self._check_x(x)
        self._check_available(available, x.shape[0])
        return self.decode(self.encode(x), available)


def build_model(name: str = "robustseg", **overrides) -> MultimodalSegNet:
    """Build a named variant (see :data:`VARIANTS`), with :class:`ModelConfig` fields overridden.

    Raises:
        ValueError: for an unknown variant name or an unknown or invalid config field.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown model variant {name!r}; known variants: {sorted(VARIANTS)}")
    known = set(asdict(ModelConfig()))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s) {unknown}; known fields: {sorted(known)}")
    config = replace(ModelConfig(variant=name, **VARIANTS[name]), **overrides)
    return MultimodalSegNet(config)
