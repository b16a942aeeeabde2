"""The embedded default data: BraTS-like phantoms on the real MNI152 anatomy.

Each case is a smooth random deformation of the MNI152 2009 template and its grey/white-matter
probability maps (they ship inside the ``nilearn`` wheel, so nothing is downloaded), with a glioma
grown in one hemisphere: a necrotic centre, an enhancing rim and surrounding edema that spreads along
white matter, pushing the tissue around it aside. Four MRI sequences are rendered from tissue
partial volumes with the contrasts a radiologist expects:

=========  ========================================================================
sequence   what it shows
=========  ========================================================================
FLAIR      edema bright, CSF suppressed (dark), necrosis intermediate
T1         tumour mildly dark, no enhancement, white matter brighter than grey
T1c        as T1, but the enhancing rim bright and the necrosis dark
T2         edema, necrosis and CSF bright
=========  ========================================================================

plus a smooth multiplicative bias field, Rician noise and an intensity scale per case and sequence.
So FLAIR/T2 carry the whole tumour, T1c the enhancing part, and no sequence carries everything.
Cases are written as NIfTI in the BraTS 2021 layout and labels, so they go through the same reader as
real data.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from mmdis.conventions import BACKGROUND, CORE, EDEMA, ENHANCING, MODALITIES, from_canonical
from mmdis.data.io import atomic_path, save_json, save_nifti

# Tissue means per sequence (arbitrary units before the per-case scale), columns:
# CSF, grey matter, white matter, edema, necrosis, enhancing tumour.
TISSUES = ("csf", "gm", "wm", "edema", "necrosis", "enhancing")
CONTRAST = {
    "flair": (0.15, 0.75, 0.60, 1.35, 0.85, 1.05),
    "t1": (0.25, 0.60, 0.85, 0.60, 0.35, 0.62),
    "t1ce": (0.25, 0.62, 0.85, 0.62, 0.30, 1.45),
    "t2": (1.50, 0.85, 0.60, 1.25, 1.40, 0.95),
}
_MNI_MIDLINE_MM = 98.0  # template voxel index (1 mm) of the x = 0 plane


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of the phantom data set.

    Attributes:
        cases: number of cases.
        seed: base seed; case ``k`` depends only on ``(seed, k)``.
        spacing: isotropic voxel size in mm (1 = the paper's grid; 2-3 for CPU training).
        deformation_mm: standard deviation of the smooth random deformation.
        noise: Rician noise level relative to white-matter intensity.
        bias: strength of the multiplicative bias field (log scale).
    """

    cases: int = 24
    seed: int = 0
    spacing: float = 2.0
    deformation_mm: float = 2.0
    noise: float = 0.03
    bias: float = 0.12

    def __post_init__(self):
        if int(self.cases) != self.cases or self.cases < 1:
            raise ValueError(f"cases must be a positive integer, got {self.cases}")
        if not 0.5 <= self.spacing <= 4.0:
            raise ValueError(f"spacing must lie in [0.5, 4] mm, got {self.spacing}")
        if self.deformation_mm < 0 or self.noise < 0 or self.bias < 0:
            raise ValueError("deformation_mm, noise and bias must be >= 0")


@dataclass
class PhantomCase:
    """One generated case.

    Attributes:
        case_id: ``PHANTOM_000`` style identifier.
        images: modality -> ``float32 (X, Y, Z)`` volume, zero outside the brain.
        label: canonical labels ``uint8 (X, Y, Z)``.
        affine: voxel-to-world matrix (MNI space, mm).
    """

    case_id: str
    images: dict[str, np.ndarray]
    label: np.ndarray
    affine: np.ndarray


@functools.lru_cache(maxsize=2)
def _template() -> dict[str, np.ndarray]:
    """The 1 mm MNI152 2009 template, grey- and white-matter maps (read once per process)."""
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    brain = (t1.get_fdata(dtype=np.float32) > 0).astype(np.float32)
    csf = np.clip(brain - gm - wm, 0, 1)
    return {"gm": gm, "wm": wm, "csf": csf, "brain": brain, "affine": np.asarray(t1.affine, float)}


