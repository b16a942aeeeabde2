"""Where and in which precision to compute: the device, autocast and the fp16 loss scaler, determinism.

Device
    ``auto`` is CUDA when available, else the CPU (:func:`resolve_device`).

Mixed precision
    ``amp`` chooses autocast; see :func:`resolve_amp`. The losses are always computed in float32 (the
    training step casts the network's outputs back before them). fp16 needs a ``GradScaler``
    (:func:`make_grad_scaler`), whose state a training checkpoint keeps.

Determinism
    :func:`deterministic_algorithms` asks torch for deterministic kernels inside a block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

#: Mixed-precision modes; :func:`resolve_amp` says what each runs on a device.
AMP_MODES = ("auto", "bf16", "fp16", "off")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; any other name is passed to ``torch.device``."""
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
    the ``cpu`` profile), and :func:`~mmdis.training.loop.train` warns when the patch is 16 voxels deep
    (:func:`cpu_bf16_warning`).

    fp16 has a 5-bit exponent, so its loss is scaled up before the backward pass and the gradients
    unscaled before the step (a step whose gradients overflow is skipped and the scale halved).

    Raises:
        ValueError: for a mode not in :data:`AMP_MODES`.
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


def cpu_bf16_warning(device: torch.device, dtype: torch.dtype | None,
                     patch_size: tuple[int, int, int], size_multiple: int = 8) -> str | None:
    """The warning for bf16 autocast on the CPU with a patch ``2 x size_multiple`` = 16 voxels deep,
    whose bottom stage is 2 voxels deep (see :func:`resolve_amp`); ``None`` for any other setting.

    ``size_multiple`` is the network's total down-sampling factor
    (:data:`~mmdis.models.networks.SIZE_MULTIPLE`).
    """
    if device.type == "cpu" and dtype == torch.bfloat16 and patch_size[0] == 2 * size_multiple:
        return (f"bf16 autocast on the CPU with patch_size {patch_size}: torch's CPU bf16 "
                "conv3d gets the weight gradient wrong on the 2-voxel-deep bottom stage; use "
                "amp='off' or a patch depth of 24 or more (see mmdis.runtime.device.resolve_amp)")
    return None


def make_grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A ``GradScaler`` for ``device``; a disabled one passes the loss and the step through unchanged."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")  # torch < 2.3


def dtype_name(dtype: torch.dtype | None) -> str:
    """``bfloat16``, ``float16`` or, for no autocast, ``float32``."""
    return str(dtype or torch.float32).removeprefix("torch.")


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op context for ``None`` (float32)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


# ---------------------------------------------------------------------------------- determinism
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
