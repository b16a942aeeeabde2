"""Training: typed run configs and profiles, resumable checkpoints and the training loop.

``train(make_config("cpu", "robustseg"), cache_dir, run_dir)`` trains one method in this process;
``torchrun --nproc_per_node 2 -m mmdis.cli train ...`` runs the same call data-parallel (DDP) on two
GPUs or CPU processes. See :mod:`.loop`.
"""

from mmdis.training.checkpoint import load_checkpoint, save_checkpoint
from mmdis.training.config import AMP_MODES, PROFILES, OptimConfig, TrainConfig, make_config
from mmdis.training.loop import poly_factor, resolve_amp, train, train_step, validate

__all__ = [
    "AMP_MODES",
    "PROFILES",
    "OptimConfig",
    "TrainConfig",
    "load_checkpoint",
    "make_config",
    "poly_factor",
    "resolve_amp",
    "save_checkpoint",
    "train",
    "train_step",
    "validate",
]
