"""Zero-padding of a case to the network's size multiple, and the crop back (its inverse)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mmdis.models.networks import SIZE_MULTIPLE


def pad_to_multiple(x, multiple: int = SIZE_MULTIPLE, value: float = 0.0):
    """Pad the last three axes of ``x`` (numpy array or tensor) at their far end to multiples of ``multiple``.

    Returns:
        ``(padded, shape)``: same type as ``x``, and the original spatial shape for :func:`crop_spatial`.
    """
    shape = tuple(int(s) for s in x.shape[-3:])
    extra = [(-s) % multiple for s in shape]
    if isinstance(x, torch.Tensor):
        return F.pad(x, (0, extra[2], 0, extra[1], 0, extra[0]), value=value), shape
    widths = [(0, 0)] * (x.ndim - 3) + [(0, e) for e in extra]
    return np.pad(x, widths, constant_values=value), shape


def crop_spatial(x, shape: Sequence[int]):
    """Inverse of :func:`pad_to_multiple`: the first ``shape`` voxels of the last three axes."""
    return x[..., : shape[0], : shape[1], : shape[2]]
