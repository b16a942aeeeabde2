r"""Several processes (DDP): the process group, this process's rank and device, and each rank's share.

Started by ``torchrun``, which sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``, :func:`~mmdis.training.loop.train` trains data-parallel::

    torchrun --nproc_per_node 2 -m mmdis.cli train ...     # 2 GPUs of one machine
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d \
             --rdzv-endpoint HOST:29400 -m mmdis.cli train ...   # 2 machines of 4 GPUs

With ``WORLD_SIZE > 1`` it joins the process group (:func:`init_distributed`: NCCL on CUDA with one GPU
``cuda:LOCAL_RANK`` a process, gloo on the CPU; a group the caller initialised is used as it is and left
open) and wraps the network in ``DistributedDataParallel`` (:meth:`Distributed.wrap`). Rank ``r`` of
``W`` takes the patch indices ``[r n, (r + 1) n)`` of the epoch, ``n = iters_per_epoch x batch_size``
(:meth:`Distributed.shard`), so its patches are a pure function of ``(seed, epoch, rank)``; a step's
global batch is ``W x batch_size`` patches, and the gradients and the logged losses are means over it
(:meth:`Distributed.mean`). Each rank has its own torch RNG stream (modality dropout, appearance
sampling), seeded from ``(seed, rank)`` (:func:`seed_rank_stream`).

Rank 0 alone writes ``config.json``, ``env.json``, ``metrics.csv``, ``last.pt`` and the TensorBoard
events and shows the progress bar; the others wait for it at barriers (:meth:`Distributed.barrier`).
``run_dir`` must be a folder every rank sees. Validation is shared: rank ``r`` segments the val cases
``r, r + W, ...`` (:meth:`Distributed.cases`) and the Dice is the mean over all cases, as in a single
process (:meth:`Distributed.gather_cases`). ``last.pt`` holds the bare network's weights, so it loads
in single-process code, and every rank's RNG states, so a run resumed with the same number of processes
continues exactly as if uninterrupted (with another number it continues, with a warning; see
:func:`seed_rank_stream`).

DDP runs with ``find_unused_parameters=False``: every parameter gets a gradient at every step, even
under modality dropout, because a dropped modality's content enters the fusion through ``torch.where``,
which sends its encoder a zero gradient instead of cutting it out of the graph (``tests/test_ddp.py``
checks this for every method). The cheaper setting saves DDP a walk over the autograd graph each step.
"""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Subset

from mmdis.runtime.device import resolve_device
from mmdis.training.checkpoint import set_rng_state


# ---------------------------------------------------------------------------- this process's rank
@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a run; the defaults describe a single-process run.

    Attributes:
        rank: this process's rank in ``[0, world_size)``; rank 0 writes every file.
        world_size: number of processes.
        backend: ``nccl`` or ``gloo`` (``None`` alone).
        owns_group: :func:`init_distributed` created the process group, so
            :func:`~mmdis.training.loop.train` destroys it (:meth:`close`).
    """

    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self, device: torch.device) -> None:
        if self.active:
            dist.barrier(device_ids=[device.index] if self.backend == "nccl" else None)

    def all_gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, indexed by rank (picklable objects)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def mean(self, values: dict[str, float], device: torch.device) -> dict[str, float]:
        """The mean of each value over the ranks (every rank gets the same numbers)."""
        if not self.active:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)  # (len(values),)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist()))

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` in ``DistributedDataParallel`` (``find_unused_parameters=False``, see the module
        docstring) when several processes run; else ``module`` itself.
        :func:`~mmdis.training.checkpoint.unwrap` takes the wrapper off again."""
        if not self.active:
            return module
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, dataset: Dataset, per_rank: int) -> Dataset:
        """This rank's block ``[r n, (r + 1) n)`` of an epoch's ``W n`` patch indices, ``n = per_rank``."""
        if not self.active:
            return dataset
        return Subset(dataset, range(self.rank * per_rank, (self.rank + 1) * per_rank))

    def cases(self, case_ids: list[str]) -> list[str]:
        """The cases this rank validates: every ``W``-th, starting at its rank."""
        return case_ids[self.rank :: self.world_size]

    def gather_cases(self, scores: list[float]) -> list[float]:
        """Every rank's per-case ``scores`` of :meth:`cases`, back in the order of all the cases."""
        shares = self.all_gather(scores)
        return [s for row in itertools.zip_longest(*shares) for s in row if s is not None]

    def close(self) -> None:
        """Destroy the process group if :func:`init_distributed` created it (a caller's stays open)."""
        if self.owns_group:
            dist.destroy_process_group()


#: Counts the process groups :func:`init_distributed` created in this process (the same on every rank).
_GROUPS_CREATED = itertools.count()


def init_distributed(device_name: str = "auto") -> tuple[Distributed, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment, or run alone.

    With ``WORLD_SIZE > 1`` (or a process group the caller initialised) the process group is created
    from the environment (``env://``: NCCL when the device is CUDA, gloo otherwise) and a CUDA device
    becomes ``cuda:LOCAL_RANK``, whatever index ``device_name`` gave.

    Returns:
        The :class:`Distributed` state and the device of this process.
    """
    initialised = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if initialised else int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world <= 1:
        return Distributed(), device
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world}, but this torch build has no torch.distributed")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not initialised:
        # Every group train() creates gets fresh keys in the rendezvous store: torch names a group made
        # after destroy_process_group() as it named the first, so a second train() in the same torchrun
        # job would otherwise meet the first one's stale keys there and hang.
        store, rank, world = next(dist.rendezvous("env://"))
        store = dist.PrefixStore(f"mmdis.train/{next(_GROUPS_CREATED)}", store)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=rank,
                                world_size=world)
    return Distributed(dist.get_rank(), dist.get_world_size(), dist.get_backend(), not initialised), device


# --------------------------------------------------------------------------- each rank's RNG stream
def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's (CPU and every CUDA device) generators."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (third-party code may draw from the global generator)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """A seed of its own for each rank (and epoch, when a resumed run cannot restore the rank's RNG)."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


def seed_rank_stream(ddp: Distributed, seed: int, epoch: int, ckpt: dict[str, Any] | None = None) -> None:
    """Give this rank of a DDP run its own RNG stream: the states ``ckpt`` saved for it
    (``load_checkpoint`` restored none), or else a stream seeded from ``(seed, rank, epoch)``.

    A fresh run starts each rank at ``epoch = 0``. A checkpoint of another number of processes has no
    states for this rank, so the run continues, but not as an uninterrupted one would.
    """
    states = (ckpt or {}).get("rank_rng") or []
    if len(states) == ddp.world_size:
        set_rng_state(states[ddp.rank])
    else:
        seed_everything(rank_seed(seed, ddp.rank, epoch))