def output_grid(spacing: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the phantom grid at ``spacing`` mm (the MNI box, resampled)."""
    tpl = _template()
    shape = tuple(int(np.floor((n - 1) / spacing)) + 1 for n in tpl["brain"].shape)
    affine = tpl["affine"].copy()
    affine[:3, :3] = np.diag([spacing] * 3)
    return shape, affine


def _smooth_field(rng, shape, spacing, scale_mm, n=1):
    """``n`` smooth random fields on ``shape``, unit standard deviation, correlation ~``scale_mm``."""
    coarse = tuple(max(2, int(np.ceil(s * spacing / scale_mm)) + 1) for s in shape)
    fields = []
    for _ in range(n):
        f = ndimage.gaussian_filter(rng.normal(size=coarse), 0.8, mode="nearest")
        f = ndimage.zoom(f, [s / c for s, c in zip(shape, coarse)], order=1, mode="nearest", grid_mode=True)
        f = f[: shape[0], : shape[1], : shape[2]]
        f = ndimage.gaussian_filter(f, 1.0)  # removes the kinks of linear upsampling
        fields.append(((f - f.mean()) / (f.std() + 1e-8)).astype(np.float32))
    return fields if n > 1 else fields[0]


def _tumour_geometry(rng, spacing):
    """Random radii (mm) of edema, core and necrosis, kept resolvable at the grid spacing."""
    r_wt = rng.uniform(18, 40)
    r_tc = r_wt * rng.uniform(0.4, 0.6)
    r_nec = r_tc * rng.uniform(0.45, 0.72)
    r_nec = max(r_nec, 1.3 * spacing)
    r_tc = max(r_tc, r_nec + 1.6 * spacing)
    r_wt = max(r_wt, r_tc + 2.5 * spacing)
    stretch = rng.uniform(0.75, 1.3, size=3)
    return r_wt, r_tc, r_nec, stretch / np.prod(stretch) ** (1 / 3)


def make_case(index: int, config: PhantomConfig) -> PhantomCase:
    """Generate case ``index`` of the phantom data set described by ``config``.

    Returns:
        A :class:`PhantomCase` whose label has every canonical class present.
    """
    tpl = _template()
    s = config.spacing
    shape, affine = output_grid(s)
    for attempt in range(20):
        rng = np.random.default_rng([config.seed, index, attempt])
        case = _try_case(rng, tpl, shape, s, config)
        if case is not None:
            images, label = case
            return PhantomCase(f"PHANTOM_{index:03d}", images, label, affine)
    raise RuntimeError(f"phantom case {index}: could not place a tumour with all subregions")


def _try_case(rng, tpl, shape, s, config):
    grid = np.indices(shape, dtype=np.float32) * s  # (3, X, Y, Z) template coordinates, mm
    # Tumour centre: deep white matter, away from the midline, in a random hemisphere.
    wm0 = ndimage.map_coordinates(tpl["wm"], grid, order=1)
    side = rng.choice([-1.0, 1.0])
    lateral = side * (grid[0] - _MNI_MIDLINE_MM)
    candidates = np.argwhere((wm0 > 0.7) & (lateral > 14) & (lateral < 55))
    if not len(candidates):
        return None
    centre = candidates[rng.integers(len(candidates))].astype(np.float32) * s  # mm
    r_wt, r_tc, r_nec, stretch = _tumour_geometry(rng, s)

    # Source coordinates: a smooth random deformation plus mass effect (tissue near the tumour is
    # pushed outwards, i.e. a voxel there shows tissue that used to sit closer to the centre).
    rel = grid - centre[:, None, None, None]  # (3, X, Y, Z)
    dist = np.sqrt((rel**2).sum(0))
    push = 0.35 * np.exp(-((dist / (1.3 * r_tc)) ** 2))
    warp = [f * config.deformation_mm for f in _smooth_field(rng, shape, s, 24.0, n=3)]
    src = grid - rel * push[None] + np.stack(warp)
    maps = {k: ndimage.map_coordinates(tpl[k], src, order=1) for k in ("gm", "wm", "csf", "brain")}
    brain = maps["brain"] > 0.5

    # Irregular nested compartments: radial distance (anisotropic) modulated by smooth noise.
    d = np.sqrt(((rel / stretch[:, None, None, None]) ** 2).sum(0))
    n_ed, n_tc, n_nec, texture = _smooth_field(rng, shape, s, 14.0, n=4)
    r_edema = d / r_wt * (1 + 0.3 * n_ed) - 0.3 * (maps["wm"] - 0.5)  # spreads along white matter
    r_core = d / r_tc * (1 + 0.25 * n_tc)
    r_necro = d / r_nec * (1 + 0.25 * n_nec)
    label = np.zeros(shape, np.uint8)
    whole = (r_edema < 1) & brain
    parts, n_parts = ndimage.label(whole)
    if n_parts > 1:  # keep one connected tumour, drop islands the noise may create
        whole = parts == 1 + np.argmax(np.bincount(parts.ravel())[1:])
    label[whole] = EDEMA
    core = (r_core < 1) & whole
    label[core] = ENHANCING
    label[core & (r_necro < 1)] = CORE
    counts = np.bincount(label.ravel(), minlength=4)
    if min(counts[CORE], counts[EDEMA], counts[ENHANCING]) < 4:
        return None

    # Soft compartment weights so that tumour borders are blurred like partial volumes.
    sigma = max(1.0 / s, 0.5)  # voxels
    soft = {k: ndimage.gaussian_filter((label == v).astype(np.float32), sigma)
            for k, v in (("edema", EDEMA), ("necrosis", CORE), ("enhancing", ENHANCING))}
    tumour = soft["edema"] + soft["necrosis"] + soft["enhancing"]
    healthy_w = np.clip(1 - tumour, 0, 1)
    tissue_sum = maps["csf"] + maps["gm"] + maps["wm"] + 1e-6

    images = {}
    for m in MODALITIES:
        mean = dict(zip(TISSUES, CONTRAST[m]))
        healthy = (mean["csf"] * maps["csf"] + mean["gm"] * maps["gm"] + mean["wm"] * maps["wm"]) / tissue_sum
        lesion = sum(mean[k] * soft[k] for k in soft) * (1 + 0.08 * texture)
        img = healthy * healthy_w + lesion
        img *= np.exp(config.bias * _smooth_field(rng, shape, s, 60.0))
        sd = config.noise * mean["wm"]
        img = np.sqrt((img + rng.normal(0, sd, shape)) ** 2 + rng.normal(0, sd, shape) ** 2)
        scale = rng.uniform(300, 1500)
        images[m] = np.where(brain, np.maximum(img * scale, 1.0), 0.0).astype(np.float32)
    return images, label


def write_phantom(out_dir: str | Path, config: PhantomConfig | None = None, progress: bool = True,
                  overwrite: bool = False) -> list[Path]:
    """Write ``config.cases`` phantom cases in the BraTS 2021 layout; returns the case folders.

    Layout: ``OUT/PHANTOM_000/PHANTOM_000_{flair,t1,t1ce,t2,seg}.nii.gz`` with BraTS 2021 labels
    (0, 1, 2, 4). Each case folder is written to a temporary folder and renamed, so an interrupted run
    leaves no half-written case; existing cases are kept unless ``overwrite``.
    """
    config = config or PhantomConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = out / "phantom.json"
    if info.is_file() and not overwrite:
        old = json.loads(info.read_text())
        if {k: old.get(k) for k in ("seed", "spacing")} != {"seed": config.seed, "spacing": config.spacing}:
            raise ValueError(
                f"{out} holds phantom cases made with {old}; choose another folder or pass overwrite=True"
            )
    paths = []
    for k in tqdm(range(config.cases), desc="phantom", unit="case", disable=not progress):
        case_id = f"PHANTOM_{k:03d}"
        final = out / case_id
        paths.append(final)
        if final.is_dir() and not overwrite:
            continue
        case = make_case(k, config)
        with atomic_path(final) as tmp:
            tmp.mkdir()
            for m in MODALITIES:
                image = np.rint(case.images[m]).astype(np.int16)
                save_nifti(image, case.affine, tmp / f"{case_id}_{m}.nii.gz")
            seg = from_canonical(case.label, "brats2021")
            save_nifti(seg, case.affine, tmp / f"{case_id}_seg.nii.gz", dtype=np.uint8)
    save_json({**asdict(config), "layout": "brats2021", "source": "MNI152 2009 template (nilearn)"}, info)
    return paths


assert BACKGROUND == 0  # the label volume starts zero-filled
