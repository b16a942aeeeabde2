"""The healthy anatomy under every phantom: the MNI152 2009 template shipped inside ``nilearn``.

``nilearn`` carries the 1 mm ICBM152 2009 symmetric template (skull-stripped T1) and its grey- and
white-matter probability maps in its wheel; :func:`mni_1mm` reads them with
``nilearn.datasets.load_mni152_*`` (which never downloads at ``resolution=1``). From them:

- brain mask :math:`B = [T_1 > 0]` (the template is skull-stripped, zero outside the brain);
- grey and white matter :math:`p_{GM}, p_{WM}`, set to zero outside :math:`B`;
- CSF :math:`p_{CSF} = \\operatorname{clip}(B - p_{GM} - p_{WM}, 0, 1)` (ventricles, sulci, cisterns).

:func:`anatomy` resamples them to the requested spacing on a grid placed like the MNI grid (same origin,
voxel ``i`` at ``i * spacing`` mm) and crops them to the brain plus a margin, so per-case work skips the
empty corners of the box. Both are cached per process: generating many cases pays once.

Coordinates: every position in the phantom code is in *template millimetres*, ``p = index * spacing``
(the 1 mm template's voxel index). World (MNI) coordinates are ``p + origin``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Margin (mm) kept around the brain when cropping: room for the deformation and the mass effect.
CROP_MARGIN_MM = 12.0
#: Spacing (mm) of the fixed grid on which tumour centres are drawn, whatever the output spacing.
PLACEMENT_SPACING_MM = 4.0


@dataclass(frozen=True)
class Anatomy:
    """The template resampled to one spacing and cropped to the brain.

    Attributes:
        spacing: voxel size (mm).
        shape: ``(X, Y, Z)`` of the full output grid (the MNI box at this spacing).
        affine: ``(4, 4)`` voxel-to-world matrix of the full grid.
        offset: index of the crop's first voxel in the full grid.
        gm, wm, brain: ``float32 (x, y, z)`` crops: grey matter, white matter, brain fraction in [0, 1].
    """

    spacing: float
    shape: tuple[int, int, int]
    affine: np.ndarray
    offset: tuple[int, int, int]
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray

    @property
    def crop(self) -> tuple[slice, slice, slice]:
        """Slices of the crop inside the full grid."""
        return tuple(slice(o, o + n) for o, n in zip(self.offset, self.gm.shape))  # type: ignore


@dataclass(frozen=True)
class Placement:
    """Where a tumour centre may go, on a fixed 4 mm grid so that it does not depend on the spacing.

    Attributes:
        centres_mm: ``(N, 3)`` candidate centres in template mm: deep white matter of the cerebrum.
        depth_mm: ``(N,)`` distance of each candidate to the outside of the brain.
        midline_mm: template-mm x of the mid-sagittal plane (world x = 0).
    """

    centres_mm: np.ndarray
    depth_mm: np.ndarray
    midline_mm: float


@functools.lru_cache(maxsize=1)
def mni_1mm() -> dict[str, np.ndarray]:
    """The 1 mm template maps: ``brain``, ``gm``, ``wm`` (``float32 (197, 233, 189)``) and ``affine``.

    Read from the files inside the ``nilearn`` wheel; nothing is downloaded.
    """
    # nilearn's import is slow (~2 s), so it happens here, once, and only when a phantom is made.
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    brain = (np.asarray(t1.get_fdata(dtype=np.float32)) > 0).astype(np.float32)
    # The probability maps spill a little past the skull-stripped mask; the mask wins.
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32) * brain
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32) * brain
    return {"brain": brain, "gm": np.clip(gm, 0, 1), "wm": np.clip(wm, 0, 1),
            "affine": np.asarray(t1.affine, dtype=np.float64)}


def grid_geometry(spacing: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the output grid at ``spacing`` mm: the MNI box, same origin and orientation.

    Args:
        spacing: isotropic voxel size (mm).

    Returns:
        ``((X, Y, Z), affine)``; at 1 mm this is the template's own grid, ``(197, 233, 189)``.
    """
    tpl = mni_1mm()
    shape = tuple(int(np.floor((n - 1) / spacing + 1e-9)) + 1 for n in tpl["brain"].shape)
    affine = tpl["affine"].copy()
    affine[:3, :3] = tpl["affine"][:3, :3] * spacing
    return shape, affine  # type: ignore[return-value]


def _resample(volume: np.ndarray, spacing: float, shape: tuple[int, ...]) -> np.ndarray:
    """Sample a 1 mm volume at ``i * spacing`` (trilinear), low-pass filtered first when coarsening."""
    if spacing == 1.0:
        return volume.copy()
    if spacing > 1.0:
        # A Gaussian whose width grows with the spacing keeps partial volumes instead of aliasing.
        volume = ndimage.gaussian_filter(volume, 0.42 * np.sqrt(spacing**2 - 1.0), mode="constant")
    out = ndimage.affine_transform(volume, np.full(3, spacing), output_shape=shape, order=1,
                                   mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=4)
def anatomy(spacing: float) -> Anatomy:
    """The template at ``spacing`` mm, cropped to the brain plus :data:`CROP_MARGIN_MM` (cached).

    Args:
        spacing: isotropic voxel size (mm), e.g. 1 (the paper's grid) or 2.

    Returns:
        An :class:`Anatomy`; its arrays are shared between calls and must not be modified.
    """
    spacing = float(spacing)
    tpl = mni_1mm()
    shape, affine = grid_geometry(spacing)
    brain = _resample(tpl["brain"], spacing, shape)
    inside = np.argwhere(brain > 0.01)
    margin = int(np.ceil(CROP_MARGIN_MM / spacing))
    lo = np.maximum(inside.min(axis=0) - margin, 0)
    hi = np.minimum(inside.max(axis=0) + margin + 1, shape)
    crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    maps = {"brain": brain[crop]}
    for name in ("gm", "wm"):
        maps[name] = _resample(tpl[name], spacing, shape)[crop]
    for arr in maps.values():
        arr.flags.writeable = False  # shared by every case through the cache
    return Anatomy(spacing, shape, affine, tuple(int(a) for a in lo), maps["gm"], maps["wm"],  # type: ignore
                   maps["brain"])


@functools.lru_cache(maxsize=1)
def placement() -> Placement:
    """Candidate tumour centres: white matter of the cerebral hemispheres, away from the midline.

    Gliomas in BraTS are mostly supratentorial and centred in white matter; candidates need a white
    matter fraction above 0.6, lie 12-55 mm from the midline and above the tentorium (MNI z > -20 mm).
    """
    a = anatomy(PLACEMENT_SPACING_MM)
    s = a.spacing
    idx = np.indices(a.wm.shape).reshape(3, -1).T + np.asarray(a.offset)  # (N, 3) full-grid index
    p = idx * s  # template mm
    world = p + a.affine[:3, 3]
    depth = ndimage.distance_transform_edt(a.brain > 0.5, sampling=s).reshape(-1)
    lateral = np.abs(world[:, 0])
    ok = (a.wm.reshape(-1) > 0.6) & (lateral > 12) & (lateral < 55) & (world[:, 2] > -20) & (depth > 8)
    return Placement(p[ok].astype(np.float64), depth[ok].astype(np.float64), float(-a.affine[0, 3]))
