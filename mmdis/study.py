r"""The training-budget study: what the mechanisms look like after 400, 800, 1600 and 3200 steps.

One long run per method keeps snapshots of its weights (:attr:`~mmdis.training.config.TrainConfig.
snapshots`); each snapshot is evaluated like a finished run, so the curves are *one* run's poly schedule
seen at intermediate steps (an earlier snapshot was taken at a higher learning rate than a run that ends
there would have reached). Per snapshot:

- the 15-subset average Dice of every method and region (:func:`study_rows`, the evaluation's tidy rows
  plus ``step``);
- gate selectivity of RobustSeg: the mean gate :math:`\bar g_{i,r}` of each sequence :math:`i` in each
  tumour region :math:`r` with all four inputs, and its spread :math:`\max_i \bar g_{i,r} - \min_i \bar
  g_{i,r}` (:func:`gate_rows`, :func:`study_summary`);
- reconstruction PSNR of each *missing* sequence above the flat-image floor (a constant image at the brain
  mean, :func:`~mmdis.evaluation.claims.flat_image_floor`);
- the ablation's ordering of mean, mean + disentanglement and gated fusion.

:func:`run_study` writes ``rows.csv``, ``gates.csv``, ``floor.csv`` and ``provenance.json`` (snapshot
checksums, settings) to a folder; the book reads them through :func:`study_summary`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from mmdis.data.cache import Cache
from mmdis.evaluation.claims import flat_image_floor
from mmdis.evaluation.evaluate import EvalConfig, evaluate_run, load_run
from mmdis.evaluation.tables import ABLATION_METHODS
from mmdis.inspection.gates import gate_maps, gate_region_means
from mmdis.runtime.files import atomic_path, save_json
from mmdis.training.export import sha256

TUMOUR_REGIONS = ("edema", "core", "enhancing")


def snapshots(run_dir: str | Path) -> dict[int, str]:
    """``{step: checkpoint relative to run_dir}`` of a run's snapshots, by step."""
    found = sorted(Path(run_dir).glob("snapshots/step_*.pt"))
    return {int(p.stem.split("_")[1]): f"snapshots/{p.name}" for p in found}


