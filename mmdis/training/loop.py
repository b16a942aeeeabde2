r"""The training loop: Adam, poly decay, seeded patches, validation, metrics and resumable checkpoints.

One epoch is ``iters_per_epoch`` steps on patches of the train split; after it the learning rate decays
by the paper's poly rule

.. math:: \eta_e = \eta_0 \left(1 - \frac{e}{E}\right)^{0.9},

the WT Dice on the val split is measured every ``val_every`` epochs, the epoch's rows are appended to
``metrics.csv`` and ``last.pt`` is rewritten atomically. Everything random is seeded: the patch sampler is
a pure function of ``(seed, epoch, index)`` and the torch RNG (modality dropout, appearance sampling) is
saved in the checkpoint, so on CPU a run resumed between epochs ends with exactly the weights of an
uninterrupted one.

Several processes (DDP)
    Started by ``torchrun``, which sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
    ``MASTER_PORT``, :func:`train` trains data-parallel::

        torchrun --nproc_per_node 2 -m mmdis.cli train ...     # 2 GPUs of one machine
        torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d \
                 --rdzv-endpoint HOST:29400 -m mmdis.cli train ...   # 2 machines of 4 GPUs

    With ``WORLD_SIZE > 1`` it joins the process group (NCCL on CUDA with one GPU ``cuda:LOCAL_RANK`` a
    process, gloo on the CPU; a group the caller initialised is used as it is and left open) and wraps
    the network in ``DistributedDataParallel``. Rank ``r`` of ``W`` takes the patch indices
    ``[r n, (r + 1) n)`` of the epoch, ``n = iters_per_epoch x batch_size``, so its patches are a pure
    function of ``(seed, epoch, rank)``; a step's global batch is ``W x batch_size`` patches, and the
    gradients and the logged losses are means over it. Each rank has its own torch RNG stream (modality
    dropout, appearance sampling), seeded from ``(seed, rank)``.

    Rank 0 alone writes ``config.json``, ``env.json``, ``metrics.csv``, ``last.pt`` and the TensorBoard
    events and shows the progress bar; the others wait for it at barriers. ``run_dir`` must be a folder
    every rank sees. Validation is shared: rank ``r`` segments the val cases ``r, r + W, ...`` and the
    Dice is the mean over all cases, as in a single process. ``last.pt`` holds the bare network's
    weights, so it loads in single-process code, and every rank's RNG states, so a run resumed with the
    same number of processes continues exactly as if uninterrupted (with another number it continues,
    with a warning).

    DDP runs with ``find_unused_parameters=False``: every parameter gets a gradient at every step, even
    under modality dropout, because a dropped modality's content enters the fusion through
    ``torch.where``, which sends its encoder a zero gradient instead of cutting it out of the graph
    (``tests/test_ddp.py`` checks this for every method). The cheaper setting saves DDP a walk over the
    autograd graph each step.

Mixed precision
    ``config.amp`` chooses autocast; see :func:`resolve_amp`. The losses are always computed in float32.
    fp16 needs a ``GradScaler``, whose state is saved in the checkpoint.

TensorBoard
    When ``torch.utils.tensorboard`` imports (the ``tensorboard`` package is installed; it is not a
    dependency), rank 0 also writes the loss terms, the learning rate, the step time and the val Dice to
    ``run_dir/tb`` (``tensorboard --logdir runs``); otherwise only ``metrics.csv``.

Determinism
    ``config.deterministic`` asks torch for deterministic kernels while :func:`train` runs; see
    :func:`deterministic_algorithms`.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from mmdis.conventions import REGIONS
from mmdis.data.cache import Cache
from mmdis.data.datasets import PatchDataset, VolumeDataset
from mmdis.data.io import atomic_path, save_json
from mmdis.losses import LossConfig, total_loss
from mmdis.models.networks import SIZE_MULTIPLE, MultimodalSegNet
from mmdis.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mmdis.training.config import AMP_MODES, TrainConfig

LOSS_TERMS = ("total", "seg", "dice", "ce", "rec", "kl")
METRIC_COLUMNS = ("step", "epoch", "lr", *LOSS_TERMS, "seconds", "elapsed", "val_dice_wt")
#: Fields that may change when a run is resumed; any other difference is refused.
RESUMABLE_CHANGES = ("epochs", "val_every", "device", "num_workers", "deterministic")


def poly_factor(epoch: int, epochs: int, power: float = 0.9) -> float:
    r"""The poly decay :math:`(1 - e / E)^{p}` of the learning rate at epoch ``e`` (0-based)."""
    return max(1.0 - epoch / epochs, 0.0) ** power


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ------------------------------------------------------------------------------- mixed precision
def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """The autocast dtype of an ``amp`` mode on ``device`` (``None``: float32) and whether it needs a
    loss scaler.

    ====== ========================= ======================= =====================
    amp    CUDA with bf16 (Ampere+)  CUDA without bf16       CPU
    ====== ========================= ======================= =====================
    auto   bf16                      fp16 + ``GradScaler``   float32
    bf16   bf16                      bf16 (emulated, slow)   bf16 (see below)
    fp16   fp16 + ``GradScaler``     fp16 + ``GradScaler``   fp16 + ``GradScaler``
    off    float32                   float32                 float32
    ====== ========================= ======================= =====================

    ``auto`` stays in float32 on the CPU, a decision measured once rather than timed at run time. bf16
    autocast is faster there on a CPU with bf16 instructions: a training step of the ``cpu`` profile's
    network (robustseg, 48^3 patch, C = 8, batch 1, one thread, torch 2.13, an AMD EPYC with
    AVX512-BF16) took 3.1 s of CPU time in float32 and 0.86 s under
    ``torch.autocast("cpu", dtype=torch.bfloat16)``, with the same loss curve over 15 steps to within
    0.01 (at the smoke profile's 16^3 both took 0.1 s). But torch 2.13's CPU bf16 ``conv3d`` returns a
    wrong weight gradient (off by 100 %, up to 1e35, varying from run to run) when a feature map is 2
    voxels deep (the first spatial axis), as the bottom stage of a 16^3 patch is; and a CPU without
    bf16 instructions emulates it. So bf16 on the CPU is an explicit choice (``amp="bf16"``, e.g. for
    the ``cpu`` profile), and :func:`train` warns when the patch is 16 voxels deep.

    fp16 has a 5-bit exponent, so its loss is scaled up before the backward pass and the gradients
    unscaled before the step (a step whose gradients overflow is skipped and the scale halved).

    Raises:
        ValueError: for a mode not in :data:`~mmdis.training.config.AMP_MODES`.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {list(AMP_MODES)}, got {amp!r}")
    if amp == "bf16":
        return torch.bfloat16, False
    if amp == "fp16":
        return torch.float16, True
    if amp == "auto" and device.type == "cuda":
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    return None, False


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of :func:`resolve_amp` alone."""
    return resolve_amp(amp, device)[0]


def make_grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A ``GradScaler`` for ``device``; a disabled one passes the loss and the step through unchanged."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")  # torch < 2.3


def _dtype_name(dtype: torch.dtype | None) -> str:
    """``bfloat16``, ``float16`` or, for no autocast, ``float32``."""
    return str(dtype or torch.float32).removeprefix("torch.")


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


# ------------------------------------------------------------------------------------ one step
def train_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer,
               loss_config: LossConfig, device: torch.device,
               amp_dtype: torch.dtype | None = None,
               scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One optimiser step on a batch of :class:`~mmdis.data.datasets.PatchDataset` items.

    ``present = batch["available"]``: a modality absent from the data is neither fused nor a
    reconstruction or KL target. The losses are computed in float32 outside autocast.

    Args:
        model: a :class:`~mmdis.models.networks.MultimodalSegNet`, possibly in ``DistributedDataParallel``.
        amp_dtype: autocast dtype (``None``: float32), see :func:`resolve_amp`.
        scaler: the fp16 loss scaler (``None`` or a disabled one: a plain backward pass and step).

    Returns:
        The loss terms of :func:`~mmdis.losses.total_loss` as floats.
    """
    model.train()
    x = batch["image"].to(device, non_blocking=True)  # (B, M, D, H, W)
    y = batch["label"].to(device, non_blocking=True)  # (B, D, H, W)
    mask = batch["mask"].to(device, non_blocking=True)  # (B, D, H, W)
    present = batch["available"].to(device, non_blocking=True).bool()  # (B, M)
    with _autocast(device, amp_dtype):
        out = model(x, present)
    out = replace(out, seg=out.seg.float(),
                  recon=None if out.recon is None else out.recon.float(),
                  kl=None if out.kl is None else out.kl.float())
    losses = total_loss(out, x, y, loss_config, present=present, mask=mask)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        losses["total"].backward()
        optimizer.step()
    else:
        scaler.scale(losses["total"]).backward()
        scaler.step(optimizer)  # unscales first; skips the step if a gradient overflowed
        scaler.update()
    return {k: float(v.detach()) for k, v in losses.items()}


@torch.no_grad()
def wt_dice_scores(model: MultimodalSegNet, cache_dir: str | Path, case_ids: list[str], device: torch.device,
                   amp_dtype: torch.dtype | None = None) -> list[float]:
    r"""Whole-tumour Dice of each case over its whole volume, with every available modality.

    .. math:: \mathrm{Dice}_{WT} = \frac{2 |P \cap G|}{|P| + |G|}, \quad
              P = \{\arg\max_k \hat Y \in WT\},\ G = \{Y \in WT\}

    (1 when both are empty). Each volume is zero-padded at the far end to a multiple of 8 and segmented
    in one pass with a plain argmax; the sliding-window evaluator is :mod:`mmdis.evaluation`'s job.

    Returns:
        One Dice per case of ``case_ids``, in that order.
    """
    model.eval()
    wt = torch.tensor(REGIONS["WT"], device=device)
    scores = []
    for item in VolumeDataset(cache_dir, case_ids):
        image = item["image"].to(device)  # (M, D, H, W)
        shape = image.shape[1:]
        pad = [(-s) % SIZE_MULTIPLE for s in shape]
        image = F.pad(image, (0, pad[2], 0, pad[1], 0, pad[0]))  # (M, D', H', W')
        available = item["available"].to(device)[None]  # (1, M)
        with _autocast(device, amp_dtype):
            logits = model(image[None], available).seg  # (1, K, D', H', W')
        pred = logits[0, :, : shape[0], : shape[1], : shape[2]].argmax(0)  # (D, H, W)
        p, g = torch.isin(pred, wt), torch.isin(item["label"].to(device), wt)
        denom = int(p.sum() + g.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom)
    return scores


def validate(model: MultimodalSegNet, cache_dir: str | Path, case_ids: list[str], device: torch.device,
             amp_dtype: torch.dtype | None = None) -> float:
    """Mean of :func:`wt_dice_scores` over ``case_ids`` (NaN without cases)."""
    scores = wt_dice_scores(model, cache_dir, case_ids, device, amp_dtype)
    return float(np.mean(scores)) if scores else math.nan


# ---------------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a run; the defaults describe a single-process run.

    Attributes:
        rank: this process's rank in ``[0, world_size)``; rank 0 writes every file.
        world_size: number of processes.
        backend: ``nccl`` or ``gloo`` (``None`` alone).
        owns_group: :func:`init_distributed` created the process group, so :func:`train` destroys it.
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


def _rank_seed(seed: int, rank: int, epoch: int) -> int:
    """A seed of its own for each rank (and epoch, when a resumed run cannot restore the rank's RNG)."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


# ------------------------------------------------------------------------------ bookkeeping
@contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Ask torch for deterministic kernels inside the block, then restore the previous settings.

    ``torch.use_deterministic_algorithms(True, warn_only=True)`` picks deterministic kernels where torch
    has them and warns (rather than fails) where it has none; ``cudnn.deterministic = True`` and
    ``cudnn.benchmark = False`` stop cuDNN from choosing its algorithms by timing them;
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (set unless already set, and left set; it acts only if cuBLAS
    has not run yet in the process) makes cuBLAS reductions repeatable. Together they are meant to make
    a CUDA run repeat bit for bit on the same hardware and software, at some cost in speed.
    ``enabled=False`` changes nothing.
    """
    if not enabled:
        yield
        return
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), cudnn.deterministic, cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        cudnn.deterministic, cudnn.benchmark = saved[2], saved[3]


