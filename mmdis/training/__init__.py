"""Training: typed run configs and profiles, resumable checkpoints and the training loop.

``train(make_config("cpu", "robustseg"), cache_dir, run_dir)`` trains one method; see :mod:`.loop`.
"""

from mmdis.training.checkpoint import load_checkpoint, save_checkpoint
from mmdis.training.config import PROFILES, OptimConfig, TrainConfig, make_config
from mmdis.training.loop import poly_factor, train, train_step, validate

__all__ = [
    "PROFILES",
    "OptimConfig",
    "TrainConfig",
    "load_checkpoint",
    "make_config",
    "poly_factor",
    "save_checkpoint",
    "train",
    "train_step",
    "validate",
]
