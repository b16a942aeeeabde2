"""Tumour geometry of the phantom: a lobulated glioma with nested subregions, drawn in millimetres.

In a rotated and stretched frame :math:`\\mathbf{q} = S R^\\top (\\mathbf{x} - \\mathbf{c})` around the
centre :math:`\\mathbf{c}`, with :math:`d = \\lVert\\mathbf{q}\\rVert` and direction
:math:`\\mathbf{u} = \\mathbf{q}/d`, each compartment is the inside of a star-shaped surface

.. math::

    R_k(\\mathbf{u}) = r_k\\, e^{\\lambda\\, g_k(\\mathbf{u})}

where :math:`g_k` are smooth random functions of direction (:func:`~.phantom_fields.sphere_bumps`) and
:math:`\\lambda` the lobulation. The radii are clamped so the compartments nest with a minimum rim:
:math:`R_{nec} \\le R_{core} - t_{rim}` and :math:`R_{ed} \\ge R_{core} + t_{ring}`. Then

- tumour core (canonical 1 + 3): :math:`d < R_{core}`; necrosis (1): :math:`d < R_{nec}`;
- enhancing rim (3): the rest of the core, except gaps where :math:`g_{gap}` is low, which are solid
  non-enhancing tumour (also 1);
- edema (2): :math:`d < R_{ed}(\\mathbf{u})\\,(1 + \\beta (p_{WM} - \\tfrac12) + \\gamma\\,\\rho)` outside
  the CSF, the connected part around the core, plus a ring of :math:`t_{ring}` around it: edema reaches
  further along white matter (:math:`\\beta`) and has a ragged border (fine random field
  :math:`\\rho`).

Everything is cut to the brain mask. Because the surfaces are star-shaped around one centre, the core
is connected and ET, the non-enhancing core, TC and WT are nested by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mmdis.conventions import CORE, EDEMA, ENHANCING
from mmdis.data.phantom_anatomy import Placement
from mmdis.data.phantom_fields import RandomField, grid_axes, random_unit_vectors, sphere_bumps

#: Appearance classes of tumour tissue; the first two both carry the canonical label ``CORE``.
TUMOUR_TISSUES = ("necrosis", "nonenhancing", "enhancing", "edema")
_WM_SPREAD = 0.8  # beta: how much further edema reaches in pure white matter than on average
_ROUGHNESS = 0.12  # gamma: ragged edema border
_G_CLIP = 2.0  # bound on the direction functions, so the tumour fits a known box


@dataclass(frozen=True)
class Tumour:
    """Parameters of one tumour, all in template millimetres.

    Attributes:
        centre: ``(3,)`` centre :math:`\\mathbf{c}`.
        frame: ``(3, 3)`` matrix :math:`S R^\\top` (rotation, then a volume-preserving stretch).
        r_core, r_necrosis, r_edema: median radii of the compartments.
        rim: minimum thickness of the enhancing rim; ring: minimum thickness of edema around the core.
        lobulation: :math:`\\lambda`.
        gap_level: rim directions with :math:`g_{gap}` below it do not enhance (``-inf``: closed rim).
        push: mass-effect strength :math:`A` (see :meth:`mass_effect`).
        shape: direction functions, unit vectors ``(3, N)`` -> ``(4, N)`` (core, necrosis, edema, gap).
    """

    centre: np.ndarray
    frame: np.ndarray
    r_core: float
    r_necrosis: float
    r_edema: float
    rim: float
    ring: float
    lobulation: float
    gap_level: float
    push: float
    shape: Callable[[np.ndarray], np.ndarray]

    def radii(self, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Boundary radii along unit vectors ``(3, N)``: ``R_core, R_nec, R_ed`` and ``g_gap``, each (N,)."""
        g = np.clip(self.shape(unit), -_G_CLIP, _G_CLIP)  # (4, N)
        lam = np.float32(self.lobulation)
        r_core = self.r_core * np.exp(lam * g[0])
        # Necrosis half-follows the core's lobes (0.6^2 + 0.8^2 = 1 keeps unit variance).
        r_nec = np.minimum(self.r_necrosis * np.exp(lam * (0.6 * g[0] + 0.8 * g[1])), r_core - self.rim)
        r_ed = np.maximum(self.r_edema * np.exp(lam * g[2]), r_core + self.ring)
        return r_core, r_nec, r_ed, g[3]

    def extent_mm(self) -> float:
        """A radius (mm, around the centre) beyond which no compartment reaches."""
        probe = random_unit_vectors(np.random.default_rng(0), 4000).T.astype(np.float32)  # (3, N)
        r_ed = self.radii(probe)[2].max() * 1.05  # the functions are smooth: a dense probe nearly bounds
        stretch_min = np.linalg.svd(self.frame, compute_uv=False).min()
        return float(r_ed * (1 + 0.5 * _WM_SPREAD + _G_CLIP * _ROUGHNESS) / stretch_min)

    def mass_effect(self, rel: np.ndarray) -> np.ndarray:
        """Radial displacement of the tissue around the tumour (mm), to subtract from sampling points.

        .. math::

            \\mathbf{x}_{src} = \\mathbf{x} - A\\,(\\mathbf{x}-\\mathbf{c})
                \\,e^{-\\lVert\\mathbf{x}-\\mathbf{c}\\rVert^2/R_m^2},
            \\qquad R_m = r_{core} + 8\\,\\text{mm}

        A voxel near the tumour shows tissue that used to lie closer to the centre: the brain is pushed
        outwards. With :math:`A < 1` the map is one-to-one.

        Args:
            rel: ``(3, ...)`` positions relative to the centre (mm).

        Returns:
            ``(3, ...)`` displacement :math:`A(\\mathbf{x}-\\mathbf{c})e^{-\\ldots}`.
        """
        r_m = self.r_core + 8.0
        return rel * (self.push * np.exp(-(rel**2).sum(axis=0) / r_m**2))[None]


