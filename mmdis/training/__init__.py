"""Training: typed run configs, resumable checkpoints and the training loop.

``train(make_config("cpu", "robustseg"), cache_dir, run_dir)`` trains one method in this process;
``torchrun --nproc_per_node 2 -m mmdis.cli train ...`` runs the same call data-parallel (DDP) on two
GPUs or CPU processes.

Modules: :mod:`.config` (a run's typed config, resolved from a profile of :mod:`mmdis.profiles`),
:mod:`.loop` (:func:`train`, :func:`train_step`, the poly schedule), :mod:`.validation` (:func:`validate`),
:mod:`.distributed` (several processes under ``torchrun``), :mod:`.runlog` (``metrics.csv``,
TensorBoard), :mod:`.checkpoint` (``last.pt``). Device, precision, ``env.json`` and peak memory come from
:mod:`mmdis.runtime`.
"""

from mmdis.training.checkpoint import load_checkpoint, save_checkpoint
from mmdis.training.config import OptimConfig, TrainConfig, make_config
from mmdis.training.loop import poly_factor, train, train_step
from mmdis.training.validation import validate

__all__ = [
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
