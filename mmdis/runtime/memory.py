"""Peak memory of this process: one reading for run logs (:func:`peak_memory_mb`) and one for timing a
block (:class:`PeakMemory`).

On CUDA the numbers are ``torch.cuda.max_memory_allocated`` (tensors only). On the CPU they come from
the process's peak resident set: ``VmHWM`` in ``/proc/self/status``, which Linux resets to the current
size when ``5`` is written to ``/proc/self/clear_refs``; where that is impossible, ``getrusage``'s
``ru_maxrss`` (which never goes down, so the rise it shows for a block is a lower bound).
"""

from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path

import torch


def _maxrss_mib() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory of this process in MiB since it started (CUDA: since the last reset of the stats).

    On CUDA the most ever allocated by tensors on ``device``; on the CPU the peak resident set size of
    the process (``ru_maxrss``; ``None`` where the ``resource`` module is missing, i.e. on Windows).
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        return _maxrss_mib()
    except ImportError:
        return None


def _malloc_trim() -> None:
    # glibc keeps freed heap for reuse; without handing it back, a baseline taken after an earlier
    # measurement would already contain memory the next one reuses, and its peak would read low.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _proc_status_mib(field: str) -> float:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {field}")
    return int(match.group(1)) / 1024


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _proc_status_mib("VmHWM")
    except OSError:
        return False
    return True


def memory_method(device: torch.device) -> str:
    """How :class:`PeakMemory` measures on ``device``, in words."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated above the memory allocated before the block"
    if _reset_peak_rss():
        return ("rise of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs "
                "after malloc_trim) above the resident set before the block")
    return "rise of getrusage ru_maxrss (a lower bound: 0 if an earlier measurement peaked higher)"


class PeakMemory:
    """Context manager: ``mib`` is the peak memory in MiB used by the block above what was in use when it
    began (see :func:`memory_method`); ``None`` where it cannot be measured."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib: float | None = None
        self._base: float | None = None
        self._proc = False  # whether VmHWM could be reset (CPU)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        _malloc_trim()
        self._proc = _reset_peak_rss()
        try:
            self._base = _proc_status_mib("VmRSS") if self._proc else _maxrss_mib()
        except (OSError, ImportError):
            self._base = None
        return self

    def __exit__(self, *exc) -> None:
        if self._base is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            peak = _proc_status_mib("VmHWM") if self._proc else _maxrss_mib()
        self.mib = max(peak - self._base, 0.0)
