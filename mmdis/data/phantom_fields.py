"""Smooth random fields for the phantom, defined in millimetres so that they do not depend on the grid.

A Gaussian-smoothed white noise is, up to discretisation, a sum of Gaussian bumps centred on a lattice
with independent normal weights:

.. math::

    f(\\mathbf{x}) = \\frac{1}{Z(\\mathbf{x})} \\sum_{a,b,c} w_{abc}\\,
        k(x - \\xi_a)\\, k(y - \\eta_b)\\, k(z - \\zeta_c),
    \\qquad k(t) = e^{-t^2 / 2\\sigma^2},\\quad w_{abc} \\sim \\mathcal{N}(0, 1).

The kernel is separable, so on a grid the sum is three small matrix products instead of a 3-D
convolution, and the variance :math:`Z^2 = \\sum_a k^2 \\sum_b k^2 \\sum_c k^2` is known exactly: every
field has unit variance everywhere. The lattice (node step :math:`\\sigma`) is laid over a box given in
millimetres, so the same weights give the same continuous field at 1, 2 or 4 mm; a phantom case is the
same tumour at every resolution.

:func:`sphere_bumps` plays the same role on the unit sphere: a smooth random function of direction,
used to make star-shaped (hence connected and nested) but lobulated tumour boundaries.
"""

from __future__ import annotations

import numpy as np


class RandomField:
    """A smooth, zero-mean, unit-variance random field on a box in millimetres.

    Args:
        rng: source of the lattice weights (drawn here, once).
        sigma_mm: kernel width :math:`\\sigma`, about the correlation length of the field.
        lo_mm: ``(3,)`` lower corner of the box where the field will be evaluated.
        hi_mm: ``(3,)`` upper corner.

    The number of weights drawn depends only on ``sigma_mm`` and the box, never on a grid spacing.
    """

    def __init__(self, rng: np.random.Generator, sigma_mm: float, lo_mm, hi_mm):
        self.sigma = float(sigma_mm)
        pad = 3.0 * self.sigma  # nodes beyond the box so that its border sees a full neighbourhood
        lo = np.asarray(lo_mm, dtype=np.float64) - pad
        hi = np.asarray(hi_mm, dtype=np.float64) + pad
        counts = np.maximum(np.ceil((hi - lo) / self.sigma).astype(int) + 1, 1)
        self.nodes = [lo[i] + self.sigma * np.arange(counts[i]) for i in range(3)]
        self.weights = rng.standard_normal(tuple(counts)).astype(np.float32)  # (A, B, C)

    def _kernel(self, axis: int, coords_mm: np.ndarray) -> np.ndarray:
        """Normalised kernel matrix ``(len(coords_mm), nodes)`` of one axis."""
        t = (np.asarray(coords_mm, dtype=np.float64)[:, None] - self.nodes[axis][None, :]) / self.sigma
        k = np.exp(-0.5 * t**2)
        # Dividing each row by its l2 norm makes the product over axes the exact standard deviation.
        return (k / np.sqrt((k**2).sum(axis=1, keepdims=True))).astype(np.float32)

    def on_grid(self, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray) -> np.ndarray:
        """Evaluate the field on the grid ``x_mm × y_mm × z_mm``.

        Args:
            x_mm, y_mm, z_mm: 1-D coordinates (mm) along each axis, lengths ``X``, ``Y``, ``Z``.

        Returns:
            ``float32 (X, Y, Z)`` array with zero mean and unit variance at every point.
        """
        kx, ky, kz = (self._kernel(i, c) for i, c in enumerate((x_mm, y_mm, z_mm)))
        a, b, c = self.weights.shape
        f = (kx @ self.weights.reshape(a, b * c)).reshape(-1, b, c)  # (X, B, C)
        f = np.einsum("yb,xbc->xyc", ky, f, optimize=True)  # (X, Y, C)
        return f @ kz.T  # (X, Y, Z)


def grid_axes(shape: tuple[int, ...], spacing: float, offset: tuple[int, ...] = (0, 0, 0)):
    """Millimetre coordinates of the voxel centres of a (sub-)grid, one 1-D array per axis.

    Args:
        shape: ``(X, Y, Z)`` of the sub-grid.
        spacing: voxel size (mm).
        offset: index of the sub-grid's first voxel in the full grid.
    """
    return [spacing * (o + np.arange(n, dtype=np.float64)) for n, o in zip(shape, offset)]


def random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3)`` directions uniform on the sphere."""
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sphere_bumps(rng: np.random.Generator, n_bumps: int = 16, kappa: float = 4.0, n_fields: int = 1):
    """Random smooth functions of direction: sums of von Mises-Fisher bumps with normal weights.

    .. math::

        g(\\mathbf{u}) = \\frac{1}{s}\\sum_{j=1}^{J} w_j\\, e^{\\kappa(\\mathbf{u}\\cdot\\mathbf{v}_j - 1)},
        \\qquad s^2 = J\\,\\frac{1 - e^{-4\\kappa}}{4\\kappa},

    where :math:`s^2` is the mean over the sphere of the variance, so :math:`g` has about unit variance.
    The ``n_fields`` functions share the bump directions :math:`\\mathbf{v}_j` (so one exponential per
    voxel serves them all) but have independent weights.

    Args:
        rng: source of directions and weights.
        n_bumps: :math:`J`.
        kappa: concentration; larger gives more, smaller lobes (4 is lobes of roughly 30 degrees).
        n_fields: number of functions returned by the evaluator.

    Returns:
        A function mapping unit vectors ``(3, N)`` to values ``float32 (n_fields, N)``.
    """
    dirs = random_unit_vectors(rng, n_bumps).astype(np.float32)  # (J, 3)
    weights = rng.standard_normal((n_fields, n_bumps)).astype(np.float32)  # (F, J)
    scale = np.sqrt(n_bumps * (1.0 - np.exp(-4.0 * kappa)) / (4.0 * kappa))
    weights /= np.float32(scale)

    def evaluate(unit: np.ndarray) -> np.ndarray:
        # (J, N) in place: points along the fast axis is ~10x quicker than (N, J) for large N.
        k = dirs @ unit.astype(np.float32, copy=False)  # (J, N)
        k -= np.float32(1.0)
        k *= np.float32(kappa)
        np.exp(k, out=k)
        return weights @ k  # (F, N)

    return evaluate
