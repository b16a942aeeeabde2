r"""One case through the encoders in eval mode: :math:`c_i = E^c_i(x_i)`, :math:`a_i = \mu_i`."""

from __future__ import annotations

import numpy as np
import torch

from mmdis.conventions import NUM_MODALITIES
from mmdis.inspection.padding import pad_to_multiple
from mmdis.models.networks import Encoded, MultimodalSegNet


def model_device(model: MultimodalSegNet) -> torch.device:
    """The device the model's parameters are on."""
    return next(model.parameters()).device


def availability(available, model: MultimodalSegNet) -> torch.Tensor:
    r""":math:`\delta` as a ``(1, M)`` bool tensor on the model's device; ``None`` means all available."""
    available = [True] * NUM_MODALITIES if available is None else [bool(a) for a in available]
    return torch.tensor([available], dtype=torch.bool, device=model_device(model))  # (1, M)


@torch.no_grad()
def encode_case(model: MultimodalSegNet, image) -> Encoded:
    r"""Eval-mode :meth:`~MultimodalSegNet.encode` of one case: :math:`c_i = E^c_i(x_i)`, :math:`a_i = \mu_i`.

    Args:
        image: ``(M, D, H, W)``; padded here, so the codes cover the padded grid (batch ``B = 1``).
    """
    model.eval()
    x, _ = pad_to_multiple(torch.from_numpy(np.array(image, dtype=np.float32)))  # copy of a read-only map
    return model.encode(x[None].to(model_device(model)))  # (1, M, D', H', W')
