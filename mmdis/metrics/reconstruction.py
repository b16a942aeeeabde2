r"""Reconstruction metrics: one reconstructed modality against its input, inside the brain mask.

PSNR and SSIM are computed on the voxels of the brain only (the background is zero in both images and
would inflate both); see :func:`reconstruction_metrics`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mmdis.metrics.segmentation import union_box

#: Names of the reconstruction metrics.
RECONSTRUCTION_METRICS: tuple[str, ...] = ("psnr", "ssim")


def _check_images(recon: np.ndarray, target: np.ndarray, mask: np.ndarray):
    recon, target, mask = np.asarray(recon), np.asarray(target), np.asarray(mask)
    if target.ndim != 3:
        raise ValueError(f"target must be a 3-D image (D, H, W), got shape {target.shape}")
    for name, arr in (("recon", recon), ("mask", mask)):
        if arr.shape != target.shape:
            raise ValueError(f"{name} has shape {arr.shape} but target has shape {target.shape}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise ValueError("mask is empty: there is no brain to compare")
    r, t = recon[mask].astype(np.float64), target[mask].astype(np.float64)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(t))):
        raise ValueError("recon and target must be finite inside the mask")
    data_range = float(t.max() - t.min())
    if data_range <= 0:
        raise ValueError("target is constant inside the mask: its data range is 0")
    return recon, target, mask, data_range


def psnr(recon: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    r"""Peak signal-to-noise ratio inside the mask, in dB.

    .. math::

        \mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\frac{1}{|M|}\sum_{v \in M} (\hat x_v - x_v)^2},
        \qquad R = \max_{v \in M} x_v - \min_{v \in M} x_v,

    with :math:`x` the target, :math:`\hat x` the reconstruction and :math:`M` the brain mask. The
    intensities are z-scored, so there is no fixed peak value; :math:`R` is the target's range inside the
    brain. ``inf`` for a perfect reconstruction.

    Raises:
        ValueError: see :func:`reconstruction_metrics`.
    """
    recon, target, mask, data_range = _check_images(recon, target, mask)
    mse = float(np.mean((recon[mask].astype(np.float64) - target[mask].astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim(recon: np.ndarray, target: np.ndarray, mask: np.ndarray, win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float:
    r"""Mean 3-D Gaussian-window SSIM over the voxels of the mask.

    .. math::

        \mathrm{SSIM}(v) = \frac{(2\mu_{\hat x}\mu_x + c_1)(2\sigma_{\hat x x} + c_2)}
                                {(\mu_{\hat x}^2 + \mu_x^2 + c_1)(\sigma_{\hat x}^2 + \sigma_x^2 + c_2)},
        \qquad c_1 = (k_1 R)^2,\; c_2 = (k_2 R)^2,

    where the local means, variances and covariance at voxel :math:`v` are weighted by a normalised
    Gaussian window (``win_size`` voxels per axis, standard deviation ``sigma``) and :math:`R` is the data
    range of :func:`psnr`. Both images are set to 0 outside the mask (the z-scored background) and
    cropped to the mask's bounding box; the window sees zeros beyond the box. The reported value is the
    mean of :math:`\mathrm{SSIM}(v)` over :math:`v \in M`. Per voxel this is MONAI's
    ``compute_ssim_and_cs`` (the :class:`monai.metrics.SSIMMetric` formula) on the box zero-padded by
    ``win_size // 2``; the tests cross-check the two.

    Raises:
        ValueError: see :func:`reconstruction_metrics`, or an even or non-positive ``win_size``.
    """
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be a positive odd number, got {win_size}")
    recon, target, mask, data_range = _check_images(recon, target, mask)
    box = union_box(mask, mask, margin=0)
    m = mask[box]
    x = np.where(m, recon[box], 0.0).astype(np.float64)  # reconstruction
    y = np.where(m, target[box], 0.0).astype(np.float64)  # target

    def local_mean(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma, mode="constant", cval=0.0, radius=win_size // 2)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
    ssim_map = luminance * contrast_structure
    return float(ssim_map[m].mean())


def reconstruction_metrics(recon: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """PSNR (dB) and SSIM of one reconstructed modality inside the brain mask.

    The data range for both is the target's range inside the mask (the images are z-scored, so there is
    no fixed peak); see :func:`psnr` and :func:`ssim` for the formulas.

    Args:
        recon: reconstructed image ``(D, H, W)``.
        target: the input modality it reconstructs, same shape.
        mask: brain mask, same shape, cast to bool.

    Returns:
        ``{"psnr": dB, "ssim": value in [-1, 1]}``.

    Raises:
        ValueError: naming the argument whose shape differs from ``target``'s, if ``target`` is not 3-D,
            if the mask is empty, if either image is not finite inside the mask, or if the target is
            constant there.
    """
    return {"psnr": psnr(recon, target, mask), "ssim": ssim(recon, target, mask)}
