"""PyTorch datasets over a prepared cache: random training patches and whole evaluation volumes.

Training samples 80^3 patches (the paper's size; configurable). With ``sampling="uniform"`` (the paper
and the authors' code) a patch is cropped at a uniformly random position of the volume with no
augmentation; with ``sampling="tumour"`` (ours, the default of the CPU profiles) it is centred on a tumour
voxel with probability ``fg_fraction`` and on a random brain voxel otherwise. The ``flip`` and intensity
augmentations apply whenever they are set, whatever the sampling (the ``paper`` profile turns them off).
Sampling is a pure function of ``(seed, epoch, index)``, so a run is
reproducible whatever the number of loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmdis.data.case_store import load_cached_case, manifest_checksums

_FG_SAMPLE = 20000  # foreground voxels remembered per case; plenty for sampling centres


#: How patch positions are drawn (:attr:`PatchConfig.sampling`).
SAMPLINGS = ("uniform", "tumour")


@dataclass(frozen=True)
class PatchConfig:
    """How training patches are drawn.

    Attributes:
        patch_size: ``(D, H, W)`` of a patch (paper: 80^3).
        sampling: ``uniform``: every position of the patch inside the volume equally likely (the
            paper's and the authors' random crop); ``tumour``: centred on a tumour voxel with
            probability ``fg_fraction``, on a random brain voxel otherwise.
        fg_fraction: probability that a patch is centred on a tumour voxel (``tumour`` sampling only).
        flip: random flips along each axis.
        intensity_scale: a channel is multiplied by ``U(1 - s, 1 + s)`` inside the brain.
        intensity_shift: and shifted by ``U(-t, t)`` (z-score units).
    """

    patch_size: tuple[int, int, int] = (80, 80, 80)
    sampling: str = "tumour"
    fg_fraction: float = 0.5
    flip: bool = True
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1

    def __post_init__(self):
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive ints, got {self.patch_size}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"patch.sampling must be one of {list(SAMPLINGS)}, got {self.sampling!r}")
        if not 0.0 <= self.fg_fraction <= 1.0:
            raise ValueError(f"fg_fraction must lie in [0, 1], got {self.fg_fraction}")
        if self.intensity_scale < 0 or self.intensity_shift < 0:
            raise ValueError("intensity_scale and intensity_shift must be >= 0")


class PatchDataset(Dataset):
    """Random patches from cached cases, for training.

    Each item is a dict with ``image`` ``float32 (M, D, H, W)``, ``label`` ``int64 (D, H, W)``,
    ``mask`` ``bool (D, H, W)``, ``available`` ``bool (M,)`` and ``case_id``. A volume smaller than
    the patch is zero-padded (label 0, mask False).

    Args:
        cache_dir: a folder written by :func:`mmdis.data.cache.prepare`.
        case_ids: the cases to sample from (all must be labelled).
        samples_per_epoch: the dataset length; item ``i`` uses case ``i % len(case_ids)``.
        config: :class:`PatchConfig`.
        seed: base seed; call :meth:`set_epoch` to draw new patches each epoch.
    """

    def __init__(self, cache_dir, case_ids, samples_per_epoch: int | None = None,
                 config: PatchConfig | None = None, seed: int = 0):
        if not case_ids:
            raise ValueError("PatchDataset: case_ids is empty")
        self.cache_dir = Path(cache_dir)
        self.case_ids = list(case_ids)
        self.samples_per_epoch = samples_per_epoch or len(self.case_ids)
        self.config = config or PatchConfig()
        self.seed = seed
        self.epoch = 0
        self._cases: dict = {}
        self._fg: dict = {}
        self._checksums = manifest_checksums(self.cache_dir)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _case(self, case_id):
        if case_id not in self._cases:
            case = load_cached_case(self.cache_dir, case_id, mmap=True,
                                    checksum=self._checksums.get(case_id))
            if case.label is None:
                raise ValueError(f"PatchDataset: case {case_id} has no label; it cannot be used to train")
            self._cases[case_id] = case
            fg = np.argwhere(np.asarray(case.label) > 0)
            rng = np.random.default_rng(0)
            if len(fg) > _FG_SAMPLE:
                fg = fg[rng.choice(len(fg), _FG_SAMPLE, replace=False)]
            brain = np.argwhere(np.asarray(case.mask))
            if len(brain) > _FG_SAMPLE:
                brain = brain[rng.choice(len(brain), _FG_SAMPLE, replace=False)]
            self._fg[case_id] = (fg, brain)
        return self._cases[case_id], self._fg[case_id]

    def __getitem__(self, index: int) -> dict:
        case_id = self.case_ids[index % len(self.case_ids)]
        case, (fg, brain) = self._case(case_id)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        cfg = self.config
        shape = case.mask.shape
        if cfg.sampling == "uniform":
            # Every start that keeps the patch inside the volume, equally likely (a volume smaller than
            # the patch sits in its middle).
            start = [int(rng.integers(n - p + 1)) if n >= p else -((p - n) // 2)
                     for p, n in zip(cfg.patch_size, shape)]
        else:
            pool = fg if (len(fg) and rng.random() < cfg.fg_fraction) else brain
            centre = pool[rng.integers(len(pool))] if len(pool) else np.array(shape) // 2
            start = [
                # Keep the patch inside the volume where it fits; otherwise centre the volume in it.
                min(max(int(c) - p // 2, 0), n - p) if n >= p else -((p - n) // 2)
                for c, p, n in zip(centre, cfg.patch_size, shape)
            ]
        image = extract_patch(case.image, start, cfg.patch_size)  # (M, D, H, W)
        label = extract_patch(case.label, start, cfg.patch_size)
        mask = extract_patch(case.mask, start, cfg.patch_size)
        if cfg.flip:
            for axis in range(3):
                if rng.random() < 0.5:
                    image = np.flip(image, axis=axis + 1)
                    label = np.flip(label, axis=axis)
                    mask = np.flip(mask, axis=axis)
        image = np.ascontiguousarray(image, dtype=np.float32)
        if cfg.intensity_scale or cfg.intensity_shift:
            m = image.shape[0]
            scale = rng.uniform(1 - cfg.intensity_scale, 1 + cfg.intensity_scale, m).astype(np.float32)
            shift = rng.uniform(-cfg.intensity_shift, cfg.intensity_shift, m).astype(np.float32)
            present = case.available.astype(np.float32)
            # Only inside the brain and only on present modalities: the background and a missing
            # channel stay exactly zero.
            image = (image * scale[:, None, None, None] + shift[:, None, None, None]) * mask[None]
            image *= present[:, None, None, None]
        return {
            "image": torch.from_numpy(image),
            "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)),
            "available": torch.from_numpy(case.available.copy()),
            "case_id": case_id,
        }


def extract_patch(volume: np.ndarray, start, size) -> np.ndarray:
    """Copy ``volume[..., start:start+size]`` over the last three axes, zero-padding outside."""
    spatial = volume.shape[-3:]
    out = np.zeros((*volume.shape[:-3], *size), dtype=volume.dtype)
    src, dst = [], []
    for s, n, dim in zip(start, size, spatial):
        a, b = max(s, 0), min(s + n, dim)
        if b <= a:  # patch entirely outside this axis
            return out
        src.append(slice(a, b))
        dst.append(slice(a - s, b - s))
    out[(..., *dst)] = volume[(..., *src)]
    return out


class VolumeDataset(Dataset):
    """Whole preprocessed volumes, for evaluation and prediction.

    Items hold ``image`` ``float32 (M, D, H, W)``, ``mask`` ``bool (D, H, W)``, ``available``
    ``bool (M,)``, ``label`` ``int64 (D, H, W)`` when labelled, and ``case_id``.
    """

    def __init__(self, cache_dir, case_ids):
        self.cache_dir = Path(cache_dir)
        self.case_ids = list(case_ids)

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, index: int) -> dict:
        case = load_cached_case(self.cache_dir, self.case_ids[index], mmap=False)
        item = {
            "image": torch.from_numpy(case.image),
            "mask": torch.from_numpy(case.mask),
            "available": torch.from_numpy(case.available),
            "case_id": case.case_id,
        }
        if case.label is not None:
            item["label"] = torch.from_numpy(case.label.astype(np.int64))
        return item
