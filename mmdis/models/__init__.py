"""Networks of mmdis: RobustSeg (feature disentanglement + gated fusion), its ablations and baselines."""

from mmdis.models.config import VARIANTS, ModelConfig
from mmdis.models.dropout import modality_dropout
from mmdis.models.networks import Encoded, ModelOutput, MultimodalSegNet, build_model

__all__ = [
    "VARIANTS",
    "Encoded",
    "ModelConfig",
    "ModelOutput",
    "MultimodalSegNet",
    "build_model",
    "modality_dropout",
]