def tensorboard_writer(log_dir: str | Path, purge_step: int | None = None) -> Any | None:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``, or ``None`` without TensorBoard.

    ``purge_step``: on resuming, events an interrupted run wrote at or after this step are hidden.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ImportError without the package; a broken install can raise others
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory of this process in MiB: on CUDA the most ever allocated by tensors on ``device``
    (``torch.cuda.max_memory_allocated``), on the CPU the peak resident set size of the process
    (``ru_maxrss``; ``None`` where the ``resource`` module is missing, i.e. on Windows)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, hardware and the git commit of the code, for ``env.json``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__,
           "platform": platform.platform(), "device": str(device), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "git_commit": commit}
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (third-party code may draw from the global generator)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _check_resumable(run_dir: Path, config: TrainConfig) -> None:
    path = run_dir / "config.json"
    if not path.is_file():
        return
    old, new = json.loads(path.read_text()), config.to_dict()
    differ = [k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k]]
    if differ:
        raise ValueError(f"cannot resume {run_dir}: its config.json differs in {differ} "
                         f"(only {list(RESUMABLE_CHANGES)} may change)")


def _read_metrics(path: Path, before_epoch: int) -> list[dict[str, str]]:
    """Rows of an existing ``metrics.csv`` for epochs already in the checkpoint."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) < before_epoch]


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _restore_rank_rng(ckpt: dict[str, Any], ddp: Distributed, seed: int, epoch: int) -> None:
    """Give each rank of a DDP run its RNG states back (``load_checkpoint`` restored none)."""
    states = ckpt.get("rank_rng") or []
    if len(states) == ddp.world_size:
        set_rng_state(states[ddp.rank])
    else:
        _seed_everything(_rank_seed(seed, ddp.rank, epoch))


# ------------------------------------------------------------------------------------- train
def train(config: TrainConfig, cache_dir: str | Path, run_dir: str | Path, resume: bool = False,
          progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``config.method`` on the train split of a prepared cache, in this process or, under
    ``torchrun``, in every process of a DDP run (see the module docstring).

    Writes to ``run_dir`` (rank 0): ``config.json`` and ``env.json`` at the start, ``metrics.csv`` (one
    row per step: ``step, epoch, lr``, the loss terms, ``seconds`` of the step, ``elapsed`` training
    seconds and ``val_dice_wt`` on the last step of a validated epoch), ``last.pt`` after every epoch,
    and TensorBoard events in ``tb/`` when TensorBoard is installed. Prints (rank 0) the val Dice of each
    validated epoch and, at the end, the seconds a step, the patches a second and the peak memory.

    Args:
        config: the run; see :func:`~mmdis.training.config.make_config`.
        cache_dir: a folder written by :func:`mmdis.data.cache.prepare`.
        run_dir: output folder (created).
        resume: continue from ``run_dir/last.pt`` (a fresh start when there is none yet).
        progress: show a tqdm bar with the loss and the speed.
        stop_after: return once this many epochs are complete, as if interrupted (``last.pt`` then
            resumes the run); ``None`` trains all ``config.epochs``.

    Returns:
        ``run_dir``, ``epoch`` and ``step`` reached, the ``last`` step's loss terms, the latest
        ``val_dice_wt`` (``None`` if never validated), ``elapsed`` training seconds, ``checkpoint``;
        ``seconds_per_step`` (mean over the steps of this call; ``None`` if it made none),
        ``samples_per_second`` (patches of the global batch a second), ``peak_memory_mb`` (see
        :func:`peak_memory_mb`; the largest over the ranks), ``amp`` (the resolved dtype: ``bfloat16``,
        ``float16`` or ``float32``), ``rank`` and ``world_size``. Under DDP the step, the losses and
        the Dice are the same on every rank; the times are each rank's own.

    Raises:
        FileExistsError: ``run_dir`` already holds a checkpoint and ``resume`` is False.
        ValueError: resuming with a different config, or a checkpoint of another method.
        FloatingPointError: a loss became NaN or infinite.
    """
    cache = Cache.open(cache_dir)
    run_dir = Path(run_dir)
    last_path = run_dir / "last.pt"
    if last_path.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a checkpoint; resume it or choose another run folder")
    resuming = resume and last_path.is_file()
    if resuming:
        _check_resumable(run_dir, config)
    ddp, device = init_distributed(config.device)
    try:
        with deterministic_algorithms(config.deterministic):
            return _train(config, cache, run_dir, resuming, progress, stop_after, ddp, device)
    finally:
        if ddp.owns_group:
            dist.destroy_process_group()


