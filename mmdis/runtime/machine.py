"""What machine a run ran on: versions, processor, threads, GPU and the code's git commit.

:func:`environment` is what every run directory records as ``env.json``; :func:`environment_line` is the
one-line summary printed above benchmark tables.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    model = platform.processor() or platform.machine()
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else model
    except OSError:
        pass
    return model


def git_commit() -> str | None:
    """The commit of the checkout this package runs from, or ``None`` outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, hardware and the git commit of the code, for ``env.json``."""
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__,
           "platform": platform.platform(), "device": str(device), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "git_commit": git_commit()}
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def environment_line(device: torch.device) -> str:
    """Device, torch version, threads and load average in one line."""
    if device.type == "cuda":
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        name = f"cpu ({cpu_model()}, {os.cpu_count()} logical cores)"
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"device {name}; torch {torch.__version__}; intra-op threads {torch.get_num_threads()}; "
            f"load average {load}")
