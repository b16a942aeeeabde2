"""Metrics of segmentations (Dice, sensitivity, precision, HD95 per tumour region) and of reconstructions
(PSNR, SSIM inside the brain); used by training's validation and by the evaluation alike. The choices a
segmentation score depends on (HD95 definition, empty-mask convention, small-ET post-processing) are
named in :mod:`mmdis.metrics.definitions`."""

from mmdis.metrics.definitions import (
    EMPTY_CONVENTIONS,
    ET_MIN_VOXELS,
    ET_PP,
    HD95_DEFINITIONS,
    HD95_WORST_CASE_MM,
    EmptyMaskConvention,
    MetricConfig,
    get_empty_convention,
)
from mmdis.metrics.postprocess import case_metrics, et_postprocess
from mmdis.metrics.reconstruction import RECONSTRUCTION_METRICS, psnr, reconstruction_metrics, ssim
from mmdis.metrics.segmentation import (
    SEGMENTATION_METRICS,
    hd95,
    overlap_scores,
    segmentation_metrics,
    surface,
    surface_distances,
)

__all__ = [
    "EMPTY_CONVENTIONS", "ET_MIN_VOXELS", "ET_PP", "HD95_DEFINITIONS", "HD95_WORST_CASE_MM",
    "RECONSTRUCTION_METRICS", "SEGMENTATION_METRICS", "EmptyMaskConvention", "MetricConfig", "case_metrics",
    "et_postprocess", "get_empty_convention", "hd95", "overlap_scores", "psnr", "reconstruction_metrics",
    "segmentation_metrics", "ssim", "surface", "surface_distances",
]
