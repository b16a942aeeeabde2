"""``mmdis predict``: segment one patient from whichever modality files exist.

Any non-empty subset of FLAIR, T1, T1c and T2 goes in; a label NIfTI comes out on the grid and affine of
the inputs, in the label numbering of a dataset convention (BraTS 2018-2021 by default: 1 NCR/NET,
2 edema, 4 enhancing). The case is preprocessed as in training (crop to the brain, resample to the run's
spacing, z-score in the brain), segmented inside the brain mask with sliding windows with exactly the
given modalities (:math:`\\delta_i = 0` for the others), and the prediction is pasted back ("un-cropped").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mmdis.conventions import MODALITIES, from_canonical, get_convention
from mmdis.data.io import RawCase, check_same_geometry, informative_images, load_nifti, save_nifti
from mmdis.data.preprocess import (
    PreprocessedCase,
    brain_mask_from_images,
    preprocess_case,
    restore_prediction,
)
from mmdis.evaluation.evaluate import load_run
from mmdis.evaluation.guards import run_state, warn_unfinished
from mmdis.inference import SubsetPrediction, predict_subsets
from mmdis.profiles import get_profile
from mmdis.runtime.device import resolve_amp, resolve_device
from mmdis.runtime.files import sweep_temporaries


def run_spacing(run_dir: str | Path) -> float | None:
    """The isotropic spacing (mm) of the cache a run was trained on, from ``run_dir/data.json``
    (``None``: the data were not resampled). A run without ``data.json`` (a shipped book model) was
    trained at its profile's spacing, which its ``config.json`` names."""
    run_dir = Path(run_dir)
    path = run_dir / "data.json"
    if path.is_file():
        return json.loads(path.read_text()).get("preprocessing", {}).get("spacing")
    config = run_dir / "config.json"
    if not config.is_file():
        return None
    return get_profile(json.loads(config.read_text())["profile"]).spacing


def segment(model, config, case: PreprocessedCase, device, subsets=None,
            progress: bool = False) -> SubsetPrediction:
    """Sliding-window segmentation of a preprocessed case with the run's profile's window, overlap and
    blend and the run's precision; ``subsets`` as :func:`~mmdis.inference.predict_subsets` takes them
    (``None``: every subset the case can form)."""
    profile = get_profile(config.profile)
    roi, overlap = profile.eval_window
    return predict_subsets(model, case.image, case.available, subsets=subsets, roi_size=roi, overlap=overlap,
                           with_recon=False, mode=profile.eval_blend, device=device, progress=progress,
                           amp_dtype=resolve_amp(config.amp, device, config.bottom_depth)[0])


class InputGrid:
    """Puts predicted labels back onto a case's own grid, and inside its brain where the run's profile
    masks predictions (judged on that grid: resampling blurs the mask's edge)."""

    def __init__(self, raw: RawCase, config) -> None:
        self.brain = None
        if get_profile(config.profile).eval_mask:
            self.brain = raw.brain_mask
            if self.brain is None:
                self.brain = brain_mask_from_images(raw.images, raw.case_id)

    def labels(self, labels: np.ndarray, case: PreprocessedCase) -> np.ndarray:
        """Canonical labels of the preprocessed grid ``(D, H, W)`` -> canonical labels ``(X, Y, Z)``."""
        out = restore_prediction(labels, case.crop)
        if self.brain is not None:
            out[~self.brain] = 0
        return out


