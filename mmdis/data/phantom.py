"""The embedded default data: BraTS-like phantoms on the real MNI152 anatomy (no download).

A case is made in four steps, all seeded by ``(seed, case index)``:

1. **Anatomy** (:mod:`~.phantom_anatomy`): the MNI152 2009 grey/white-matter/CSF maps that ship with
   ``nilearn``, resampled to the requested spacing (cached).
2. **Tumour** (:mod:`~.phantom_tumour`): a lobulated glioma in the white matter of either hemisphere,
   with a necrotic centre, an enhancing rim (sometimes with non-enhancing gaps) and edema that spreads
   along white matter; sizes vary from small to large.
3. **Deformation**: the tissue maps are resampled at
   :math:`\\mathbf{x} + \\mathbf{u}(\\mathbf{x}) - \\mathbf{m}(\\mathbf{x})`, a Gaussian-smoothed random
   displacement :math:`\\mathbf{u}` of a few mm and the tumour's mass effect :math:`\\mathbf{m}`.
4. **Appearance**: per sequence :math:`m`, partial-volume mixing of tissue means,

   .. math::

       I_m = s_m\\, b_m(\\mathbf{x}) \\Big[(1 - \\textstyle\\sum_t w_t)
             \\frac{\\sum_k \\mu_{m,k}\\, p_k}{\\sum_k p_k}
             + \\sum_t w_t\\, \\mu_{m,t}\\,(1 + h_t\\, \\tau(\\mathbf{x}))\\Big] + \\text{Rician noise},

   with healthy tissues :math:`k \\in` {CSF, GM, WM} of fractions :math:`p_k`, tumour tissues
   :math:`t` of slightly smoothed masks :math:`w_t` (edema fading towards its border), a texture
   :math:`\\tau`, a smooth bias field :math:`b_m = e^{\\beta f_m}` and a random scale :math:`s_m`.
   Zero outside the brain, as BraTS is skull-stripped.

The tissue means (:data:`CONTRAST`) follow the clinical appearance:

=========  ========================================================================
sequence   what it shows
=========  ========================================================================
FLAIR      edema bright, CSF suppressed (dark), necrosis intermediate
T1         tumour mildly dark, no enhancement, CSF dark, white matter brighter than grey
T1c        as T1, but the enhancing rim bright and the necrosis dark
T2         edema, necrosis and CSF bright
=========  ========================================================================

so FLAIR and T2 carry the whole tumour, T1c the enhancing part, and no sequence carries everything.
:func:`write_phantom` stores cases as NIfTI in the BraTS 2021 layout and labels, read back by the
same code as real data.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from mmdis.conventions import CORE, EDEMA, ENHANCING, MODALITIES, from_canonical
from mmdis.data.io import save_nifti
from mmdis.data.phantom_anatomy import anatomy, mni_1mm, placement
from mmdis.data.phantom_fields import RandomField, grid_axes
from mmdis.data.phantom_tumour import TUMOUR_TISSUES, draw_tumour, rasterise
from mmdis.runtime.files import atomic_path, save_json

#: Bumped whenever a change makes the same config give different cases; stored in ``phantom.json``.
GENERATOR_VERSION = 2
#: Mean intensity of each tissue per sequence, white matter = 1 (before bias, scale and noise).
CONTRAST: dict[str, dict[str, float]] = {
    #        healthy: csf, gm, wm               tumour: necrosis, non-enhancing, enhancing, edema
    "flair": dict(csf=0.22, gm=1.15, wm=1.0, necrosis=1.05, nonenhancing=1.70, enhancing=1.50, edema=1.95),
    "t1": dict(csf=0.30, gm=0.72, wm=1.0, necrosis=0.45, nonenhancing=0.64, enhancing=0.72, edema=0.78),
    "t1ce": dict(csf=0.30, gm=0.75, wm=1.0, necrosis=0.40, nonenhancing=0.66, enhancing=1.80, edema=0.80),
    "t2": dict(csf=2.20, gm=1.35, wm=1.0, necrosis=2.10, nonenhancing=1.70, enhancing=1.45, edema=1.90),
}
#: Amplitude :math:`h_t` of the texture in each tumour tissue (enhancing tumour is the most patchy).
TEXTURE = {"necrosis": 0.10, "nonenhancing": 0.10, "enhancing": 0.15, "edema": 0.08}
_MAX_ATTEMPTS = 20
_MIN_VOXELS = 4  # per subregion, so that every case has all three


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of the phantom data set.

    Attributes:
        cases: number of cases (1-1000).
        seed: base seed (>= 0); case ``k`` depends only on ``(seed, k)`` and the parameters below.
        spacing: isotropic voxel size in mm, 0.5-4 (1 = the paper's grid; 2 for CPU training).
        deformation_mm: standard deviation of the smooth random displacement per axis, 0-6 mm.
        noise: Rician noise level relative to the white-matter intensity, 0-0.3.
        bias: strength :math:`\\beta` of the multiplicative bias field (log scale), 0-0.5.

    Raises:
        ValueError: naming the parameter that is out of range.
    """

    cases: int = 24
    seed: int = 0
    spacing: float = 2.0
    deformation_mm: float = 2.0
    noise: float = 0.03
    bias: float = 0.15

    def __post_init__(self):
        for name in ("cases", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        checks = {"cases": (1, 1000), "seed": (0, 2**63 - 1), "spacing": (0.5, 4.0),
                  "deformation_mm": (0.0, 6.0), "noise": (0.0, 0.3), "bias": (0.0, 0.5)}
        for name, (lo, hi) in checks.items():
            value = getattr(self, name)
            if not np.isfinite(value) or not lo <= value <= hi:
                raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value!r}")


