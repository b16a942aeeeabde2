"""Typed configuration of the networks (:class:`ModelConfig`) and the named presets (:data:`VARIANTS`).

A config is all it takes to rebuild a network: ``MultimodalSegNet(ModelConfig.from_dict(json))``. Variants
are flags on one model (fusion kind, disentanglement, early fusion), never copies of classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mmdis.conventions import NUM_CLASSES, NUM_MODALITIES
from mmdis.models.blocks import LEAKY_SLOPE
from mmdis.models.fusion import FUSIONS
from mmdis.runtime.configs import check_fields, check_name


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a network; kept as ``model.config`` and saved beside a run as JSON.

    Attributes:
        name: the preset the config was built from (informative only).
        in_modalities: ``M``, number of input modalities.
        num_classes: ``K``, segmentation classes (the 4 canonical labels).
        base_channels: ``C``, width of the first stage; stages have ``C, 2C, 4C, 8C`` channels.
        fusion: ``gated``, ``mean``, ``max`` or ``hemis`` (ignored when ``early_fusion``).
        disentangle: add appearance encoders, reconstruction decoders and the KL term.
        early_fusion: one encoder over the ``M``-channel input with missing images zero-filled
            (the imputation baseline) instead of one content encoder per modality.
        modality_dropout: draw :math:`\\delta_i` at random among the available modalities in train mode.
        p_keep: probability of keeping an available modality under modality dropout.
        appearance_dim: size of the appearance code :math:`a_i`.
        appearance_channels: width of the first appearance-encoder layer.
        recon_channels: width of the reconstruction decoders' residual blocks (``None``: ``2 C``).
        recon_res_blocks: AdaIN residual blocks per reconstruction decoder.
        recon_up_kernel: kernel of the reconstruction decoders' upsampling convolutions (authors: 5).
        recon_out_kernel: kernel of their final convolution to one channel (authors: 7).
        recon_shared_adain: one AdaIN ``(gamma, beta)`` per decoder, shared by all its residual blocks
            (the authors' code), instead of one per normalisation layer.
        appearance_kernel: kernel of the appearance encoders' stride-2 convolutions (authors: 4).
        gate_norm: instance-normalise the gate logits before the sigmoid (the authors' code; the paper's
            equation has no norm).
        leaky_slope: negative slope of the LeakyReLUs.
    """

    name: str = "custom"
    in_modalities: int = NUM_MODALITIES
    num_classes: int = NUM_CLASSES
    base_channels: int = 16
    fusion: str = "gated"
    disentangle: bool = True
    early_fusion: bool = False
    modality_dropout: bool = True
    p_keep: float = 0.5
    appearance_dim: int = 8
    appearance_channels: int = 16
    recon_channels: int | None = None
    recon_res_blocks: int = 4
    recon_up_kernel: int = 3
    recon_out_kernel: int = 3
    recon_shared_adain: bool = False
    appearance_kernel: int = 3
    gate_norm: bool = False
    leaky_slope: float = LEAKY_SLOPE

    def __post_init__(self) -> None:
        positive = ("in_modalities", "base_channels", "appearance_dim", "appearance_channels")
        for key in (*positive, "num_classes", "recon_res_blocks"):
            value = getattr(self, key)
            # bool is an int subclass; True as a width is a mistake, not a 1.
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        for key in ("recon_up_kernel", "recon_out_kernel"):
            value = getattr(self, key)
            # "same" padding needs an odd kernel at stride 1.
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
                raise ValueError(f"{key} must be a positive odd integer, got {value!r}")
        k = self.appearance_kernel
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 7:
            raise ValueError(f"appearance_kernel must be an integer in [2, 7], got {k!r}")
        for key in ("disentangle", "early_fusion", "modality_dropout", "recon_shared_adain", "gate_norm"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be a bool, got {getattr(self, key)!r}")
        rc = self.recon_channels
        if rc is not None and (isinstance(rc, bool) or not isinstance(rc, int) or rc < 2):
            raise ValueError(f"recon_channels must be an integer >= 2 or None, got {rc!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {self.fusion!r}")
        if not 0.0 < self.p_keep <= 1.0:
            raise ValueError(f"p_keep must lie in (0, 1], got {self.p_keep}")
        if self.leaky_slope < 0:
            raise ValueError(f"leaky_slope must be non-negative, got {self.leaky_slope}")
        if self.early_fusion and self.disentangle:
            raise ValueError("disentangle needs per-modality encoders; it cannot be used with early_fusion")

    @property
    def recon_width(self) -> int:
        return self.recon_channels if self.recon_channels is not None else 2 * self.base_channels

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`, e.g. for a run's ``config.json``.

        Raises:
            ValueError: for a key that is not a field (named in the message) or an invalid value.
        """
        check_fields(cls, data, "ModelConfig")
        return cls(**data)


#: Named presets: overrides of :class:`ModelConfig`. The first three are the ablation of Fig. 3a.
VARIANTS: dict[str, dict[str, Any]] = {
    "robustseg": {"fusion": "gated", "disentangle": True},
    "ablation-mean": {"fusion": "mean", "disentangle": False},
    "ablation-mean-dis": {"fusion": "mean", "disentangle": True},
    "hemis": {"fusion": "hemis", "disentangle": False},
    "imputation": {"early_fusion": True, "disentangle": False, "modality_dropout": False},
}


def variant_config(name: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of the named preset ``name`` of :data:`VARIANTS` with fields overridden.

    Raises:
        ValueError: for an unknown variant (the message lists the known ones) or an unknown or invalid
            field (the message names it).
    """
    check_name(name, VARIANTS, "model variant")
    check_fields(ModelConfig, overrides, "ModelConfig", exclude=("name",))
    return ModelConfig(name=name, **{**VARIANTS[name], **overrides})