def predict_files(
    run_dir: str | Path,
    inputs: Mapping[str, str | Path],
    output: str | Path,
    convention: str = "brats2021",
    mask: str | Path | None = None,
    zscored: bool = False,
    device: str = "auto",
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Segment one case and write the labels to ``output``.

    Args:
        run_dir: a training run (``config.json``, ``last.pt``; ``data.json`` gives its spacing).
        inputs: modality (``flair``, ``t1``, ``t1ce``, ``t2``) -> NIfTI file; at least one.
        output: the label file to write (``.nii.gz``), atomically.
        convention: label numbering of the output (``brats2021``, ``brats2023``, ``msd``, ``brats2015``).
        mask: a brain-mask NIfTI; by default the voxels non-zero in any input (skull-stripped data).
        zscored: the inputs are already z-scored within the mask (the authors' preprocessed layout).
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: a progress bar over sliding windows.
        overwrite: replace an existing ``output`` (refused otherwise).

    An input that is all zeros or constant inside the brain is left out with a warning (it carries no
    image: :func:`~mmdis.data.io.informative_images`), and an unfinished run is used with a warning. The
    output's NIfTI header (``descrip``) names the method, epoch and step of the weights.

    Returns:
        ``output``, the modalities used, the voxel count of each output label and ``run_state`` (epoch,
        step, planned epochs, finished).

    Raises:
        ValueError: no input, an unknown modality, an unknown convention; :class:`~mmdis.data.io.CaseError`
            subclasses for missing, corrupt or mismatched files, or a non-zero constant background (input
            z-scored already: give ``mask`` and ``zscored``). Nothing is written then.
        FileExistsError: ``output`` exists and ``overwrite`` is False.
    """
    unknown = sorted(set(inputs) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modality {unknown}; expected some of {list(MODALITIES)}")
    if not inputs:
        raise ValueError("give at least one modality file (--flair, --t1, --t1ce or --t2)")
    get_convention(convention)
    output = Path(output)
    if not output.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"output {output} must end in .nii or .nii.gz")
    if output.exists() and not overwrite:
        raise FileExistsError(f"output {output} exists; pass --overwrite to replace it")
    sweep_temporaries(output.parent, output.name)  # what a killed earlier predict left of this output
    case_id = output.name.split(".")[0]
    images, affines, sources = {}, {}, {}
    for modality in MODALITIES:
        if modality in inputs:
            data, affine = load_nifti(inputs[modality], case_id, modality)
            if data.ndim != 3:
                raise ValueError(f"{inputs[modality]}: expected a 3-D volume, got shape {data.shape}")
            images[modality], affines[modality], sources[modality] = data, affine, str(inputs[modality])
    brain = None
    if mask is not None:
        mask_data, affines["brain_mask"] = load_nifti(mask, case_id, "brain mask")
        sources["brain_mask"] = str(mask)
        brain = mask_data > 0
    shapes = {k: v.shape for k, v in images.items()}
    if brain is not None:
        shapes["brain_mask"] = brain.shape
    check_same_geometry(shapes, affines, case_id, sources)
    if zscored and brain is None:
        raise ValueError("zscored inputs need their brain mask (--mask)")
    images = informative_images(images, sources, case_id, allow_missing=True)
    raw = RawCase(case_id=case_id, layout="files", images=images, label=None,
                  affine=next(iter(affines.values())), label_convention=convention, brain_mask=brain,
                  zscored=zscored, sources=sources)

    dev = resolve_device(device)
    model, config, meta = load_run(run_dir, dev)
    state = run_state(config, meta)
    warn_unfinished(state, run_dir)
    case = preprocess_case(raw, target_spacing=run_spacing(run_dir))
    available = tuple(bool(a) for a in case.available)
    pred = segment(model, config, case, dev, subsets=[available], progress=progress)
    labels = InputGrid(raw, config).labels(pred.labels[0], case)
    out = from_canonical(labels, convention).astype(np.uint8)
    output.parent.mkdir(parents=True, exist_ok=True)
    note = f"mmdis {config.method} epoch {state['epoch']}/{state['epochs']} step {state['step']}"
    save_nifti(out, raw.affine, output, dtype=np.uint8, description=note)
    values, counts = np.unique(out, return_counts=True)
    return {"output": str(output), "modalities": [m for m in MODALITIES if m in images],
            "voxels": {int(v): int(c) for v, c in zip(values, counts)}, "run_state": state}