def draw_tumour(rng: np.random.Generator, spacing: float, where: Placement) -> Tumour:
    """Draw a tumour's size, shape and position.

    The core radius is uniform in 5-18 mm (core volumes of about 0.5-25 ml, whole tumours of 3-200 ml),
    so sizes vary widely between cases. Radii are raised where needed so that every compartment is at
    least about one voxel thick at ``spacing``.
    """
    r_core = rng.uniform(5.0, 18.0)
    r_nec = r_core * rng.uniform(0.45, 0.8)
    r_edema_factor = rng.uniform(1.25, 1.9)
    rim = max(2.5, 1.1 * spacing)
    ring = max(2.5, 1.1 * spacing)
    r_nec = max(r_nec, 2.5, 1.1 * spacing)
    r_core = max(r_core, r_nec + rim + 1.0)
    r_edema = r_core * r_edema_factor + 3.0
    lobulation = rng.uniform(0.12, 0.3)
    has_gaps = rng.uniform() < 0.5
    gap_level = rng.uniform(-1.4, -0.7) if has_gaps else -np.inf
    push = rng.uniform(0.15, 0.45)
    rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    stretch = rng.uniform(0.8, 1.25, size=3)
    stretch /= np.prod(stretch) ** (1 / 3)
    shape = sphere_bumps(rng, n_bumps=16, kappa=4.0, n_fields=4)

    # Centre: a white-matter candidate deep enough for the core, in a random hemisphere.
    side = rng.choice([-1.0, 1.0])
    in_side = np.sign(where.centres_mm[:, 0] - where.midline_mm) == side
    deep = where.depth_mm >= r_core + 6.0
    pool = np.flatnonzero(in_side & deep)
    if pool.size == 0:  # a very large core: take the deepest candidates of that side
        pool = np.flatnonzero(in_side)
        pool = pool[where.depth_mm[pool] >= np.quantile(where.depth_mm[pool], 0.9)]
    centre = where.centres_mm[rng.choice(pool)] + rng.uniform(-2.0, 2.0, size=3)
    return Tumour(centre, np.diag(stretch) @ rotation.T, r_core, r_nec, r_edema, rim, ring, lobulation,
                  gap_level, push, shape)