@dataclass
class PhantomCase:
    """One generated case.

    Attributes:
        case_id: ``PHANTOM_000`` style identifier.
        images: modality (:data:`~mmdis.conventions.MODALITIES`) -> ``float32 (X, Y, Z)`` volume with
            integer values (exactly what is written as ``int16``), zero outside the brain.
        label: canonical labels ``uint8 (X, Y, Z)``: 1 necrotic/non-enhancing core, 2 edema, 3 enhancing.
        affine: ``(4, 4)`` voxel-to-world matrix (MNI space, mm).
        tissues: the deformed healthy-tissue fractions the images were rendered from, ``"csf"``,
            ``"gm"``, ``"wm"`` -> ``float32 (X, Y, Z)`` (ground truth for checks and figures; not written).
    """

    case_id: str
    images: dict[str, np.ndarray]
    label: np.ndarray
    affine: np.ndarray
    tissues: dict[str, np.ndarray] = field(default_factory=dict)


def case_id(index: int) -> str:
    """Identifier of case ``index``: ``PHANTOM_000``, ``PHANTOM_001``, ..."""
    return f"PHANTOM_{index:03d}"


def make_case(index: int, config: PhantomConfig) -> PhantomCase:
    """Generate case ``index`` of the phantom data set described by ``config``.

    Args:
        index: case number, ``0 <= index``; the case does not depend on ``config.cases``.
        config: the data set's parameters.

    Returns:
        A :class:`PhantomCase` on the full MNI box at ``config.spacing`` whose label holds all three
        tumour subregions.

    Raises:
        ValueError: ``index`` is negative.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    anat = anatomy(config.spacing)
    where = placement()
    rng = np.random.default_rng([config.seed, index])
    box_mm = (np.zeros(3), np.asarray(mni_1mm()["brain"].shape, float) - 1)  # the template, in mm
    s, crop_shape = config.spacing, anat.gm.shape
    axes = grid_axes(crop_shape, s, anat.offset)
    for _ in range(_MAX_ATTEMPTS):
        tumour = draw_tumour(rng, s, where)
        tissue = _deformed_anatomy(rng, config, anat, tumour, axes, box_mm)
        brain = tissue["brain"] > 0.5
        maps = rasterise(tumour, rng, s, anat.offset, tissue["wm"], tissue["csf"], brain)
        counts = np.bincount(maps.label.ravel(), minlength=4)
        if min(counts[CORE], counts[EDEMA], counts[ENHANCING]) >= _MIN_VOXELS:
            break
    else:  # pragma: no cover - the radii are chosen so that this does not happen
        raise RuntimeError(f"phantom case {index}: no tumour with all subregions in {_MAX_ATTEMPTS} tries")
    images = _render(rng, config, tissue, brain, maps, box_mm, axes)

    # Paste the crop back into the full MNI box.
    def full(crop: np.ndarray, dtype=np.float32) -> np.ndarray:
        vol = np.zeros(anat.shape, dtype)
        vol[anat.crop] = crop
        return vol

    label = np.zeros(crop_shape, np.uint8)
    label[maps.box] = maps.label
    tissues = {k: full(np.where(brain, tissue[k], 0.0)) for k in ("csf", "gm", "wm")}
    return PhantomCase(case_id(index), {m: full(images[m]) for m in MODALITIES}, full(label, np.uint8),
                       anat.affine.copy(), tissues)


def _deformed_anatomy(rng, config: PhantomConfig, anat, tumour, axes, box_mm) -> dict[str, np.ndarray]:
    """Tissue fractions ``gm, wm, csf, brain`` (``float32`` on the crop) after deformation and mass effect.

    The healthy maps are sampled at :math:`\\mathbf{x} + \\mathbf{u}(\\mathbf{x}) - \\mathbf{m}(\\mathbf{x})`:
    :math:`\\mathbf{u}` is a Gaussian-smoothed random displacement (``config.deformation_mm`` per axis,
    correlation ~20 mm) and :math:`\\mathbf{m}` the tumour's mass effect (:meth:`Tumour.mass_effect`).
    """
    s = config.spacing
    warp = [RandomField(rng, 20.0, *box_mm).on_grid(*axes) for _ in range(3)]  # 3 x (x, y, z)
    rel = [(a - c).astype(np.float32).reshape([-1 if i == j else 1 for j in range(3)])
           for i, (a, c) in enumerate(zip(axes, tumour.centre))]
    rel = np.stack(np.broadcast_arrays(*rel))  # (3, x, y, z) mm from the tumour centre
    src = rel + np.float32(config.deformation_mm) * np.stack(warp) - tumour.mass_effect(rel)
    del rel, warp
    # back to absolute mm, then to voxel indices of the crop
    src += (tumour.centre - s * np.asarray(anat.offset)).astype(np.float32)[:, None, None, None]
    src /= np.float32(s)
    tissue = {k: ndimage.map_coordinates(getattr(anat, k), src, order=1, mode="constant")
              for k in ("gm", "wm", "brain")}
    # CSF is what the brain holds besides grey and white matter (ventricles, sulci, cisterns).
    tissue["csf"] = np.clip(tissue["brain"] - tissue["gm"] - tissue["wm"], 0.0, 1.0)
    return tissue


def _render(rng, config: PhantomConfig, tissue: dict[str, np.ndarray], brain: np.ndarray, maps,
            box_mm, axes) -> dict[str, np.ndarray]:
    """The four sequences on the crop grid, ``float32 (x, y, z)`` with integer values, 0 outside ``brain``."""
    # Tumour tissue weights w_t, as partial volumes at borders: the whole tumour's outer border is the
    # most diffuse (edema fades into brain), inner borders are blurred by about a voxel. Inside the
    # blurred whole tumour W the core tissues take their blurred share and edema the rest, so that
    # sum_t w_t <= W <= 1 everywhere and no halo of healthy tissue shows at the core's border.
    fine, wide = (max(0.4, mm / config.spacing) for mm in (0.8, 1.6))  # voxels
    whole = ndimage.gaussian_filter((maps.label > 0).astype(np.float32), wide, mode="constant")
    weights = {t: ndimage.gaussian_filter(maps.tissues[t].astype(np.float32), fine, mode="constant")
               for t in TUMOUR_TISSUES if t != "edema"}
    core_share = np.clip(sum(weights.values()), 0.0, 1.0)
    weights = {t: w * whole for t, w in weights.items()}
    weights["edema"] = whole * (1.0 - core_share) * maps.edema_strength
    total = sum(weights.values())
    healthy_w = np.clip(1.0 - total, 0.0, 1.0)
    fractions = sum(tissue[k] for k in ("csf", "gm", "wm")) + np.float32(1e-6)
    n_inside = int(brain.sum())

    images = {}
    for m in MODALITIES:
        mu = CONTRAST[m]
        img = (mu["csf"] * tissue["csf"] + mu["gm"] * tissue["gm"] + mu["wm"] * tissue["wm"]) / fractions
        # Each case's tumour differs a little in contrast (+-6 %), as patients do.
        jitter = np.exp(rng.normal(0.0, 0.06, size=len(TUMOUR_TISSUES)))
        lesion = sum(mu[t] * j * weights[t] * (1 + TEXTURE[t] * maps.texture)
                     for t, j in zip(TUMOUR_TISSUES, jitter))
        box_img = img[maps.box]
        box_img *= healthy_w
        box_img += lesion
        img *= np.exp(config.bias * RandomField(rng, 50.0, *box_mm).on_grid(*axes))
        scale = np.exp(rng.uniform(np.log(300.0), np.log(1200.0)))
        # Rician noise: the magnitude of a complex signal with Gaussian noise on both channels.
        sd = config.noise
        re_part = img[brain] + rng.normal(0.0, sd, n_inside).astype(np.float32)
        im_part = rng.normal(0.0, sd, n_inside).astype(np.float32)
        out = np.zeros_like(img)
        # At least 1 inside the brain, so that "non-zero" is exactly the brain mask once stored as int16.
        out[brain] = np.maximum(np.rint(np.sqrt(re_part**2 + im_part**2) * scale), 1.0)
        images[m] = out
    return images


def write_phantom(out_dir: str | Path, config: PhantomConfig | None = None, progress: bool = True,
                  overwrite: bool = False) -> list[Path]:
    """Write ``config.cases`` phantom cases in the BraTS 2021 layout; returns the case folders.

    Layout: ``OUT/PHANTOM_000/PHANTOM_000_{flair,t1,t1ce,t2,seg}.nii.gz``; images ``int16``, labels
    ``uint8`` with the BraTS 2021 values 0, 1, 2, 4, all with the MNI-placed affine of the spacing; plus
    ``OUT/phantom.json`` describing the config. Each case folder is written into a temporary folder next
    to it and renamed, so an interrupted run leaves no half-written case. Cases already there are kept
    (a second run only adds what is missing).

    Args:
        out_dir: destination folder (created).
        config: parameters; default :class:`PhantomConfig()`.
        progress: show a progress bar.
        overwrite: regenerate every case, and remove phantom cases beyond ``config.cases``.

    Raises:
        ValueError: ``out_dir`` holds phantom cases made with other parameters (and not ``overwrite``).
    """
    config = config or PhantomConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info_path = out / "phantom.json"
    info = {**asdict(config), "generator_version": GENERATOR_VERSION, "layout": "brats2021",
            "modalities": list(MODALITIES),
            "source": "ICBM152 2009a symmetric template and GM/WM maps shipped with nilearn"}
    if info_path.is_file() and not overwrite:
        old = json.loads(info_path.read_text())
        # Everything that changes a case; the number of cases may grow or shrink freely.
        keys = [k for k in (*asdict(config), "generator_version") if k != "cases"]
        differ = [f"{k}={old.get(k)!r} there, {info[k]!r} asked" for k in keys if old.get(k) != info[k]]
        if differ:
            raise ValueError(
                f"{out} holds phantom cases made with other parameters ({'; '.join(differ)}); "
                "choose another folder or pass overwrite=True (--overwrite)"
            )
        info["cases"] = max(config.cases, int(old.get("cases", 0)))
    if overwrite:
        for stale in out.iterdir():
            m = re.fullmatch(r"PHANTOM_(\d{3,})", stale.name)
            if m and stale.is_dir() and int(m.group(1)) >= config.cases:
                shutil.rmtree(stale)
    # Written first: a folder with any phantom case always says how it was made.
    save_json(info, info_path)

    paths = []
    for k in tqdm(range(config.cases), desc="phantom", unit="case", disable=not progress):
        final = out / case_id(k)
        paths.append(final)
        if final.is_dir() and not overwrite:
            continue
        case = make_case(k, config)
        with atomic_path(final) as tmp:
            tmp.mkdir()
            for m in MODALITIES:
                save_nifti(case.images[m], case.affine, tmp / f"{case.case_id}_{m}.nii.gz", dtype=np.int16)
            seg = from_canonical(case.label, "brats2021")
            save_nifti(seg, case.affine, tmp / f"{case.case_id}_seg.nii.gz", dtype=np.uint8)
    return paths