def study_rows(run_dirs: Mapping[str, str | Path], cache_dir: str | Path, config: EvalConfig | None = None,
               progress: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Evaluation rows of every snapshot of every run, with a ``step`` column, and their provenance.

    Raises:
        ValueError: if a run has no snapshots.
    """
    frames, provenance = [], []
    todo = [(m, Path(r), step, ck) for m, r in run_dirs.items() for step, ck in snapshots(r).items()]
    for run_dir in run_dirs.values():
        if not snapshots(run_dir):
            raise ValueError(f"{run_dir} has no snapshots/step_*.pt: train it with snapshots=(...)")
    for method, run_dir, step, checkpoint in tqdm(todo, desc="study", unit="snapshot", disable=not progress):
        frames.append(evaluate_run(run_dir, cache_dir, config, method, progress=False,
                                   checkpoint=checkpoint).assign(step=step))
        provenance.append({"method": method, "step": step, "checkpoint": str(run_dir / checkpoint),
                           "sha256": sha256(run_dir / checkpoint)})
    return pd.concat(frames, ignore_index=True), provenance


def gate_rows(run_dir: str | Path, cache_dir: str | Path, split: str = "test", method: str = "robustseg"
              ) -> pd.DataFrame:
    """Per snapshot and case, :func:`~mmdis.inspection.gates.gate_region_means` with every available
    sequence fused, every stage; columns of that function plus ``method``, ``step``, ``case``."""
    cache, frames = Cache.open(cache_dir), []
    for step, checkpoint in snapshots(run_dir).items():
        model = load_run(run_dir, "cpu", checkpoint)[0]
        for case_id in cache.case_ids(split):
            case = cache.load(case_id, mmap=False)
            gates = gate_maps(model, case.image, case.available)
            frames.append(gate_region_means(gates, case.label, case.mask).assign(method=method, step=step,
                                                                                case=case_id))
    return pd.concat(frames, ignore_index=True)


def run_study(run_dirs: Mapping[str, str | Path], cache_dir: str | Path, out_dir: str | Path,
              config: EvalConfig | None = None, progress: bool = True) -> Path:
    """Evaluate every snapshot and write the study's tables to ``out_dir`` (replaced whole)."""
    rows, provenance = study_rows(run_dirs, cache_dir, config, progress)
    gated = [m for m in run_dirs if m == "robustseg" or m.startswith("robustseg-")]
    gates = pd.concat([gate_rows(run_dirs[m], cache_dir, method=m) for m in gated], ignore_index=True)
    first = json.loads((Path(next(iter(run_dirs.values()))) / "config.json").read_text())
    settings = (config or EvalConfig()).resolved(first["profile"])
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        rows.to_csv(tmp / "rows.csv", index=False)
        gates.to_csv(tmp / "gates.csv", index=False)
        flat_image_floor(cache_dir, settings["split"]).to_csv(tmp / "floor.csv", index=False)
        save_json({"settings": settings, "snapshots": provenance,
                   "cache": Cache.open(cache_dir).manifest.get("preprocessing")}, tmp / "provenance.json")
    return Path(out_dir)


def _subset_average(d: pd.DataFrame) -> pd.DataFrame:
    """Mean over cases, then over subsets: ``(method, step, region) -> value``."""
    per_subset = d.groupby(["method", "step", "region", "subset"])["value"].mean()
    return per_subset.groupby(["method", "step", "region"]).mean().reset_index()


def study_summary(folder: str | Path) -> pd.DataFrame:
    """Long table ``method, step, quantity, region, value`` of the study in ``folder``.

    Quantities: ``dice`` (15-subset average, per region WT/TC/ET), ``psnr_missing_above_floor`` (per
    sequence: mean over the subsets without it of PSNR minus the flat image's), ``mean_gate`` (region
    ``<tumour region>/<sequence>``, stage 0, all inputs) and ``gate_spread`` (per tumour region, the
    largest minus the smallest sequence's mean gate), and ``ablation_rank`` (per region: 1 for the best of
    the three ablation methods).
    """
    folder = Path(folder)
    rows = pd.read_csv(folder / "rows.csv")
    out = []
    dice = _subset_average(rows[(rows["metric"] == "dice") & rows["region"].isin(["WT", "TC", "ET"])])
    out.append(dice.assign(quantity="dice"))
    psnr = rows[rows["metric"] == "psnr"].copy()
    if not psnr.empty:
        floor = pd.read_csv(folder / "floor.csv").set_index("modality")["psnr"]
        missing = [region not in subset.split("+") for subset, region in zip(psnr["subset"], psnr["region"])]
        psnr = psnr[missing].copy()
        psnr["value"] = psnr["value"] - psnr["region"].map(floor)
        out.append(_subset_average(psnr).assign(quantity="psnr_missing_above_floor"))
    gates_path = folder / "gates.csv"
    if gates_path.is_file():
        g = pd.read_csv(gates_path)
        g = g[(g["stage"] == 0) & g["region"].isin(TUMOUR_REGIONS)]
        mean = g.groupby(["method", "step", "region", "modality"])["mean_gate"].mean().reset_index()
        out.append(mean.assign(region=mean["region"] + "/" + mean["modality"], quantity="mean_gate")
                   .rename(columns={"mean_gate": "value"}).drop(columns="modality"))
        spread = mean.groupby(["method", "step", "region"])["mean_gate"].agg(lambda v: v.max() - v.min())
        out.append(spread.rename("value").reset_index().assign(quantity="gate_spread"))
    ablation = dice[dice["method"].isin(ABLATION_METHODS)].copy()
    ablation["value"] = ablation.groupby(["step", "region"])["value"].rank(ascending=False, method="min")
    out.append(ablation.assign(quantity="ablation_rank"))
    summary = pd.concat(out, ignore_index=True)
    return summary[["method", "step", "quantity", "region", "value"]].sort_values(
        ["quantity", "method", "region", "step"], ignore_index=True)


def subsets_evaluated(folder: str | Path) -> int:
    """How many modality subsets the study's rows hold (15 for complete cases)."""
    return int(pd.read_csv(Path(folder) / "rows.csv", usecols=["subset"])["subset"].nunique())