def _train(config: TrainConfig, cache: Cache, run_dir: Path, resuming: bool, progress: bool,
           stop_after: int | None, ddp: Distributed, device: torch.device) -> dict[str, Any]:
    """The body of :func:`train`, once the process group and the determinism flags are set."""
    train_ids, val_ids = cache.case_ids("train"), cache.case_ids("val")
    last_path = run_dir / "last.pt"
    amp_dtype, needs_scaler = resolve_amp(config.amp, device)
    if device.type == "cpu" and amp_dtype == torch.bfloat16 and config.patch_size[0] == 2 * SIZE_MULTIPLE:
        warnings.warn(f"bf16 autocast on the CPU with patch_size {config.patch_size}: torch's CPU bf16 "
                      "conv3d gets the weight gradient wrong on the 2-voxel-deep bottom stage; use "
                      "amp='off' or a patch depth of 24 or more (see mmdis.training.loop.resolve_amp)",
                      stacklevel=3)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_json(config.to_dict(), run_dir / "config.json")
        env = environment(device)
        env.update(world_size=ddp.world_size, backend=ddp.backend, amp=_dtype_name(amp_dtype))
        save_json(env, run_dir / "env.json")
    ddp.barrier(device)

    _seed_everything(config.seed)
    module = config.build_model().to(device)  # the same initialisation on every rank
    optimizer = torch.optim.Adam(module.parameters(), lr=config.optim.lr,
                                 weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: poly_factor(e, config.epochs, config.optim.poly_power))
    scaler = make_grad_scaler(device, needs_scaler)
    start_epoch, step, elapsed, val_dice = 0, 0, 0.0, None
    if resuming:
        ckpt = load_checkpoint(last_path, module, optimizer, scheduler, method=config.method,
                               map_location=device, scaler=scaler, restore_rng=not ddp.active)
        start_epoch, step = ckpt["epoch"], ckpt["step"]
        elapsed, val_dice = ckpt["extra"].get("elapsed", 0.0), ckpt["extra"].get("val_dice_wt")
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs):
            # A resumed run may have more epochs: the schedule follows the current E.
            group["lr"] = base_lr * poly_factor(start_epoch, config.epochs, config.optim.poly_power)
        saved_world = ckpt["extra"].get("world_size", 1)
        if saved_world != ddp.world_size and ddp.main:
            warnings.warn(f"resuming a run of {saved_world} process(es) with {ddp.world_size}: it continues, "
                          "but not with the patches and random draws of an uninterrupted run", stacklevel=3)
        if ddp.active:
            _restore_rank_rng(ckpt, ddp, config.seed, start_epoch)
    elif ddp.active:
        _seed_everything(_rank_seed(config.seed, ddp.rank, 0))
    model: nn.Module = module
    if ddp.active:
        model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    rows: list[dict[str, Any]] = []
    writer = None
    if ddp.main:
        rows = _read_metrics(run_dir / "metrics.csv", start_epoch) if resuming else []
        _write_metrics(run_dir / "metrics.csv", rows)
        # Resumed: hide what an interrupted run logged after its checkpoint (steps are 1-based).
        writer = tensorboard_writer(run_dir / "tb", purge_step=step + 1 if resuming else None)

    per_rank = config.iters_per_epoch * config.batch_size
    dataset = PatchDataset(cache.root, train_ids, samples_per_epoch=per_rank * ddp.world_size,
                           config=config.patch, seed=config.seed)
    shard = Subset(dataset, range(ddp.rank * per_rank, (ddp.rank + 1) * per_rank)) if ddp.active else dataset
    end_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    bar = tqdm(total=config.epochs * config.iters_per_epoch, initial=step, desc=f"train {config.method}",
               disable=not (progress and ddp.main), unit="it", dynamic_ncols=True)
    last: dict[str, float] = {}
    step_seconds: list[float] = []
    try:
        for epoch in range(start_epoch, end_epoch):
            dataset.set_epoch(epoch)
            # Its own generator, so the loader never draws from (and shifts) the global torch RNG.
            loader = DataLoader(shard, batch_size=config.batch_size, shuffle=False,
                                num_workers=config.num_workers, pin_memory=device.type == "cuda",
                                generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
            lr = optimizer.param_groups[0]["lr"]
            epoch_rows = []
            tick = time.perf_counter()
            for batch in loader:
                # Averaged over the ranks, so that every rank sees (and fails on) the same numbers.
                last = ddp.mean(train_step(model, batch, optimizer, config.loss, device, amp_dtype, scaler),
                                device)
                if not all(math.isfinite(v) for v in last.values()):
                    raise FloatingPointError(f"non-finite loss at step {step} (epoch {epoch}): {last}")
                now = time.perf_counter()
                seconds, tick = now - tick, now
                elapsed += seconds
                step += 1
                step_seconds.append(seconds)
                epoch_rows.append({"step": step, "epoch": epoch, "lr": lr, **last,
                                   "seconds": round(seconds, 4), "elapsed": round(elapsed, 2),
                                   "val_dice_wt": ""})
                if writer is not None:
                    for name, value in last.items():
                        writer.add_scalar(f"loss/{name}", value, step)
                    writer.add_scalar("lr", lr, step)
                    writer.add_scalar("time/seconds_per_step", seconds, step)
                bar.set_postfix(loss=f"{last['total']:.4f}", lr=f"{lr:.2e}", epoch=epoch, refresh=False)
                bar.update(1)
            scheduler.step()
            if config.val_every and (epoch + 1) % config.val_every == 0 and val_ids:
                # Each rank segments every W-th case; the mean runs over all of them in case order.
                mine = val_ids[ddp.rank :: ddp.world_size]
                shares = ddp.all_gather(wt_dice_scores(module, cache.root, mine, device, amp_dtype))
                val_dice = float(np.mean([s for row in itertools.zip_longest(*shares) for s in row
                                          if s is not None]))
                epoch_rows[-1]["val_dice_wt"] = round(val_dice, 5)
                if writer is not None:
                    writer.add_scalar("val/dice_wt", val_dice, step)
                if ddp.main:
                    bar.write(f"epoch {epoch + 1}/{config.epochs}: val WT Dice {val_dice:.4f}")
            rows.extend(epoch_rows)
            # Gathered by every rank at the same point, so that each resumes its own streams.
            rank_rng = ddp.all_gather(rng_state()) if ddp.active else None
            if ddp.main:
                _write_metrics(run_dir / "metrics.csv", rows)
                save_checkpoint(last_path, model=module, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, rank_rng=rank_rng, epoch=epoch + 1, step=step,
                                method=config.method,
                                extra={"elapsed": elapsed, "val_dice_wt": val_dice,
                                       "world_size": ddp.world_size, "config": config.to_dict()})
                if writer is not None:
                    writer.flush()
            ddp.barrier(device)
    finally:
        bar.close()
        if writer is not None:
            writer.close()

    peaks = [p for p in ddp.all_gather(peak_memory_mb(device)) if p is not None]
    per_step = float(np.mean(step_seconds)) if step_seconds else None
    result = {"run_dir": str(run_dir), "epoch": max(end_epoch, start_epoch), "step": step, "last": last,
              "val_dice_wt": val_dice, "elapsed": elapsed, "checkpoint": str(last_path),
              "seconds_per_step": per_step,
              "samples_per_second": ddp.world_size * config.batch_size / per_step if per_step else None,
              "peak_memory_mb": max(peaks) if peaks else None,
              "amp": _dtype_name(amp_dtype),
              "rank": ddp.rank, "world_size": ddp.world_size}
    if ddp.main and per_step:
        memory = f"{result['peak_memory_mb']:.0f} MiB" if peaks else "unknown"
        tqdm.write(f"{config.method}: {len(step_seconds)} steps, {per_step:.3f} s/step, "
                   f"{result['samples_per_second']:.2f} patches/s, peak memory {memory}")
    return result
