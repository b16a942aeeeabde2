"""Export the finished runs of a reproduction as the book models shipped with the package.

    python data_scripts/export_book_models.py --profile cpu --work work/cpu

For each method it finds the run directory ``mmdis reproduce --models retrain`` trained (same config,
same cache), refuses an unfinished one, and writes ``mmdis/book_models/<profile>/<method>/`` (see
:mod:`mmdis.training.export`) with a ``record.json`` of what the tests check:

- ``val``: the WT Dice of every validation case from the *stored* (float16-rounded) weights with float32
  inference, next to the same from the float32 ``last.pt``, so the rounding's effect is on record;
- ``first_losses``: the loss terms of the first three steps as the run logged them (in its own precision)
  and recomputed now in float32 from the recorded seed (a fresh 3-step run of the same config);
- ``training``: steps, wall time, mean step time, the precision it trained in and the CPU.

It also evaluates every snapshot of these runs (and of any ``--extra NAME=RUN_DIR``, e.g. RobustSeg
trained without the gate norm) into ``study/`` (:func:`mmdis.study.run_study`), the data of the
book's training-budget chapter. Then ``SHA256SUMS`` is written over the whole profile folder.
A maintainer's tool: it needs the runs, so
it is not part of the tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from mmdis.data.cache import SPLITS, Cache
from mmdis.pipeline import METHODS, cache_dir_for, run_dir_for
from mmdis.profiles import get_profile
from mmdis.runtime.files import write_text
from mmdis.runtime.machine import cpu_model
from mmdis.study import run_study
from mmdis.training.checkpoint import read_checkpoint
from mmdis.training.config import make_config
from mmdis.training.export import (
    FIRST_STEPS,
    WEIGHTS,
    export_run,
    first_losses,
    first_losses_float32,
    load_weights,
    shipped_dir,
    write_manifest,
)
from mmdis.training.validation import wt_dice_scores


def val_dice(run_dir: Path, checkpoint: str, cache: Cache, profile: str) -> list[float]:
    from mmdis.evaluation.evaluate import load_run

    model, _, _ = load_run(run_dir, "cpu", checkpoint)
    return [round(float(d), 6) for d in wt_dice_scores(model, cache.root, cache.case_ids("val"),
                                                       torch.device("cpu"), None, profile)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--work", type=Path, default=Path("work/cpu"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME=RUN_DIR",
                        help="more runs with snapshots for the study (not shipped as models)")
    parser.add_argument("--skip-models", action="store_true", help="only redo the study")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    cache_dir = cache_dir_for(args.work, [args.work / "phantom"], profile.spacing)
    cache = Cache.open(cache_dir)
    dest_root = shipped_dir(args.profile)
    command = (f"mmdis reproduce --profile {args.profile} --models retrain --work work/{args.profile} "
               f"--results results/{args.profile}")
    run_dirs = {}
    for method in args.methods:
        config = make_config(args.profile, method, seed=0)
        run_dir = run_dir_for(args.work, config, cache_dir)
        run_dirs[method] = run_dir
        if args.skip_models:
            continue
        ckpt = read_checkpoint(run_dir / "last.pt")
        if ckpt["epoch"] < config.epochs:
            print(f"{run_dir} is unfinished ({ckpt['epoch']}/{config.epochs} epochs)", file=sys.stderr)
            return 2
        steps = [float(r["seconds"]) for r in csv.DictReader(open(run_dir / "metrics.csv", newline=""))]
        env = json.loads((run_dir / "env.json").read_text())
        record = {
            "method": method, "profile": args.profile, "seed": config.seed,
            "training": {"steps": ckpt["step"], "epochs": ckpt["epoch"],
                         "wall_seconds": round(float(ckpt["extra"]["elapsed"]), 1),
                         "mean_step_seconds": round(float(np.mean(steps)), 4),
                         "amp": env.get("amp"), "amp_setting": config.amp, "cpu": cpu_model(),
                         "torch_threads": env.get("torch_threads")},
            # What it was trained and validated on, for the train/test overlap check of evaluation.
            "data": {"splits": {name: cache.case_ids(name) for name in SPLITS}},
            "first_losses": {"logged": first_losses(run_dir / "metrics.csv",
                                                    min(FIRST_STEPS, config.iters_per_epoch)),
                             "float32": first_losses_float32(args.profile, method, cache_dir)},
        }
        dest = export_run(run_dir, dest_root / method, command, {**record, "val": {}})
        record["val"] = {"cases": cache.case_ids("val"), "inference": "float32",
                         "dice_wt_stored": val_dice(dest, WEIGHTS, cache, args.profile),
                         "dice_wt_last_pt": val_dice(run_dir, "last.pt", cache, args.profile)}
        write_text(dest / "record.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
        load_weights(dest / WEIGHTS)  # readable back
        print(f"{method}: {record['val']} first total {record['first_losses']['logged'][0]['total']:.5f} "
              f"(float32 {record['first_losses']['float32'][0]['total']:.5f})")
    extra = dict(item.split("=", 1) for item in args.extra)
    run_study({**run_dirs, **{k: Path(v) for k, v in extra.items()}}, cache_dir, dest_root / "study")
    write_manifest(dest_root)
    print(f"wrote {dest_root} ({sum(p.stat().st_size for p in dest_root.rglob('*')) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
