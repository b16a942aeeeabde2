"""The reproduction pipeline: data -> cache -> one training run per method -> evaluation -> ``results/``.

``mmdis reproduce --profile cpu`` (and :func:`reproduce`) generates the embedded phantom unless ``--data``
names a dataset, prepares it into a cache at the profile's spacing, trains RobustSeg, the two ablation
variants, HeMIS and the imputation baseline, evaluates all of them on the test split over the 15 modality
subsets and writes the tables and figures. Every step reuses finished work: run directories are keyed by a
hash of their configuration and data, a finished run is skipped, an interrupted one resumes from its last
checkpoint, and evaluation rows are cached per run.

``models`` decides where the networks come from: ``retrain`` trains them (``make reproduce``),
``shipped`` copies the book models installed with the package (:mod:`mmdis.training.export`, checked
against their SHA-256 manifest) into ``WORK/shipped/<method>/`` and trains nothing, and ``auto`` (the
default) takes the shipped ones when the profile has them for every method and nothing is overridden.

Work folder layout::

    WORK/phantom/                      # generated data (unless --data)
    WORK/cache-<spacing>/              # prepared cache
    WORK/runs/<method>-<profile>-<key>/ # config.json, env.json, data.json, metrics.csv, last.pt
    WORK/shipped/<method>/             # a shipped book model: config.json, model.safetensors, record.json
    RESULTS/                           # results.csv, table2_*.{csv,md}, wilcoxon.csv, figures/*.png
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdis.data.cache import SPLITS, Cache, PrepareConfig, prepare
from mmdis.models.config import VARIANTS
from mmdis.profiles import get_profile
from mmdis.runtime.configs import check_name
from mmdis.runtime.files import save_json, sweep_temporaries
from mmdis.runtime.locks import folder_lock
from mmdis.training.config import TrainConfig, make_config

#: Where the networks of a reproduction come from (see the module docstring).
MODEL_SOURCES = ("auto", "shipped", "retrain")

#: Every method of the reproduction, in the order of the paper's comparisons.
METHODS: tuple[str, ...] = ("robustseg", "ablation-mean", "ablation-mean-dis", "hemis", "imputation")


def is_cache(path: str | Path) -> bool:
    """Whether ``path`` is a prepared cache (it has ``manifest.json`` and ``splits.json``)."""
    path = Path(path)
    return (path / "manifest.json").is_file() and (path / "splits.json").is_file()


def ensure_cache(data: str | Path | Sequence[str | Path], cache_dir: str | Path, spacing: float | None,
                 allow_missing: bool = True, progress: bool = True) -> Path:
    """``data`` itself if it is a prepared cache, else ``data`` (one folder or several, which make one
    mixed collection) prepared into ``cache_dir``.

    Cases lacking modalities are accepted (``allow_missing``): training uses what each case has.
    Preparing again is cheap, as cases already cached with the same parameters are reused.

    Raises:
        FileNotFoundError: if a data folder does not exist.
    """
    folders = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    for folder in folders:
        if not folder.exists():
            raise FileNotFoundError(f"--data {folder} does not exist")
    if len(folders) == 1 and is_cache(folders[0]):
        return folders[0]
    prepare(data, cache_dir, PrepareConfig(spacing=spacing, allow_missing=allow_missing), progress=progress)
    return Path(cache_dir)


def run_key(config: TrainConfig, cache_dir: str | Path) -> str:
    """A short hash of everything that defines a run's result: its config and its training data."""
    cache = Cache.open(cache_dir)
    blob = json.dumps({"config": config.to_dict(), "cache": str(Path(cache_dir).resolve()),
                       "preprocessing": cache.manifest.get("preprocessing"),
                       "train": cache.case_ids("train"), "val": cache.case_ids("val")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def cache_dir_for(work_dir: str | Path, folders: Sequence[str | Path], spacing: float | None) -> Path:
    """Where raw ``folders`` are prepared at ``spacing``: ``WORK/cache-<names>-<hash>-<spacing>``.

    The hash is of the folders' resolved paths, so ``/x/BraTS`` and ``/y/BraTS`` never share a cache
    (and, were they to, every case's source fingerprint would rebuild it: see :mod:`mmdis.data.cache`).
    """
    tag = "native" if spacing is None else f"{spacing:g}mm"
    where = hashlib.sha256("\n".join(str(Path(f).resolve()) for f in folders).encode()).hexdigest()[:8]
    return Path(work_dir) / f"cache-{'+'.join(Path(f).name for f in folders)}-{where}-{tag}"


def run_dir_for(work_dir: str | Path, config: TrainConfig, cache_dir: str | Path) -> Path:
    """Where :func:`reproduce` trains ``config`` on ``cache_dir``: ``WORK/runs/<method>-<profile>-<key>``."""
    return Path(work_dir) / "runs" / f"{config.method}-{config.profile}-{run_key(config, cache_dir)}"


def run_finished(run_dir: str | Path, config: TrainConfig) -> bool:
    """Whether ``run_dir/last.pt`` holds all ``config.epochs`` epochs of this config's method.

    Raises:
        ValueError: if the checkpoint was written by another method.
    """
    from mmdis.training.checkpoint import read_checkpoint

    path = Path(run_dir) / "last.pt"
    if not path.is_file():
        return False
    ckpt = read_checkpoint(path)
    if ckpt.get("method") != config.method:
        raise ValueError(f"checkpoint {path} was saved by method {ckpt.get('method')!r}; it cannot be "
                         f"resumed as method {config.method!r}")
    return int(ckpt.get("epoch", 0)) >= config.epochs


def train_run(config: TrainConfig, cache_dir: str | Path, run_dir: str | Path,
              progress: bool = True) -> dict[str, Any]:
    """Train (or resume, or skip when finished) one run, recording its data in ``run_dir/data.json``.

    The run folder is locked for the whole call (by the first process of a ``torchrun`` group): a second
    ``train`` into the same folder is refused instead of mixing one run's config with another's weights.
    Temporaries that a killed writer left in the folder are removed first, and a fresh start that fails
    before its first checkpoint removes what it wrote.

    Raises:
        mmdis.runtime.locks.FolderLockedError: another process is training into ``run_dir``.
    """
    from mmdis.runtime.device import resolve_device

    run_dir = Path(run_dir)
    resolve_device(config.device)  # a device that is not there fails before anything is written
    if int(os.environ.get("RANK", "0")) != 0:  # the other ranks of a torchrun group follow rank 0
        return _train_run(config, cache_dir, run_dir, progress)
    with folder_lock(run_dir, "--run-dir"):
        for folder in (run_dir, run_dir / "snapshots"):
            sweep_temporaries(folder)
        before = set(run_dir.iterdir())
        fresh = not (run_dir / "last.pt").exists()
        try:
            return _train_run(config, cache_dir, run_dir, progress)
        except BaseException:
            if fresh and not (run_dir / "last.pt").exists():
                # A start that failed before its first checkpoint (bad data, a non-finite first loss)
                # leaves the folder as it found it; one with a checkpoint is kept, to resume.
                for path in set(run_dir.iterdir()) - before:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            raise


def _train_run(config: TrainConfig, cache_dir: str | Path, run_dir: Path, progress: bool) -> dict[str, Any]:
    from mmdis.training.loop import train

    cache = Cache.open(cache_dir)
    finished = run_finished(run_dir, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_json({"cache": str(Path(cache_dir).resolve()), "source": cache.manifest.get("source"),
               "layout": cache.manifest.get("layout"), "preprocessing": cache.manifest.get("preprocessing"),
               "fingerprint": cache.fingerprint(), "splits": {s: cache.case_ids(s) for s in SPLITS}},
              run_dir / "data.json")
    if finished:
        return {"run_dir": str(run_dir), "skipped": True}
    return train(config, cache_dir, run_dir, resume=True, progress=progress)


def reproduce(profile: str = "cpu", work_dir: str | Path = "work", results_dir: str | Path = "results",
              data: str | Path | Sequence[str | Path] | None = None, methods: Sequence[str] = METHODS,
              device: str = "auto",
              seed: int = 0, overrides: dict[str, Any] | None = None,
              progress: bool = True, models: str = "auto") -> dict[str, Any]:
    """Run the whole reproduction for one profile; see the module docstring.

    Args:
        profile: ``smoke``, ``cpu`` or ``paper`` (see :data:`~mmdis.profiles.PROFILES`).
        work_dir: where data, caches and runs go.
        results_dir: where the tables and figures go.
        data: a prepared cache or raw dataset folder(s) (several make one mixed collection); ``None``
            generates the phantom.
        methods: the methods to train and compare.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: seed of every run.
        overrides: extra :func:`~mmdis.training.config.make_config` overrides for every run.
        progress: progress bars.
        models: ``auto``, ``shipped`` or ``retrain`` (see the module docstring).

    Returns:
        The evaluation summary (see :func:`mmdis.evaluation.evaluate.evaluate`: ``methods``, ``runs``,
        ``cache``, ``average_dice``, ``skipped_subsets``, ``files``) plus ``figures``, ``profile`` and
        ``run_by_method`` (method -> run directory).

    Raises:
        ValueError: for an unknown profile, method or model source, or shipped models asked for with
            overrides or another seed (they were trained without them).
        FileNotFoundError: when shipped models are asked for and the profile ships none of a method.
    """
    get_profile(profile)  # raises for an unknown name
    check_name(models, MODEL_SOURCES, "models")
    if not methods:
        raise ValueError("methods is empty; name at least one of " + ", ".join(VARIANTS))
    for method in methods:
        check_name(method, VARIANTS, "method")
    work_dir, results_dir = Path(work_dir), Path(results_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(work_dir, "--work", wait=True):  # two notebooks reproducing take turns
        shipped = _use_shipped(models, profile, methods, seed, overrides)
        return _reproduce(profile, work_dir, results_dir, data, methods, device, seed, overrides, progress,
                          shipped)


def _use_shipped(models: str, profile: str, methods: Sequence[str], seed: int,
                 overrides: dict[str, Any] | None) -> bool:
    """Whether a reproduction takes the shipped book models (``models`` resolved, see the module)."""
    from mmdis.training.export import shipped_dir, shipped_methods

    if models == "retrain":
        return False
    have = set(shipped_methods(profile))
    if models == "auto":
        return not overrides and seed == 0 and set(methods) <= have
    if overrides or seed != 0:
        raise ValueError("the shipped models were trained with seed 0 and no overrides; use models='retrain' "
                         "(make reproduce) to train with --set or --seed")
    missing = [m for m in methods if m not in have]
    if missing:
        raise FileNotFoundError(f"profile {profile!r} ships no model of {missing} in {shipped_dir(profile)}; "
                                "use models='retrain' (make reproduce) to train them")
    return True


def _reproduce(profile, work_dir, results_dir, data, methods, device, seed, overrides, progress, shipped):
    from mmdis.evaluation.evaluate import EvalConfig, evaluate
    from mmdis.evaluation.report import write_figures

    spacing = get_profile(profile).spacing
    if data is None:
        from mmdis.data.phantom import PhantomConfig, write_phantom

        data = work_dir / "phantom"
        cases = get_profile(profile).phantom_cases
        if len([p for p in data.glob("*") if p.is_dir()]) < cases:
            write_phantom(data, PhantomConfig(cases=cases, seed=seed, spacing=spacing or 1.0),
                          progress=progress, overwrite=True)
    folders = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    cache_dir = ensure_cache(folders if len(folders) > 1 else folders[0],
                             cache_dir_for(work_dir, folders, spacing), spacing, progress=progress)
    run_dirs = []
    for method in methods:
        if shipped:
            from mmdis.training.export import materialise

            run_dirs.append(materialise(profile, method, work_dir / "shipped" / method))
            continue
        config = make_config(profile, method, device=device, seed=seed, **(overrides or {}))
        run_dir = run_dir_for(work_dir, config, cache_dir)
        train_run(config, cache_dir, run_dir, progress=progress)
        run_dirs.append(run_dir)
    summary = evaluate(run_dirs, cache_dir, results_dir, EvalConfig(device=device), progress=progress)
    summary["figures"] = [str(p) for p in write_figures(results_dir, run_dirs)]
    summary["profile"] = profile
    summary["run_by_method"] = {m: str(r) for m, r in zip(methods, run_dirs)}
    summary["models"] = "shipped" if shipped else "retrained"
    save_json(summary, results_dir / "evaluation.json")
    return summary
