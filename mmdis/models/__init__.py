"""Networks of mmdis: RobustSeg (feature disentanglement + gated fusion) and its baselines."""

from mmdis.models.networks import (
    VARIANTS,
    Encoded,
    ModelConfig,
    ModelOutput,
    MultimodalSegNet,
    build_model,
    modality_dropout,
)

__all__ = [
    "VARIANTS",
    "Encoded",
    "ModelConfig",
    "ModelOutput",
    "MultimodalSegNet",
    "build_model",
    "modality_dropout",
]
