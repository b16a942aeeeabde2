"""Validation during training: the whole-tumour Dice of the val split, segmented as the evaluation does."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from mmdis.conventions import REGIONS
from mmdis.data.datasets import VolumeDataset
from mmdis.inference import predict_subsets
from mmdis.metrics import overlap_scores
from mmdis.models.networks import MultimodalSegNet
from mmdis.profiles import get_profile


@torch.no_grad()
def wt_dice_scores(model: MultimodalSegNet, cache_dir: str | Path, case_ids: list[str], device: torch.device,
                   amp_dtype: torch.dtype | None = None, profile: str = "paper") -> list[float]:
    r"""Whole-tumour Dice of each case over its whole volume, with every available modality.

    .. math:: \mathrm{Dice}_{WT} = \frac{2 |P \cap G|}{|P| + |G|}, \quad
              P = \{\arg\max_k \hat Y \in WT\} \cap \text{brain},\ G = \{Y \in WT\}

    (1 when both are empty, :func:`mmdis.metrics.overlap_scores`). Each volume is segmented with the
    sliding windows the evaluation uses for ``profile`` (:attr:`mmdis.profiles.Profile.eval_window`), so
    that validation and test agree.

    Returns:
        One Dice per case of ``case_ids``, in that order.
    """
    chosen = get_profile(profile)
    roi, overlap = chosen.eval_window
    wt = np.asarray(REGIONS["WT"])
    scores = []
    for item in VolumeDataset(cache_dir, case_ids):
        available = tuple(bool(a) for a in item["available"])
        pred = predict_subsets(model, item["image"], available, subsets=[available], roi_size=roi,
                               overlap=overlap, with_recon=False, mode=chosen.eval_blend, device=device,
                               amp_dtype=amp_dtype)
        p = np.isin(pred.labels[0], wt)
        if chosen.eval_mask:
            p &= item["mask"].numpy()
        g = np.isin(item["label"].numpy(), wt)
        scores.append(overlap_scores(p, g)["dice"])
    model.train()
    return scores


def validate(model: MultimodalSegNet, cache_dir: str | Path, case_ids: list[str], device: torch.device,
             amp_dtype: torch.dtype | None = None, profile: str = "paper") -> float:
    """Mean of :func:`wt_dice_scores` over ``case_ids`` (NaN without cases)."""
    scores = wt_dice_scores(model, cache_dir, case_ids, device, amp_dtype, profile)
    return float(np.mean(scores)) if scores else math.nan
