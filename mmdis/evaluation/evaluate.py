"""``mmdis evaluate``: trained runs on the test split, over every modality subset, into result tables.

For each run and each test case, :func:`~mmdis.inference.predict_subsets` segments the whole
volume with sliding windows for every subset the case can form (all 15 for a complete case), running the
encoders once per window. Per case, subset and region the paper's Table-1 metrics (Dice, sensitivity,
precision) and HD95 are computed on the preprocessed grid (cropped to the brain, at the cache's spacing);
for variants that reconstruct, PSNR and SSIM of every modality the case has, inside the brain.

A run's rows are cached in ``RUN_DIR/evaluation/<split>-<key>.csv``, keyed by the checkpoint's SHA-256 and
step, the cache with the checksum and source fingerprint of every case evaluated, and the evaluation
settings, so evaluating again (e.g. from ``mmdis reproduce``) reuses them, and a retrained run, a rebuilt
case or another setting never does. Before a run is used, :mod:`mmdis.evaluation.guards` warns when it is
unfinished and refuses test cases that were in its training split; ``runs.csv`` and ``evaluation.json``
record the epoch and step of every run's weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from mmdis.conventions import MODALITIES, MODALITY_NAMES, subset_name
from mmdis.data.cache import Cache
from mmdis.evaluation.guards import check_no_leakage, run_state, warn_unfinished
from mmdis.evaluation.stats import wilcoxon_tests
from mmdis.evaluation.tables import ABLATION_METHODS, ablation_summary, table2, write_table2
from mmdis.evaluation.tidy import RESULT_COLUMNS, metric_rows, read_results, write_results
from mmdis.inference import feasible_subsets, predict_subsets
from mmdis.metrics import MetricConfig, case_metrics, reconstruction_metrics
from mmdis.models.config import ModelConfig
from mmdis.models.networks import MultimodalSegNet
from mmdis.profiles import BLENDS, get_profile
from mmdis.runtime.device import resolve_amp, resolve_device
from mmdis.runtime.files import save_json
from mmdis.training.checkpoint import read_checkpoint
from mmdis.training.config import TrainConfig
from mmdis.training.export import WEIGHTS, load_weights, sha256


@dataclass(frozen=True)
class EvalConfig:
    """How runs are evaluated.

    Attributes:
        split: the cache split to evaluate (``test``; ``val`` for model selection).
        roi_size: sliding-window size; ``None`` takes the run's profile's (:class:`~mmdis.profiles.Profile`).
        overlap: window overlap; ``None`` as for ``roi_size``.
        recon_cases: reconstruction metrics only for the first this many cases (they cost four extra
            decoders per subset); ``None`` for all, ``0`` for none.
        subset_batch: (window, subset) pairs decoded together.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        amp: autocast of the network: ``run`` follows the run's training setting (see
            :func:`~mmdis.runtime.device.resolve_amp`), or ``auto``, ``bf16``, ``fp16``, ``off``.
        blend: how overlapping windows are averaged, MONAI's ``gaussian`` or ``constant`` (uniform, as
            the authors); ``None`` takes the profile's.
        mask_to_brain: set every prediction outside the brain mask to background; ``None`` takes the
            profile's.
        allow_train_overlap: evaluate even cases of the run's training split (with a warning); by
            default that is refused (:func:`~mmdis.evaluation.guards.check_no_leakage`).
        metrics: how segmentations are scored (:class:`~mmdis.metrics.MetricConfig`: the HD95 definition,
            the empty-mask convention, and whether ET is also reported after small-ET post-processing).
    """

    split: str = "test"
    roi_size: tuple[int, int, int] | None = None
    overlap: float | None = None
    recon_cases: int | None = -1
    subset_batch: int = 5
    device: str = "auto"
    amp: str = "run"
    blend: str | None = None
    mask_to_brain: bool | None = None
    allow_train_overlap: bool = False
    metrics: MetricConfig = MetricConfig()

    def __post_init__(self) -> None:
        if self.blend not in (None, *BLENDS):
            raise ValueError(f"blend must be one of {list(BLENDS)}, got {self.blend!r}")
        if self.mask_to_brain is not None and not isinstance(self.mask_to_brain, bool):
            raise ValueError(f"mask_to_brain must be a bool, got {self.mask_to_brain!r}")

    def resolved(self, profile: str) -> dict[str, Any]:
        """Settings with the profile's defaults filled in (``recon_cases=-1`` means the profile's)."""
        base = get_profile(profile)
        return {
            "split": self.split,
            "roi_size": list(self.roi_size or base.eval_roi),
            "overlap": base.eval_overlap if self.overlap is None else self.overlap,
            "recon_cases": base.recon_cases if self.recon_cases == -1 else self.recon_cases,
            "blend": self.blend or base.eval_blend,
            "mask_to_brain": base.eval_mask if self.mask_to_brain is None else self.mask_to_brain,
            # only a non-default scoring enters the settings, so rows cached before it existed stay valid
            **({"metrics": asdict(self.metrics)} if self.metrics != MetricConfig() else {}),
        }


def load_run(run_dir: str | Path, device: str | torch.device = "cpu",
             checkpoint: str | None = None) -> tuple[MultimodalSegNet, TrainConfig, dict]:
    """The trained network of a run directory, in eval mode, with its config and checkpoint metadata.

    The weights are ``checkpoint`` (relative to ``run_dir``; e.g. ``snapshots/step_000400.pt``), by
    default ``last.pt`` or, in a shipped book model, ``model.safetensors``. Only
    ``torch.load(weights_only=True)`` and the safetensors reader are used, so loading cannot execute code.

    Returns:
        ``(model, config, meta)``; ``meta`` has the ``method``, ``epoch``, ``step`` and the ``sha256`` of
        the weights file (which keys cached evaluations).

    Raises:
        FileNotFoundError: naming the missing ``config.json`` or checkpoint.
        ValueError: if the checkpoint's method differs from the run's config.
    """
    run_dir = Path(run_dir)
    if checkpoint is None:
        shipped = (run_dir / WEIGHTS).is_file() and not (run_dir / "last.pt").is_file()
        checkpoint = WEIGHTS if shipped else "last.pt"
    config_path, ckpt_path = run_dir / "config.json", run_dir / checkpoint
    for path in (config_path, ckpt_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a finished training run")
    config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    if ckpt_path.suffix == ".safetensors":
        state, ckpt = load_weights(ckpt_path)
    else:
        ckpt = read_checkpoint(ckpt_path)
        state = ckpt["model"]
    if ckpt.get("method") != config.method:
        raise ValueError(f"{ckpt_path} holds method {ckpt.get('method')!r} but {config_path} says "
                         f"{config.method!r}")
    model = MultimodalSegNet(ModelConfig.from_dict(ckpt["model_config"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        first = str(exc).strip().splitlines()[:2]
        raise ValueError(f"{ckpt_path} does not fit its own model configuration: {' '.join(first)}") from None
    model.to(device).eval()
    meta = {k: ckpt[k] for k in ("method", "epoch", "step") if k in ckpt}
    meta["sha256"] = sha256(ckpt_path)
    return model, config, meta


def _cache_key(run_meta: dict, cache: Cache, settings: dict) -> str:
    """The weights' hash and counters, the split's cases with their checksums and sources, and every
    evaluation setting: cached rows are reused only when all of them are what made the rows."""
    ids = cache.case_ids(settings["split"])
    blob = json.dumps({"run": run_meta, "cache": str(cache.root.resolve()), "ids": ids,
                       "data": cache.fingerprint(ids),
                       "preprocessing": cache.manifest.get("preprocessing"), **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def evaluate_run(run_dir: str | Path, cache_dir: str | Path, config: EvalConfig | None = None,
                 method: str | None = None, progress: bool = True,
                 checkpoint: str | None = None) -> pd.DataFrame:
    """Tidy metric rows (:data:`~mmdis.evaluation.tidy.RESULT_COLUMNS`) of one run on one split.

    Args:
        run_dir: a training run (``config.json``, ``last.pt``).
        cache_dir: the prepared cache whose ``config.split`` is evaluated.
        config: evaluation settings.
        method: the label in the ``method`` column (default: the run's method).
        progress: a progress bar over cases.
        checkpoint: the weights to evaluate, relative to ``run_dir`` (default: see :func:`load_run`).

    Raises:
        ValueError: if the split is empty or holds unlabelled cases.
    """
    config = config or EvalConfig()
    run_dir, cache = Path(run_dir), Cache.open(cache_dir)
    device = resolve_device(config.device)
    model, train_config, meta = load_run(run_dir, device, checkpoint)
    settings = config.resolved(train_config.profile)
    amp = train_config.amp if config.amp == "run" else config.amp
    amp_dtype = resolve_amp(amp, device, train_config.bottom_depth)[0]
    settings["amp"] = str(amp_dtype)
    label = method or train_config.method
    ids = cache.case_ids(config.split)
    if not ids:
        raise ValueError(f"the {config.split!r} split of {cache.root} is empty")
    state = run_state(train_config, meta)
    warn_unfinished(state, run_dir)
    check_no_leakage(run_dir, ids, config.split, config.allow_train_overlap)
    key = _cache_key(meta, cache, settings)
    cached = run_dir / "evaluation" / f"{config.split}-{key}.csv"
    if cached.is_file():
        df = read_results(cached)
        df["method"] = label
        df.attrs["run_state"] = {**state, "sha256": meta["sha256"]}
        return df
    rows: list[dict] = []
    for n, case_id in enumerate(tqdm(ids, desc=f"evaluate {label}", unit="case", disable=not progress)):
        case = cache.load(case_id, mmap=False)
        if case.label is None:
            raise ValueError(f"case {case_id} of the {config.split!r} split has no label to evaluate against")
        recon = settings["recon_cases"] is None or n < settings["recon_cases"]
        pred = predict_subsets(model, case.image, case.available, roi_size=settings["roi_size"],
                               overlap=settings["overlap"], subset_batch=config.subset_batch,
                               with_recon=recon, mode=settings["blend"], device=device, amp_dtype=amp_dtype)
        if settings["mask_to_brain"]:
            pred.labels[:, ~case.mask] = 0  # tumour only inside the brain, as for `mmdis predict`
        for s, subset in enumerate(pred.subsets):
            name = subset_name(subset)
            metrics = case_metrics(pred.labels[s], case.label, case.crop.spacing, config.metrics)
            rows.extend(metric_rows(metrics, label, case_id, name))
            if pred.recon is None:
                continue
            for i, modality in enumerate(MODALITIES):
                if not case.available[i]:
                    continue  # nothing to compare a reconstruction of a missing modality with
                scores = reconstruction_metrics(pred.recon[s, i], case.image[i], case.mask)
                rows.extend({"method": label, "case": case_id, "subset": name,
                             "region": MODALITY_NAMES[modality], "metric": k, "value": v}
                            for k, v in scores.items())
    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_results(df, cached)
    df.attrs["run_state"] = {**state, "sha256": meta["sha256"]}
    return df


def skipped_subsets(cache_dir: str | Path, split: str = "test") -> dict[str, list[str]]:
    """Per case of a split, the subsets it cannot form because it lacks modalities (empty lists omitted)."""
    cache = Cache.open(cache_dir)
    out = {}
    for case_id in cache.case_ids(split):
        _, skipped = feasible_subsets(cache.entry(case_id)["available"])
        if skipped:
            out[case_id] = [subset_name(s) for s in skipped]
    return out


def evaluate(run_dirs: Sequence[str | Path], cache_dir: str | Path, out_dir: str | Path,
             config: EvalConfig | None = None, reference: str = "robustseg",
             progress: bool = True) -> dict[str, Any]:
    """Evaluate several runs and write the result tables to ``out_dir``.

    Writes ``results.csv`` (tidy), ``table2_dice.{csv,md}`` and the same for sensitivity, precision and
    HD95, ``reconstruction.{csv,md}`` (PSNR/SSIM per subset and modality) when a run reconstructs,
    ``wilcoxon.csv`` (paired tests against ``reference``), ``ablation.csv`` when the three ablation runs are
    present, ``skipped.json`` (subsets the test cases cannot form), ``runs.csv`` (each run's folder,
    epoch, step, planned epochs, whether it finished and the weights' SHA-256) and ``evaluation.json``.

    Returns:
        A summary dict: the paths written, the methods, the Table-2 average Dice per method and region,
        ``subsets`` (how many subsets the averages run over: 15 when every case has all four
        sequences) and ``run_states`` (as in ``runs.csv``).

    Raises:
        ValueError: if two runs share a method name with no way to tell them apart, or ``run_dirs`` is empty.
    """
    if not run_dirs:
        raise ValueError("give at least one run directory to evaluate")
    config = config or EvalConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = [TrainConfig.from_dict(json.loads((Path(r) / "config.json").read_text())).method
               if (Path(r) / "config.json").is_file() else Path(r).name for r in run_dirs]
    labels = [m if methods.count(m) == 1 else f"{m}@{Path(r).name}" for m, r in zip(methods, run_dirs)]
    if len(set(labels)) != len(labels):
        raise ValueError(f"run directories with the same method and folder name: {list(map(str, run_dirs))}")
    frames = [evaluate_run(r, cache_dir, config, method=label, progress=progress)
              for r, label in zip(run_dirs, labels)]
    states = {label: {"run_dir": str(r), **f.attrs["run_state"]}
              for r, label, f in zip(run_dirs, labels, frames)}
    df = pd.concat(frames, ignore_index=True)
    df.attrs = {}
    written = {"results": write_results(df, out_dir / "results.csv")}
    pd.DataFrame([{"method": k, **v} for k, v in states.items()]).to_csv(out_dir / "runs.csv", index=False)
    written["runs"] = out_dir / "runs.csv"
    seg = df[df["metric"].isin(["dice", "sensitivity", "precision", "hd95"])]
    averages = {}
    for metric in ("dice", "sensitivity", "precision", "hd95"):
        table = table2(seg, metric=metric, definitions=config.metrics)
        written[f"table2_{metric}"] = write_table2(table, out_dir / f"table2_{metric}.csv")[0]
        if metric == "dice":
            avg = table.loc["Average"]
            averages = {c: round(float(avg[c]), 2) for c in table.columns if " " in c}
    rec = df[df["metric"].isin(["psnr", "ssim"])]
    if not rec.empty:
        summary = (rec.groupby(["method", "subset", "region", "metric"], sort=False)["value"].mean()
                   .unstack("metric").reset_index())
        summary.to_csv(out_dir / "reconstruction.csv", index=False)
        (out_dir / "reconstruction.md").write_text(summary.to_markdown(index=False, floatfmt=".3f") + "\n")
        written["reconstruction"] = out_dir / "reconstruction.csv"
    if reference in labels and len(labels) > 1:
        wilcoxon_tests(seg, reference=reference).to_csv(out_dir / "wilcoxon.csv", index=False)
        written["wilcoxon"] = out_dir / "wilcoxon.csv"
    if all(m in labels for m in ABLATION_METHODS):
        ablation_summary(seg).to_csv(out_dir / "ablation.csv", index=False)
        written["ablation"] = out_dir / "ablation.csv"
    skipped = skipped_subsets(cache_dir, config.split)
    save_json(skipped, out_dir / "skipped.json")
    summary = {"methods": labels, "runs": [str(r) for r in run_dirs], "cache": str(cache_dir),
               "config": asdict(config), "average_dice": averages, "run_states": states,
               "subsets": int(seg["subset"].nunique()),
               "skipped_subsets": skipped, "files": {k: str(v) for k, v in written.items()}}
    save_json(summary, out_dir / "evaluation.json")
    return summary
