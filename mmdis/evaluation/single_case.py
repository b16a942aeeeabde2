"""One labelled case, read from its own files, segmented from every modality subset it can form and scored
on its own grid: how the book applies the phantom-trained models to a real BraTS case.

The case is preprocessed once as ``mmdis predict`` does (crop to the brain, resample to the run's
training spacing, z-score in the brain); :func:`~mmdis.inference.predict_subsets` runs each modality's
encoders once per window for all subsets together; each subset's labels are pasted back onto the case's
grid (:func:`~mmdis.data.preprocess.restore_prediction`) and scored there against the reference labels
as read, at the file's voxel spacing. So the scores are those of the 240 x 240 x 155 volume at 1 mm for a
BraTS case, whatever grid the network ran on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmdis.conventions import subset_name
from mmdis.data.layouts import discover_cases, read_case
from mmdis.data.preprocess import PreprocessedCase, preprocess_case
from mmdis.evaluation.evaluate import load_run
from mmdis.evaluation.predict import InputGrid, run_spacing, segment
from mmdis.evaluation.tidy import RESULT_COLUMNS, metric_rows
from mmdis.inference import SubsetPrediction
from mmdis.metrics import MetricConfig, case_metrics
from mmdis.runtime.device import resolve_device


@dataclass
class CaseScores:
    """What :func:`score_case` returns.

    Attributes:
        rows: tidy rows (:data:`~mmdis.evaluation.tidy.RESULT_COLUMNS`), one per subset, region and metric.
        case: the case as the network saw it (cropped, resampled, z-scored; its label resampled too).
        prediction: the labels of every subset on that grid, ``uint8 (S, D, H, W)``, for figures.
        spacing: the grid the network ran on, in mm (``None``: the case's own grid).
        shape: the case's own grid, on which the rows were scored.
    """

    rows: pd.DataFrame
    case: PreprocessedCase
    prediction: SubsetPrediction
    spacing: float | None
    shape: tuple[int, int, int]


def score_case(run_dir: str | Path, case_dir: str | Path, metrics: MetricConfig | None = None,
               device: str = "auto", method: str | None = None, spacing: float | None | str = "run",
               progress: bool = False) -> CaseScores:
    """Segment the first case of a dataset folder from every subset it can form; score each on its grid.

    Args:
        run_dir: a trained run or a materialised book model (:func:`~mmdis.training.export.materialise`).
        case_dir: a dataset folder in any layout :func:`~mmdis.data.layouts.discover_cases` reads; its
            first case must be labelled.
        metrics: how segmentations are scored (default :class:`~mmdis.metrics.MetricConfig`).
        device: ``auto``, ``cpu`` or ``cuda``.
        method: the ``method`` column (default: the run's method).
        spacing: where the network runs: ``"run"`` is the spacing the run was trained at (its
            ``data.json``, else its profile's), a number is an isotropic spacing in mm, ``None`` the
            case's own grid.
        progress: a progress bar over sliding windows.

    Raises:
        ValueError: if the case has no label.
    """
    raw = read_case(discover_cases(case_dir)[0], allow_missing=True)
    if raw.label is None:
        raise ValueError(f"case {raw.case_id} of {case_dir} has no reference segmentation to score against")
    dev = resolve_device(device)
    model, config, _ = load_run(run_dir, dev)
    if spacing == "run":
        spacing = run_spacing(run_dir)  # its data.json, else (a shipped model) its profile's
    case = preprocess_case(raw, target_spacing=spacing)
    pred = segment(model, config, case, dev, progress=progress)
    grid = InputGrid(raw, config)
    rows: list[dict] = []
    for s, subset in enumerate(pred.subsets):
        scores = case_metrics(grid.labels(pred.labels[s], case), raw.label, raw.spacing, metrics)
        rows.extend(metric_rows(scores, method or config.method, raw.case_id, subset_name(subset)))
    return CaseScores(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)), case, pred,
                      None if spacing is None else float(spacing), tuple(int(n) for n in raw.shape))