@dataclass
class TumourMaps:
    """A rasterised tumour inside a box of the crop grid.

    Attributes:
        box: slices of the box in the crop grid.
        label: canonical labels ``uint8`` on the box.
        tissues: appearance class (:data:`TUMOUR_TISSUES`) -> hard ``bool`` mask on the box.
        edema_strength: ``float32`` on the box, 1 next to the core fading to 0.5 at the border.
        texture: ``float32`` zero-mean heterogeneity field on the box (unit variance).
    """

    box: tuple[slice, slice, slice]
    label: np.ndarray
    tissues: dict[str, np.ndarray]
    edema_strength: np.ndarray
    texture: np.ndarray


def rasterise(tumour: Tumour, rng: np.random.Generator, spacing: float, offset, wm: np.ndarray,
              csf: np.ndarray, brain: np.ndarray) -> TumourMaps:
    """Labels and tissue masks of ``tumour`` on the crop grid, restricted to a box around it.

    Args:
        tumour: from :func:`draw_tumour`.
        rng: draws the border roughness and texture fields (sizes independent of ``spacing``).
        spacing: voxel size (mm).
        offset: index of the crop's first voxel in the full grid.
        wm, csf, brain: deformed tissue maps on the crop grid, ``(x, y, z)``; brain is ``bool``.

    Returns:
        A :class:`TumourMaps`.
    """
    half = tumour.extent_mm() + 2.0
    lo_mm, hi_mm = tumour.centre - half, tumour.centre + half
    rough_field = RandomField(rng, 4.0, lo_mm, hi_mm)
    texture_field = RandomField(rng, 3.0, lo_mm, hi_mm)

    origin = np.asarray(offset)
    lo = np.clip(np.floor(lo_mm / spacing).astype(int) - origin, 0, brain.shape)
    hi = np.clip(np.ceil(hi_mm / spacing).astype(int) + 1 - origin, 0, brain.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    axes = grid_axes(tuple(hi - lo), spacing, tuple(origin + lo))
    bshape = tuple(hi - lo)

    rel = np.stack(np.meshgrid(*[(a - c).astype(np.float32) for a, c in zip(axes, tumour.centre)],
                               indexing="ij"))  # (3, bx, by, bz)
    q = np.tensordot(tumour.frame.astype(np.float32), rel, axes=1)  # (3, bx, by, bz)
    d = np.sqrt((q**2).sum(axis=0))
    unit = (q / np.maximum(d, 1e-6)[None]).reshape(3, -1)  # (3, N)
    r_core, r_nec, r_ed, g_gap = (v.reshape(bshape) for v in tumour.radii(unit))

    wm_b, csf_b, brain_b = wm[box], csf[box], brain[box]
    core = (d < r_core) & brain_b
    necrosis = (d < r_nec) & brain_b
    rough = np.clip(rough_field.on_grid(*axes), -_G_CLIP, _G_CLIP)
    reach = 1 + _WM_SPREAD * (wm_b - 0.5) + _ROUGHNESS * rough
    edema = (d < r_ed * reach) & (csf_b < 0.5) & brain_b
    # Edema must connect to the tumour: drop islands the white-matter term may create.
    parts, _ = ndimage.label(edema | core)
    touching = np.unique(parts[core])
    whole = np.isin(parts, touching[touching > 0]) | ((d < r_core + tumour.ring) & brain_b)
    # The ring above is in the stretched frame; a one-voxel dilation makes "edema surrounds the core"
    # exact at any spacing (where the brain allows).
    whole |= ndimage.binary_dilation(core, structure=np.ones((3, 3, 3), bool)) & brain_b

    label = np.zeros(bshape, np.uint8)
    label[whole] = EDEMA
    label[core] = ENHANCING
    gaps = core & ~necrosis & (g_gap < tumour.gap_level)
    label[necrosis | gaps] = CORE
    tissues = {"necrosis": necrosis, "nonenhancing": gaps & ~necrosis, "enhancing": label == ENHANCING,
               "edema": label == EDEMA}
    # Edema is densest next to the core and thins out towards its border.
    depth = np.clip((d - r_core) / np.maximum(r_ed - r_core, 1e-3), 0.0, 1.0)
    strength = (1.0 - 0.5 * depth**2).astype(np.float32)
    return TumourMaps(box, label, tissues, strength, texture_field.on_grid(*axes))
