"""Metrics of segmentations (Dice, sensitivity, precision, HD95 per tumour region) and of reconstructions
(PSNR, SSIM inside the brain); used by training's validation and by the evaluation alike."""

from mmdis.metrics.reconstruction import RECONSTRUCTION_METRICS, psnr, reconstruction_metrics, ssim
from mmdis.metrics.segmentation import (
    ET_MIN_VOXELS,
    HD95_WORST_CASE_MM,
    SEGMENTATION_METRICS,
    et_postprocess,
    hd95,
    overlap_scores,
    segmentation_metrics,
    surface,
)

__all__ = [
    "ET_MIN_VOXELS", "HD95_WORST_CASE_MM", "RECONSTRUCTION_METRICS", "SEGMENTATION_METRICS", "et_postprocess",
    "hd95", "overlap_scores", "psnr", "reconstruction_metrics", "segmentation_metrics", "ssim", "surface",
]
