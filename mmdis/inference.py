r"""Whole-volume inference for many modality subsets at once, with sliding windows.

The paper evaluates one trained model on the 15 non-empty subsets of {FLAIR, T1, T1c, T2}. Nothing the
encoders compute depends on which modalities are available (only fusion does, through
:math:`\delta_i`), so for every window of the volume :func:`predict_subsets` runs each modality's content
and appearance encoders **once**, repeats the codes for the requested subsets
in chunks and only fuses and decodes per subset. MONAI's
:func:`~monai.inferers.sliding_window_inference` tiles the volume (the paper: 80\ :sup:`3` windows, 50 %
overlap) and blends the windows' softmax probabilities (and reconstructions) with a Gaussian weight (``mode``;
``constant`` averages them uniformly, as the authors' code).

Shapes: ``image`` is ``(M, D, H, W)`` for one case; the result holds ``labels`` ``(S, D, H, W)`` and
``recon`` ``(S, M, D, H, W)`` for ``S`` subsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import Tensor

from mmdis.conventions import NUM_MODALITIES, SUBSETS, subset_name
from mmdis.models.networks import SIZE_MULTIPLE, Encoded, MultimodalSegNet

Subset = tuple[bool, ...]

@dataclass
class SubsetPrediction:
    """Predictions of one case for several modality subsets.

    Attributes:
        subsets: the availability masks, ``S`` tuples of ``M`` bools (the row order of the arrays).
        labels: arg-max canonical labels, ``uint8 (S, D, H, W)``.
        probs: softmax probabilities ``float32 (S, K, D, H, W)`` when requested, else ``None``.
        recon: reconstructions :math:`\\hat x_i` of every modality from each subset's fused code,
            ``float32 (S, M, D, H, W)``, or ``None`` for variants without disentanglement.
    """

    subsets: list[Subset]
    labels: np.ndarray
    probs: np.ndarray | None = None
    recon: np.ndarray | None = None

    def names(self) -> list[str]:
        """Readable subset names (``"FLAIR+T1c"``) in row order."""
        return [subset_name(s) for s in self.subsets]


def feasible_subsets(available: Sequence[bool], subsets: Sequence[Subset] = SUBSETS) -> tuple[list, list]:
    """Split ``subsets`` into those formed from the modalities a case has and those it cannot form.

    Returns:
        ``(feasible, skipped)``, each a list of availability tuples in the order of ``subsets``.
    """
    have = [bool(a) for a in available]
    feasible = [tuple(s) for s in subsets if all(h or not w for h, w in zip(have, s))]
    skipped = [tuple(s) for s in subsets if tuple(s) not in feasible]
    return feasible, skipped


def _check_subsets(subsets: Sequence[Subset], available: Sequence[bool]) -> list[Subset]:
    subsets = [tuple(bool(v) for v in s) for s in subsets]
    if not subsets:
        raise ValueError("subsets is empty: ask for at least one modality subset")
    for s in subsets:
        if len(s) != NUM_MODALITIES or not any(s):
            raise ValueError(f"subsets: {s} is not a non-empty mask of {NUM_MODALITIES} modalities")
        if any(w and not h for w, h in zip(s, available)):
            raise ValueError(f"subsets: {subset_name(s)} needs a modality this case does not have")
    return subsets


@torch.no_grad()
def predict_subsets(
    model: MultimodalSegNet,
    image: Tensor | np.ndarray,
    available: Sequence[bool] | None = None,
    subsets: Sequence[Subset] | None = None,
    roi_size: Sequence[int] | int = 80,
    overlap: float = 0.5,
    sw_batch_size: int = 1,
    subset_batch: int = 5,
    with_probs: bool = False,
    with_recon: bool = True,
    mode: str = "gaussian",
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> SubsetPrediction:
    """Segment (and reconstruct) one whole volume for every requested modality subset.

    Args:
        model: a trained network (put in eval mode here).
        image: ``(M, D, H, W)`` z-scored volume; channels of absent modalities are ignored.
        available: ``M`` bools, the modalities the case has (default: all).
        subsets: availability masks to evaluate (default: every subset of ``available`` in Table-2
            order); each must be formed from ``available``.
        roi_size: sliding-window size, a multiple of 8 per axis (paper: 80).
        overlap: fraction of overlap between windows (paper: 0.5).
        sw_batch_size: windows per encoder pass.
        subset_batch: (window, subset) pairs decoded together (lower it to save memory).
        with_probs: also return the blended softmax probabilities.
        with_recon: also return reconstructions (for variants that have them).
        mode: MONAI's window blending, ``"gaussian"`` or ``"constant"``.
        device: where the network runs (default: the model's device); the stitched outputs stay on the
            CPU so that a 240 x 240 x 155 volume fits in host memory rather than on the device.
        amp_dtype: autocast dtype for the network (e.g. ``torch.bfloat16``), or ``None``.
        progress: a tqdm bar over windows.

    Returns:
        A :class:`SubsetPrediction`.

    Raises:
        ValueError: for a wrongly shaped image, a window size not divisible by 8, or a subset that
            needs a modality the case lacks.
    """
    if not isinstance(image, Tensor):
        image = np.asarray(image)
        image = torch.from_numpy(image if image.flags.writeable else image.copy())  # e.g. a memory map
    if image.dim() != 4 or image.shape[0] != NUM_MODALITIES:
        raise ValueError(f"image must have shape ({NUM_MODALITIES}, D, H, W), got {tuple(image.shape)}")
    available = [True] * NUM_MODALITIES if available is None else [bool(a) for a in available]
    if len(available) != NUM_MODALITIES or not any(available):
        raise ValueError(f"available must be {NUM_MODALITIES} bools with at least one True, got {available}")
    subsets = _check_subsets(feasible_subsets(available)[0] if subsets is None else subsets, available)
    roi = (roi_size,) * 3 if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
    if len(roi) != 3 or any(r < SIZE_MULTIPLE or r % SIZE_MULTIPLE for r in roi):
        raise ValueError(f"roi_size {roi_size} must be three multiples of {SIZE_MULTIPLE}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    if subset_batch < 1 or sw_batch_size < 1:
        raise ValueError("subset_batch and sw_batch_size must be >= 1")

    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    masks = torch.tensor(subsets, dtype=torch.bool, device=device)  # (S, M)
    n_sub, k = len(subsets), model.config.num_classes
    recon_wanted = with_recon and model.config.disentangle
    # Absent modalities are zero inside the network's input whatever the file held.
    keep = torch.tensor(available, dtype=image.dtype)[:, None, None, None]
    x = (image.float() * keep)[None]  # (1, M, D, H, W)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()

    def predictor(window: Tensor) -> tuple[Tensor, ...]:
        # window: (B_w, M, d, h, w) -> probabilities (B_w, S*K, d, h, w) [, recon (B_w, S*M, d, h, w)]
        b = window.shape[0]
        with autocast:
            encoded = model.encode(window)  # each modality's encoders once per window
            avail = masks.repeat(b, 1)  # (B_w * S, M): row b * S + s is window b, subset s
            probs, recons = [], []
            for lo in range(0, b * n_sub, subset_batch):
                rows = torch.arange(lo, min(lo + subset_batch, b * n_sub), device=window.device)
                part = _select_rows(encoded, rows // n_sub)
                out = model.decode(part, avail[rows], reconstruct=recon_wanted)
                probs.append(torch.softmax(out.seg.float(), dim=1))
                if recon_wanted:
                    recons.append(out.recon.float())
        spatial = window.shape[2:]
        result = [torch.cat(probs).reshape(b, n_sub * k, *spatial)]
        if recon_wanted:
            result.append(torch.cat(recons).reshape(b, n_sub * NUM_MODALITIES, *spatial))
        return tuple(result)

    out = sliding_window_inference(
        x, roi, sw_batch_size, predictor, overlap=overlap, mode=mode, sw_device=device, device="cpu",
        progress=progress,
    )
    out = (out,) if isinstance(out, Tensor) else out  # MONAI unwraps a one-element tuple
    spatial = x.shape[2:]
    probs = out[0][0].reshape(n_sub, k, *spatial)  # (S, K, D, H, W)
    labels = probs.argmax(dim=1).to(torch.uint8).numpy()
    recon = out[1][0].reshape(n_sub, NUM_MODALITIES, *spatial).numpy() if recon_wanted else None
    return SubsetPrediction(subsets=subsets, labels=labels, probs=probs.numpy() if with_probs else None,
                            recon=recon)


def _select_rows(encoded: Encoded, index: Tensor) -> Encoded:
    """Rows ``index`` of every batched field of an :class:`~mmdis.models.networks.Encoded`; only this
    chunk of copies is ever materialised (not all ``S`` repeats at once)."""

    def cut(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.index_select(0, index)

    content = None if encoded.content is None else [cut(c) for c in encoded.content]
    return Encoded(cut(encoded.x), content, cut(encoded.appearance), cut(encoded.mu), cut(encoded.logvar))
