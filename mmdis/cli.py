"""The ``mmdis`` command line.

Subcommands::

    mmdis phantom OUT_DIR [--cases N] [--seed S] [--spacing MM] [--preview PNG]
    mmdis prepare DATA_DIR CACHE_DIR [--spacing MM] [--allow-missing] [--seed S] [--layout L]
    mmdis preview DATA_DIR [--case ID] -o PNG
    mmdis fetch-msd DEST
    mmdis summary [--size 80] [--channels 16]
    mmdis bench [--patch 80] [--cache DIR] [--channels 16]

Every failure caused by bad input prints one line naming the file or parameter and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    manifest = prepare(args.data_dir, args.cache_dir, config, progress=not args.quiet)
    print(f"{len(manifest['cases'])} cases ({manifest['layout']}) cached in {args.cache_dir}")


def _cmd_fetch_msd(args) -> None:
    from mmdis.data.fetch import fetch_msd_task01

    root = fetch_msd_task01(args.dest, **({"url": args.url} if args.url else {}))
    print(f"MSD Task01 at {root}")


def _cmd_summary(args) -> None:
    from mmdis.models.summary import format_table, summarize

    rows = summarize(size=args.size, base_channels=args.channels, batch=args.batch, device=args.device)
    print(format_table(rows))


def _cmd_bench(args) -> None:
    from mmdis.bench import run_benchmarks

    run_benchmarks(patch=args.patch, cache_dir=args.cache, seconds=args.seconds, channels=args.channels)


def build_parser() -> argparse.ArgumentParser:
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

    s = sub.add_parser("prepare", help="preprocess a dataset folder into a cache with a manifest and split")
    s.add_argument("data_dir")
    s.add_argument("cache_dir")
    s.add_argument("--layout", choices=["brats2021", "brats2023", "msd", "brats2015"])
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

    s = sub.add_parser("bench", help="print a table of data-loader and training-step throughput")
    s.add_argument("--patch", type=int, default=80)
    s.add_argument("--cache", help="a prepared cache to read (default: a small phantom made on the fly)")
    s.add_argument("--seconds", type=float, default=10.0, help="time spent per measurement")
    s.add_argument("--channels", type=int, default=16, help="base width C of the model (paper: 16)")
    s.set_defaults(func=_cmd_bench)
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
