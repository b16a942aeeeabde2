"""Parts 1 and 2 of ``mmdis bench``: training steps and convolution throughput.

1. **Training steps** (:func:`mmdis.training.loop.train_step`: forward, Eq. (3), backward, Adam) of
   RobustSeg, seconds per step and peak memory, for

   - a named profile's configuration (default ``cpu``), in the precision its ``amp="auto"`` resolves to
     on this device (:func:`~mmdis.runtime.device.resolve_amp`), i.e. as ``mmdis train`` runs it, with
     the reason printed above the table, and in float32 too when that precision is an autocast;
   - the ``--patch``/``--channels`` configuration (default the paper's: 80^3, C = 16, batch 1) in float32;
   - the same in bf16 autocast at batch 2, on CUDA only (target: at most 12 GiB).

2. **Convolution throughput**: one 3x3x3 ``conv3d`` forward and backward (gradients of the input and the
   weights) at the network's first two widths, C -> C at ``patch``^3 and 2C -> 2C at (``patch``/2)^3,
   in float32. The training step's achieved FLOP/s is then compared with the faster of the two
   (target on the CPU: at least 60 %). FLOPs are counted during the warm-up run by
   :func:`benchmarks.flops.count_flops` (convolutions and matrix products, 2 FLOPs per multiply-add;
   normalisation, activations and Adam's update are not counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmarks.flops import count_flops
from benchmarks.table import BF16_MEMORY_TARGET_GIB, CONV_FRACTION_TARGET, Row, make_row
from benchmarks.timing import say, time_repeated
from mmdis.conventions import NUM_CLASSES, NUM_MODALITIES
from mmdis.losses import LossConfig
from mmdis.models import build_model
from mmdis.models.blocks import conv3d
from mmdis.runtime.device import amp_choice
from mmdis.runtime.memory import PeakMemory
from mmdis.training.config import make_config
from mmdis.training.loop import train_step


@dataclass(frozen=True)
class StepResult:
    """One configuration's training step: ``seconds`` per step, ``peak_mib`` (``None``: not measurable),
    ``flops`` counted in one step and ``batch`` patches per step."""

    seconds: float
    peak_mib: float | None
    flops: int
    batch: int

    @property
    def flops_per_second(self) -> float:
        return self.flops / self.seconds


def bench_train_step(patch: int, channels: int, seconds: float, batch: int = 1,
                     amp_dtype: torch.dtype | None = None, device: torch.device | None = None,
                     **model_overrides) -> StepResult:
    """Time :func:`mmdis.training.loop.train_step` of RobustSeg on random ``patch``^3 batches.

    The first step (kernel selection, Adam's moments allocated) runs under a FLOP counter and is not
    timed; the peak memory covers the model, its gradients, Adam's state and every step.

    Args:
        patch: cube side of a patch (a multiple of 8).
        channels: ``C``, the base width.
        seconds: time spent on timed steps (at least one).
        batch: patches per step.
        amp_dtype: autocast dtype (``None``: float32).
        device: where to train (default: the CPU).
        model_overrides: further :class:`~mmdis.models.config.ModelConfig` fields.
    """
    device = device or torch.device("cpu")
    with PeakMemory(device) as memory:
        torch.manual_seed(0)
        model = build_model("robustseg", base_channels=channels, **model_overrides).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        size = (batch, patch, patch, patch)
        data = {"image": torch.randn(batch, NUM_MODALITIES, *size[1:]),  # (B, M, D, H, W)
                "label": torch.randint(0, NUM_CLASSES, size),  # (B, D, H, W)
                "mask": torch.ones(size, dtype=torch.bool),  # (B, D, H, W)
                "available": torch.ones(batch, NUM_MODALITIES, dtype=torch.bool)}  # (B, M)
        loss_config = LossConfig()

        def step() -> None:
            train_step(model, data, optimizer, loss_config, device, amp_dtype)

        flops = count_flops(step)
        per_step = time_repeated(step, seconds, device)
    return StepResult(per_step, memory.mib, flops, batch)


def bench_conv3d(channels: int, size: int, seconds: float, device: torch.device | None = None) -> float:
    """FLOP/s of one float32 3x3x3 ``conv3d`` (``channels`` -> ``channels``, bias, "same" padding) forward
    and backward (input and weight gradients) on a ``(1, channels, size, size, size)`` input."""
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    conv = conv3d(channels, channels).to(device)
    x = torch.randn(1, channels, size, size, size, device=device, requires_grad=True)
    grad = torch.randn(1, channels, size, size, size, device=device)

    def run() -> None:
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(grad)

    flops = count_flops(run)  # doubles as the warm-up
    return flops / time_repeated(run, seconds, device)


def _config(patch: int, channels: int, batch: int, dtype: torch.dtype | None) -> str:
    precision = "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
    return f"{patch}^3, C={channels}, batch {batch}, {precision}"


def training_rows(patch: int, channels: int, seconds: float, profile: str | None, tag: str,
                  dev: torch.device) -> tuple[list[Row], list[StepResult]]:
    """Rows of part 1, and the steps at ``patch`` (for the loader's comparison)."""
    rows: list[Row] = []
    if profile is not None:
        config = make_config(profile, "robustseg")
        amp_dtype, _, why = amp_choice(config.amp, dev, config.bottom_depth)
        print(f"precision of the {profile} profile (amp={config.amp!r}): {why}", flush=True)
        side, width, batch = config.patch_size[0], config.base_channels, config.batch_size
        say(f"training step, {profile} profile")
        res = bench_train_step(side, width, seconds, batch, amp_dtype, dev, **config.model)
        rows += [make_row(f"train step, {profile} profile ({_config(side, width, batch, amp_dtype)})",
                          res.seconds, "s/step"),
                 make_row(f"peak memory, {profile} profile", res.peak_mib, "MiB"),
                 make_row(f"achieved, {profile} profile", res.flops_per_second / 1e9, "GFLOP/s")]
        if amp_dtype is not None:  # the float32 step beside it, to see what autocast gains here
            say(f"training step, {profile} profile, float32")
            ref = bench_train_step(side, width, seconds, batch, None, dev, **config.model)
            rows.append(make_row(f"train step, {profile} profile ({_config(side, width, batch, None)})",
                                 ref.seconds, "s/step"))
    say(f"training step, {tag} configuration")
    step = bench_train_step(patch, channels, seconds, device=dev)
    rows += [make_row(f"train step, {tag} ({_config(patch, channels, 1, None)})", step.seconds, "s/step"),
             make_row(f"peak memory, {tag} float32 batch 1", step.peak_mib, "MiB"),
             make_row(f"FLOPs per train step, {tag} float32 batch 1 (counted)", step.flops / 1e9, "GFLOP"),
             make_row(f"achieved, {tag} float32 batch 1", step.flops_per_second / 1e9, "GFLOP/s")]
    steps = [step]
    name = f"train step, {tag} ({_config(patch, channels, 2, torch.bfloat16)})"
    if dev.type == "cuda":
        say(f"training step, {tag} configuration, bf16 batch 2")
        bf16 = bench_train_step(patch, channels, seconds, batch=2, amp_dtype=torch.bfloat16, device=dev)
        steps.append(bf16)
        memory = None if bf16.peak_mib is None else bf16.peak_mib / 1024
        rows += [make_row(name, bf16.seconds, "s/step"),
                 make_row(f"peak memory, {tag} bf16 batch 2", memory, "GiB", at_most=BF16_MEMORY_TARGET_GIB)]
    else:
        rows += [make_row(name, None, "s/step", missing="n/a on CPU"),
                 make_row(f"peak memory, {tag} bf16 batch 2", None, "GiB", at_most=BF16_MEMORY_TARGET_GIB,
                          missing="n/a on CPU")]
    return rows, steps


def conv_rows(patch: int, channels: int, seconds: float, step: StepResult, tag: str,
              dev: torch.device) -> list[Row]:
    """Rows of part 2: the two convolutions and the step's share of the faster one."""
    rows, rates = [], []
    for width, side in ((channels, patch), (2 * channels, patch // 2)):
        say(f"conv3d {width}->{width} at {side}^3")
        rates.append(bench_conv3d(width, side, seconds, dev))
        rows.append(make_row(f"conv3d 3x3x3 fwd+bwd, {width}->{width} ch at {side}^3, float32",
                             rates[-1] / 1e9, "GFLOP/s"))
    fraction = 100 * step.flops_per_second / max(rates)
    target = None if dev.type == "cuda" else CONV_FRACTION_TARGET  # the target is for the CPU
    rows.append(make_row(f"train step ({tag} float32 batch 1) / best conv3d", fraction, "%", at_least=target))
    return rows
