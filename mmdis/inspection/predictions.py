"""A cached case segmented (and reconstructed) for named subsets, with the evaluation's window settings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmdis.conventions import SUBSETS, subset_name
from mmdis.inference import SubsetPrediction, predict_subsets
from mmdis.models.networks import MultimodalSegNet
from mmdis.profiles import get_profile

_MASKS = {subset_name(s): s for s in SUBSETS}


def predict_cached_case(model: MultimodalSegNet, case, subsets: Sequence[str], profile: str = "smoke",
                        with_recon: bool = False, roi_size: int | None = None) -> SubsetPrediction:
    """A :class:`~mmdis.inference.SubsetPrediction` of a cached case for named subsets (``"T1+T1c"``).

    Runs :func:`~mmdis.inference.predict_subsets` with the window of
    :attr:`mmdis.profiles.Profile.eval_window` of ``profile`` (or ``roi_size``).

    Args:
        case: ``image (M, D, H, W)``, ``available (M,)``, ``mask (D, H, W)`` (e.g. a cached case).
        subsets: subset names as :func:`~mmdis.conventions.subset_name` spells them.

    Returns:
        ``labels (S, D, H, W)``, 0 outside the brain as in the evaluation, and ``recon (S, M, D, H, W)``
        if ``with_recon``.

    Raises:
        ValueError: for an unknown subset name.
    """
    chosen = get_profile(profile)
    roi, overlap = chosen.eval_window
    unknown = [s for s in subsets if s not in _MASKS]
    if unknown:
        raise ValueError(f"unknown subsets {unknown}; names look like {list(_MASKS)[-1]!r}")
    pred = predict_subsets(model, case.image, case.available, subsets=[_MASKS[s] for s in subsets],
                           roi_size=roi_size or roi, overlap=overlap,
                           with_recon=with_recon, mode=chosen.eval_blend)
    if chosen.eval_mask:
        pred.labels[:, ~np.asarray(case.mask, bool)] = 0
    return pred
