"""The ``mmdis`` command line.

Subcommands::

    mmdis phantom OUT_DIR [--cases N] [--seed S] [--spacing MM] [--preview PNG]
    mmdis prepare DATA_DIR [DATA_DIR ...] CACHE_DIR [--spacing MM] [--allow-missing] [--seed S] [--layout L]
    mmdis preview DATA_DIR [--case ID] -o PNG
    mmdis fetch-msd DEST
    mmdis summary [--size 80] [--channels 16]
    mmdis bench [--patch 80] [--cache DIR] [--channels 16] [--profile P] [--threads N]
    mmdis train --profile P --method M --data DIR [DIR ...] --run-dir DIR [--resume] [--set K=V ...]
    mmdis evaluate RUN_DIR... --data DIR --out DIR [--split test]
    mmdis predict --model RUN_DIR [--flair F] [--t1 F] [--t1ce F] [--t2 F] -o SEG.nii.gz
    mmdis reproduce --profile P [--data DIR ...] [--work DIR] [--results DIR] [--methods M ...]
    mmdis notebooks --profile P [--only NN ...]

Every failure caused by bad input prints one line naming the file or parameter and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmdis.conventions import MODALITIES


def _cmd_phantom(args) -> None:
    from mmdis.data.phantom import PhantomConfig, write_phantom

    config = PhantomConfig(cases=args.cases, seed=args.seed, spacing=args.spacing)
    paths = write_phantom(args.out_dir, config, progress=not args.quiet, overwrite=args.overwrite)
    print(f"{len(paths)} phantom cases in {args.out_dir}")
    if args.preview:
        _write_preview(Path(args.out_dir), None, Path(args.preview))


def _write_preview(data_dir: Path, case_id: str | None, out: Path) -> None:
    from mmdis.data.layouts import discover_cases, read_case
    from mmdis.viz import plot_case, save_figure

    cases = discover_cases(data_dir)
    if case_id is not None:
        cases = [c for c in cases if c.case_id == case_id]
        if not cases:
            raise ValueError(f"--case {case_id!r} is not a case of {data_dir}")
    raw = read_case(cases[0], allow_missing=True)
    fig = plot_case(raw.images, raw.label, title=f"{raw.case_id} ({raw.layout})")
    save_figure(fig, out)
    print(f"preview of {raw.case_id} written to {out}")


def _cmd_preview(args) -> None:
    _write_preview(Path(args.data_dir), args.case, Path(args.output))


def _cmd_prepare(args) -> None:
    from mmdis.data.cache import PrepareConfig, prepare

    config = PrepareConfig(
        spacing=args.spacing,
        margin=args.margin,
        allow_missing=args.allow_missing,
        seed=args.seed,
        fractions=tuple(args.split),
        layout=args.layout,
    )
    if not args.paths[:-1]:
        raise ValueError("give DATA_DIR [DATA_DIR ...] CACHE_DIR")
    data_dirs, cache_dir = args.paths[:-1], args.paths[-1]
    manifest = prepare(data_dirs if len(data_dirs) > 1 else data_dirs[0], cache_dir, config,
                       progress=not args.quiet)
    layouts = manifest["layout"] if isinstance(manifest["layout"], str) else "+".join(manifest["layout"])
    print(f"{len(manifest['cases'])} cases ({layouts}) cached in {cache_dir}")
    for entry in manifest["cases"]:
        missing = [m for m, a in zip(MODALITIES, entry["available"]) if not a]
        if missing:
            print(f"  {entry['case_id']}: has {'+'.join(entry['modalities'])}; lacks {'+'.join(missing)}")


def _cmd_fetch_msd(args) -> None:
    from mmdis.data.fetch import fetch_msd_task01

    root = fetch_msd_task01(args.dest, **({"url": args.url} if args.url else {}))
    print(f"MSD Task01 at {root}")


def _use_benchmarks(command: str) -> None:
    """Put the checkout holding ``benchmarks/`` (never installed) on the path; ImportError without one."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "__init__.py").is_file():
        raise ImportError(f"'mmdis {command}' needs a source checkout of mmdis: {root / 'benchmarks'} "
                          "does not exist (it is not part of the installed package)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _cmd_summary(args) -> None:
    _use_benchmarks("summary")
    from benchmarks.flops import format_summary, summarize

    rows = summarize(size=args.size, base_channels=args.channels, batch=args.batch, device=args.device)
    print(format_summary(rows))


def _cmd_bench(args) -> None:
    _use_benchmarks("bench")
    from benchmarks.run import run_benchmarks

    run_benchmarks(patch=args.patch, cache_dir=args.cache, seconds=args.seconds, channels=args.channels,
                   profile=None if args.profile == "none" else args.profile, eval_size=args.eval_size,
                   device=args.device, threads=args.threads, native=args.native)


def _overrides(pairs: list[str]) -> dict:
    """``--set epochs=4 --set optim.lr=1e-3`` -> ``{"epochs": 4, "optim": {"lr": 0.001}}`` (JSON values)."""
    import json

    out: dict = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        head, _, tail = key.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[head] = value
    return out


def _data_cache(data: list[str], cache: str | None, run_dir: Path, spacing, quiet: bool) -> Path:
    from mmdis.pipeline import ensure_cache, is_cache

    if len(data) == 1 and is_cache(data[0]):
        return Path(data[0])
    tag = "native" if spacing is None else f"{spacing:g}mm"
    name = "+".join(Path(d).resolve().name for d in data)
    default = run_dir.parent / "cache" / f"{name}-{tag}"
    return ensure_cache(data if len(data) > 1 else data[0], cache or default, spacing, progress=not quiet)


def _cmd_train(args) -> None:
    from mmdis.pipeline import train_run
    from mmdis.profiles import get_profile
    from mmdis.training.config import make_config

    overrides = _overrides(args.set)
    for name in ("seed", "device", "amp"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    config = make_config(args.profile, args.method, **overrides)
    run_dir = Path(args.run_dir)
    if (run_dir / "last.pt").exists() and not args.resume:
        raise ValueError(f"--run-dir {run_dir} already holds a checkpoint; add --resume or choose another")
    spacing = get_profile(args.profile).spacing if args.spacing is None else (args.spacing or None)
    cache = _data_cache(args.data, args.cache, run_dir, spacing, args.quiet)
    result = train_run(config, cache, run_dir, progress=not args.quiet)
    if result.get("skipped"):
        print(f"{run_dir} has finished all {config.epochs} epochs; nothing to do")
    else:
        val = result.get("val_dice_wt")
        print(f"trained {config.method} for {result['step']} steps in {result['elapsed']:.0f} s"
              + (f", val WT Dice {val:.4f}" if val is not None else "")
              + f"; checkpoint {result['checkpoint']}")


def _cmd_evaluate(args) -> None:
    from mmdis.evaluation.evaluate import EvalConfig, evaluate
    from mmdis.evaluation.figures import write_figures
    from mmdis.pipeline import is_cache

    for run in args.run_dirs:
        if not (Path(run) / "config.json").is_file():
            raise FileNotFoundError(f"{run} is not a training run: it has no config.json")
    if not is_cache(args.data):
        import json

        data = json.loads((Path(args.run_dirs[0]) / "data.json").read_text())
        raise ValueError(f"--data {args.data} is not a prepared cache (the first run was trained on "
                         f"{data.get('cache')})")
    config = EvalConfig(split=args.split, device=args.device, overlap=args.overlap,
                        roi_size=tuple(args.roi) if args.roi else None)
    summary = evaluate(args.run_dirs, args.data, args.out, config, progress=not args.quiet)
    write_figures(args.out, args.run_dirs)
    print(f"results of {', '.join(summary['methods'])} in {args.out}")
    for column, value in summary["average_dice"].items():
        print(f"  {column:>24}: {value:6.2f} % Dice (15-subset average)")


def _cmd_predict(args) -> None:
    from mmdis.evaluation.predict import predict_case

    inputs = {m: getattr(args, m) for m in MODALITIES if getattr(args, m)}
    result = predict_case(args.model, inputs, args.output, convention=args.convention, mask=args.mask,
                          zscored=args.zscored, device=args.device, progress=not args.quiet)
    print(f"segmentation from {'+'.join(result['modalities'])} written to {result['output']} "
          f"(voxels per label: {result['voxels']})")


def _cmd_reproduce(args) -> None:
    from mmdis.pipeline import reproduce

    summary = reproduce(args.profile, work_dir=args.work, results_dir=args.results, data=args.data,
                        methods=args.methods, device=args.device, seed=args.seed,
                        overrides=_overrides(args.set), progress=not args.quiet)
    print(f"results in {args.results}:")
    for column, value in summary["average_dice"].items():
        print(f"  {column:>24}: {value:6.2f} % Dice (15-subset average)")


def _cmd_notebooks(args) -> None:
    from mmdis.book import execute_notebooks

    done = execute_notebooks(args.profile, src=args.src, dst=args.dst, only=args.only, device=args.device,
                             seed=args.seed, progress=not args.quiet)
    for item in done:
        print(f"  {item['name']}: {item['seconds']:.0f} s -> {item['output']}")


def build_parser() -> argparse.ArgumentParser:
    from mmdis.data.layouts import LAYOUTS
    from mmdis.models.config import VARIANTS
    from mmdis.pipeline import METHODS
    from mmdis.profiles import PROFILES

    p = argparse.ArgumentParser(prog="mmdis", description=__doc__.split("\n")[0])
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("phantom", help="write BraTS-like phantom cases (BraTS 2021 layout)")
    s.add_argument("out_dir")
    s.add_argument("--cases", type=int, default=24)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--spacing", type=float, default=2.0, help="voxel size in mm (1 = the paper's grid)")
    s.add_argument("--preview", help="also save a figure of the first case to this PNG")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_cmd_phantom)

    s = sub.add_parser("prepare", help="preprocess dataset folder(s) into a cache with a manifest and split")
    s.add_argument("paths", nargs="+", metavar="DATA_DIR... CACHE_DIR",
                   help="one or more dataset folders (mixed layouts allowed), then the cache folder")
    s.add_argument("--layout", choices=list(LAYOUTS))
    s.add_argument("--spacing", type=float, help="resample to this isotropic spacing (mm)")
    s.add_argument("--margin", type=int, default=0)
    s.add_argument("--allow-missing", action="store_true", help="accept cases lacking a modality")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--split", type=float, nargs=3, default=[0.7, 0.1, 0.2], metavar=("TRAIN", "VAL", "TEST"))
    s.set_defaults(func=_cmd_prepare)

    s = sub.add_parser("preview", help="figure of one case: four modalities and the label overlay")
    s.add_argument("data_dir")
    s.add_argument("--case")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=_cmd_preview)

    s = sub.add_parser("fetch-msd", help="download and unpack MSD Task01 BrainTumour (needs internet)")
    s.add_argument("dest")
    s.add_argument("--url")
    s.set_defaults(func=_cmd_fetch_msd)

    s = sub.add_parser("summary", help="parameters and FLOPs of every model variant")
    s.add_argument("--size", type=int, default=80)
    s.add_argument("--channels", type=int, default=16)
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--device", default="meta", help="'meta' counts FLOPs without computing")
    s.set_defaults(func=_cmd_summary)

    s = sub.add_parser("bench", help="print a table of step time, memory, FLOP/s, evaluation cost and "
                       "loader throughput against their targets")
    s.add_argument("--patch", type=int, default=80)
    s.add_argument("--cache", help="a prepared cache to read (default: a small phantom made on the fly)")
    s.add_argument("--seconds", type=float, default=10.0, help="time spent per measurement")
    s.add_argument("--channels", type=int, default=16, help="base width C of the model (paper: 16)")
    s.add_argument("--profile", choices=[*PROFILES, "none"], default="cpu",
                   help="also time this training profile's step ('none': skip)")
    s.add_argument("--eval-size", type=int, help="volume size of the 15-subset evaluation (default: --patch)")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, help="torch threads (1 is steadier on a shared machine)")
    s.add_argument("--native", metavar="DATA_DIR",
                   help="also segment this dataset's first case on its own grid (time, peak memory)")
    s.set_defaults(func=_cmd_bench)

    profiles, methods = list(PROFILES), list(VARIANTS)
    s = sub.add_parser("train", help="train one method (resumable; torchrun for several GPUs)")
    s.add_argument("--profile", choices=profiles, default="cpu")
    s.add_argument("--method", choices=methods, default="robustseg")
    s.add_argument("--data", required=True, nargs="+",
                   help="a prepared cache, or raw dataset folder(s) (several make one mixed collection)")
    s.add_argument("--run-dir", required=True)
    s.add_argument("--cache", help="where to prepare a raw --data folder (default: RUN_DIR/../cache/...)")
    s.add_argument("--spacing", type=float, help="resampling of a raw --data folder in mm (0: none; "
                   "default: the profile's)")
    s.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    s.add_argument("--seed", type=int)
    s.add_argument("--device")
    s.add_argument("--amp")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set epochs=4 --set optim.lr=1e-3")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("evaluate", help="15-subset evaluation of trained runs into result tables")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--data", required=True, help="the prepared cache the runs were trained on")
    s.add_argument("--out", required=True)
    s.add_argument("--split", default="test")
    s.add_argument("--device", default="auto")
    s.add_argument("--overlap", type=float)
    s.add_argument("--roi", type=int, nargs=3, metavar=("D", "H", "W"))
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("predict", help="segment one patient from any non-empty subset of modality files")
    s.add_argument("--model", required=True, help="a training run directory")
    for name in MODALITIES:
        s.add_argument(f"--{name}", dest=name, metavar="NIFTI")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--convention", default="brats2021", help="label numbering of the output")
    s.add_argument("--mask", help="brain mask NIfTI (default: non-zero voxels of the inputs)")
    s.add_argument("--zscored", action="store_true", help="inputs are already z-scored in the mask")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=_cmd_predict)

    s = sub.add_parser("reproduce", help="data, every method's training, evaluation, tables and figures")
    s.add_argument("--profile", choices=profiles, default="cpu")
    s.add_argument("--data", nargs="+", help="a prepared cache or raw dataset folder(s) (default: phantom)")
    s.add_argument("--work", default="work")
    s.add_argument("--results", default="results")
    s.add_argument("--methods", nargs="+", choices=methods, default=list(METHODS))
    s.add_argument("--device", default="auto")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", metavar="KEY=VALUE")
    s.set_defaults(func=_cmd_reproduce)

    s = sub.add_parser("notebooks", help="execute the tutorial notebooks with papermill for the book")
    s.add_argument("--profile", choices=profiles, default="cpu")
    s.add_argument("--src", default="notebooks")
    s.add_argument("--dst", default="book/notebooks")
    s.add_argument("--only", nargs="+", metavar="NN", help="only notebooks starting with these prefixes")
    s.add_argument("--device", default="auto")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_notebooks)
    return p


def main(argv: list[str] | None = None) -> int:
    from mmdis.data.io import CaseError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CaseError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"mmdis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
