"""What each ``mmdis`` subcommand does, given its parsed arguments; :mod:`mmdis.cli` holds the parser.

Each function takes the ``argparse.Namespace`` of its subcommand. A failure caused by bad input raises
``ValueError``, ``FileNotFoundError``, ``ImportError`` or a :class:`~mmdis.data.io.CaseError`, which the
command line turns into one line and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mmdis.conventions import MODALITIES


def cmd_phantom(args) -> None:
    from mmdis.data.phantom import PhantomConfig, write_phantom

    config = PhantomConfig(cases=args.cases, seed=args.seed, spacing=args.spacing)
    paths = write_phantom(args.out_dir, config, progress=not args.quiet, overwrite=args.overwrite)
    print(f"{len(paths)} phantom cases in {args.out_dir}")
    if args.preview:
        _write_preview(Path(args.out_dir), None, Path(args.preview))


def _write_preview(data_dir: Path, case_id: str | None, out: Path) -> None:
    from mmdis.data.layouts import discover_cases, read_case
    from mmdis.plotting.base import save_figure
    from mmdis.plotting.cases import plot_case

    cases = discover_cases(data_dir)
    if case_id is not None:
        cases = [c for c in cases if c.case_id == case_id]
        if not cases:
            raise ValueError(f"--case {case_id!r} is not a case of {data_dir}")
    raw = read_case(cases[0], allow_missing=True)
    fig = plot_case(raw.images, raw.label, title=f"{raw.case_id} ({raw.layout})")
    save_figure(fig, out)
    print(f"preview of {raw.case_id} written to {out}")


def cmd_preview(args) -> None:
    _write_preview(Path(args.data_dir), args.case, Path(args.output))


def cmd_prepare(args) -> None:
    from mmdis.data.cache import Cache, PrepareConfig, prepare, split_sizes

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
    print(f"{len(manifest['cases'])} cases ({layouts}) cached in {cache_dir}; split: "
          f"{split_sizes(Cache.open(cache_dir).splits)}")
    for entry in manifest["cases"]:
        missing = [m for m, a in zip(MODALITIES, entry["available"]) if not a]
        if missing:
            print(f"  {entry['case_id']}: has {'+'.join(entry['modalities'])}; lacks {'+'.join(missing)}")


def cmd_fetch_msd(args) -> None:
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


def cmd_summary(args) -> None:
    _use_benchmarks("summary")
    from benchmarks.flops import format_summary, summarize

    rows = summarize(size=args.size, base_channels=args.channels, batch=args.batch, device=args.device)
    print(format_summary(rows))


def cmd_bench(args) -> None:
    for name in ("seconds", "patch", "channels", "threads", "eval_size"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
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
    from mmdis.pipeline import cache_dir_for, ensure_cache, is_cache

    if len(data) == 1 and is_cache(data[0]):
        return Path(data[0])
    default = cache_dir_for(run_dir.resolve().parent, [Path(d).resolve() for d in data], spacing)
    return ensure_cache(data if len(data) > 1 else data[0], cache or default, spacing, progress=not quiet)


def cmd_train(args) -> None:
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
    from mmdis.data.cache import Cache, split_sizes

    print(f"data: {cache} ({split_sizes(Cache.open(cache).splits)}); training on the train split, "
          "validating on val")
    result = train_run(config, cache, run_dir, progress=not args.quiet)
    if result.get("skipped"):
        print(f"{run_dir} has finished all {config.epochs} epochs; nothing to do")
    else:
        val = result.get("val_dice_wt")
        print(f"trained {config.method} for {result['step']} steps in {result['elapsed']:.0f} s"
              + (f", val WT Dice {val:.4f}" if val is not None else "")
              + f"; checkpoint {result['checkpoint']}")


def cmd_evaluate(args) -> None:
    from mmdis.evaluation.evaluate import EvalConfig, evaluate
    from mmdis.evaluation.report import write_figures
    from mmdis.metrics import MetricConfig
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
                        roi_size=tuple(args.roi) if args.roi else None,
                        allow_train_overlap=args.allow_train_overlap, blend=args.blend,
                        mask_to_brain=args.mask_to_brain,
                        metrics=MetricConfig(hd95=args.hd95, empty=args.empty,
                                             et_postprocess=args.et_postprocess))
    summary = evaluate(args.run_dirs, args.data, args.out, config, progress=not args.quiet)
    write_figures(args.out, args.run_dirs)
    print(f"results of {', '.join(summary['methods'])} in {args.out}")
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    """Each run's epoch and step, then the average Dice, saying over how many subsets it runs."""
    for method, state in summary["run_states"].items():
        done = "" if state["finished"] else f" of {state['epochs']}: UNFINISHED"
        print(f"  {method}: weights of epoch {state['epoch']}{done}, step {state['step']}")
    n = summary["subsets"]
    for column, value in summary["average_dice"].items():
        print(f"  {column:>24}: {value:6.2f} % Dice ({n}-subset average{'' if n == 15 else ' of 15'})")


def cmd_predict(args) -> None:
    from mmdis.evaluation.predict import predict_files

    inputs = {m: getattr(args, m) for m in MODALITIES if getattr(args, m)}
    result = predict_files(args.model, inputs, args.output, convention=args.convention, mask=args.mask,
                           zscored=args.zscored, device=args.device, progress=not args.quiet,
                           overwrite=args.overwrite)
    state = result["run_state"]
    print(f"segmentation from {'+'.join(result['modalities'])} written to {result['output']} "
          f"(voxels per label: {result['voxels']}; weights of epoch {state['epoch']} of {state['epochs']}, "
          f"step {state['step']})")


def cmd_reproduce(args) -> None:
    from mmdis.pipeline import reproduce

    summary = reproduce(args.profile, work_dir=args.work, results_dir=args.results, data=args.data,
                        methods=args.methods, device=args.device, seed=args.seed,
                        overrides=_overrides(args.set), progress=not args.quiet, models=args.models)
    print(f"results in {args.results} ({summary['models']} models):")
    _print_summary(summary)


def cmd_notebooks(args) -> None:
    from mmdis.book import execute_notebooks

    done = execute_notebooks(args.profile, src=args.src, dst=args.dst, only=args.only, device=args.device,
                             seed=args.seed, progress=not args.quiet, models=args.models)
    for item in done:
        print(f"  {item['name']}: {item['seconds']:.0f} s -> {item['output']}")
