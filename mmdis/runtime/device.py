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

import functools
import os
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch

#: Mixed-precision modes; :func:`resolve_amp` says what each runs on a device.
AMP_MODES = ("auto", "bf16", "fp16", "off")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; any other name is passed to ``torch.device``.

    Raises:
        ValueError: naming ``--device`` for a name torch does not know, or a CUDA device where none is
            visible (instead of a failure deep inside the first ``.to(device)``).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: no CUDA GPU is visible to PyTorch here "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None}); "
                             "use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: only {count} CUDA GPU(s) are visible")
    elif device.type not in ("cpu", "mps", "meta"):
        raise ValueError(f"--device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


# ------------------------------------------------------------------------------- mixed precision
def _cpu_flags() -> set[str] | None:
    """The instruction-set flags of the first processor in ``/proc/cpuinfo`` (``None`` where unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    found = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    return set(found.group(1).split()) if found else None


@functools.lru_cache(maxsize=1)
def cpu_bf16_support() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and why, in words.

    Native means AMX-BF16 or AVX512-BF16 instructions (``amx_bf16``, ``avx512_bf16`` in
    ``/proc/cpuinfo``), or bf16 on an Arm CPU (``bf16``). Elsewhere, e.g. on any x86 CPU with AVX2 alone,
    oneDNN emulates bf16 and a training step in bf16 autocast ran about 6x slower than in float32
    (10.5 s against 1.59 s on a 2-core AMD EPYC with AVX2, ``cpu`` profile). Where the flags cannot be
    read (no ``/proc``, e.g. macOS or Windows) the answer is no, which is never slow. The environment
    variable ``MMDIS_CPU_BF16`` (``0`` or ``1``) overrides the detection, e.g. to time float32 on a CPU
    that has bf16.
    """
    forced = os.environ.get("MMDIS_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1", f"MMDIS_CPU_BF16={forced} is set"
    flags = _cpu_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    if flags is None:
        return False, f"CPU flags unreadable (torch CPU capability {capability}); float32 is the safe choice"
    for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("bf16", "Arm BF16")):
        if flag in flags:
            return True, f"the CPU has {name} instructions"
    return False, (f"the CPU has no AVX512-BF16 or AMX-BF16 instructions (torch CPU capability "
                   f"{capability}); bf16 would be emulated, several times slower than float32")


def amp_choice(amp: str, device: torch.device, bottom_depth: int | None = None) -> tuple[torch.dtype | None,
                                                                                         bool, str]:
    """:func:`resolve_amp`'s answer and the reason for it, in words (printed by ``mmdis bench``)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {list(AMP_MODES)}, got {amp!r}")
    if amp == "bf16":
        return torch.bfloat16, False, "bf16 asked for"
    if amp == "fp16":
        return torch.float16, True, "fp16 asked for (with a loss scaler)"
    if amp == "off":
        return None, False, "float32 asked for"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, False, "auto: the GPU computes bf16"
        return torch.float16, True, "auto: the GPU has no bf16; fp16 with a loss scaler"
    if device.type != "cpu":
        return None, False, f"auto: float32 on {device.type}"
    native, why = cpu_bf16_support()
    if not native:
        return None, False, f"auto: float32, as {why}"
    if bottom_depth == 2:
        return None, False, ("auto: float32, as torch's CPU bf16 conv3d gets the weight gradient wrong on "
                             "the 2-voxel-deep bottom stage of a 16-deep patch")
    return torch.bfloat16, False, f"auto: bf16, as {why}"


def resolve_amp(amp: str, device: torch.device, bottom_depth: int | None = None) -> tuple[torch.dtype | None,
                                                                                          bool]:
    """The autocast dtype of an ``amp`` mode on ``device`` (``None``: float32) and whether it needs a
    loss scaler.

    ====== ========================= ======================= ==========================================
    amp    CUDA with bf16 (Ampere+)  CUDA without bf16       CPU
    ====== ========================= ======================= ==========================================
    auto   bf16                      fp16 + ``GradScaler``   bf16 where native (below), else float32
    bf16   bf16                      bf16 (emulated, slow)   bf16 (see below)
    fp16   fp16 + ``GradScaler``     fp16 + ``GradScaler``   fp16 + ``GradScaler``
    off    float32                   float32                 float32
    ====== ========================= ======================= ==========================================

    On the CPU, ``auto`` takes bf16 autocast only where the CPU computes bf16 natively
    (:func:`cpu_bf16_support`): there a training step of the ``cpu`` profile's network (robustseg, 48^3
    patch, C = 8, batch 1, one thread, torch 2.13, an AMD EPYC with AVX512-BF16) took 3.1 s of CPU time in
    float32 and 0.86 s under ``torch.autocast("cpu", dtype=torch.bfloat16)``, with the same loss curve
    over 15 steps to within 0.01; a CPU without such instructions emulates bf16 and runs it several times
    slower than float32. And ``auto`` stays in float32 when the network's bottom stage is
    ``bottom_depth = 2`` voxels deep (a 16-deep patch): torch 2.13's CPU bf16 ``conv3d`` then returns a
    wrong weight gradient (off by 100 %, up to 1e35, varying from run to run). An explicit
    ``amp="bf16"`` is obeyed, and :func:`~mmdis.training.loop.train` warns in that case
    (:func:`cpu_bf16_warning`).

    fp16 has a 5-bit exponent, so its loss is scaled up before the backward pass and the gradients
    unscaled before the step (a step whose gradients overflow is skipped and the scale halved).

    Args:
        amp: one of :data:`AMP_MODES`.
        device: where the network runs.
        bottom_depth: depth (first spatial axis) of the network's deepest feature map in training, if
            known; the patch depth divided by the total down-sampling factor.

    Raises:
        ValueError: for a mode not in :data:`AMP_MODES`.
    """
    dtype, scaler, _ = amp_choice(amp, device, bottom_depth)
    return dtype, scaler


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
