"""The ``mmdis`` command line.

Subcommands::

    mmdis phantom OUT_DIR [--cases N] [--seed S] [--spacing MM] [--preview PNG]
    mmdis prepare DATA_DIR [DATA_DIR ...] CACHE_DIR [--spacing MM] [--allow-missing] [--seed S] [--layout L]
    mmdis preview DATA_DIR [--case ID] -o PNG
    mmdis fetch-msd DEST
    mmdis summary [--size 80] [--channels 16]
    mmdis bench [--patch 80] [--cache DIR] [--channels 16] [--profile P] [--threads N]
    mmdis train --profile P --method M --data DIR [DIR ...] --run-dir DIR [--resume] [--set K=V ...]
    mmdis evaluate RUN_DIR... --data DIR --out DIR [--split test] [--blend B] [--hd95 D] [--empty C]
    mmdis predict --model RUN_DIR [--flair F] [--t1 F] [--t1ce F] [--t2 F] -o SEG.nii.gz
    mmdis reproduce --profile P [--data DIR ...] [--work DIR] [--results DIR] [--methods M ...]
    mmdis notebooks --profile P [--only NN ...]

Every failure caused by bad input prints one line naming the file or parameter and exits with 2.
"""

from __future__ import annotations

import argparse
import sys

from mmdis import commands
from mmdis.conventions import MODALITIES


def build_parser() -> argparse.ArgumentParser:
    from mmdis.data.layouts import LAYOUTS
    from mmdis.metrics.definitions import EMPTY_CONVENTIONS, HD95_DEFINITIONS
    from mmdis.models.config import VARIANTS
    from mmdis.pipeline import METHODS, MODEL_SOURCES
    from mmdis.profiles import BLENDS, PROFILES

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
    s.set_defaults(func=commands.cmd_phantom)

    s = sub.add_parser("prepare", help="preprocess dataset folder(s) into a cache with a manifest and split")
    s.add_argument("paths", nargs="+", metavar="DATA_DIR... CACHE_DIR",
                   help="one or more dataset folders (mixed layouts allowed), then the cache folder")
    s.add_argument("--layout", choices=list(LAYOUTS))
    s.add_argument("--spacing", type=float, help="resample to this isotropic spacing (mm)")
    s.add_argument("--margin", type=int, default=0)
    s.add_argument("--allow-missing", action="store_true", help="accept cases lacking a modality")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--split", type=float, nargs=3, default=[0.7, 0.1, 0.2], metavar=("TRAIN", "VAL", "TEST"))
    s.set_defaults(func=commands.cmd_prepare)

    s = sub.add_parser("preview", help="figure of one case: four modalities and the label overlay")
    s.add_argument("data_dir")
    s.add_argument("--case")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=commands.cmd_preview)

    s = sub.add_parser("fetch-msd", help="download and unpack MSD Task01 BrainTumour (needs internet)")
    s.add_argument("dest")
    s.add_argument("--url")
    s.set_defaults(func=commands.cmd_fetch_msd)

    s = sub.add_parser("summary", help="parameters and FLOPs of every model variant")
    s.add_argument("--size", type=int, default=80)
    s.add_argument("--channels", type=int, default=16)
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--device", default="meta", help="'meta' counts FLOPs without computing")
    s.set_defaults(func=commands.cmd_summary)

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
    s.set_defaults(func=commands.cmd_bench)

    profiles, methods = list(PROFILES), list(VARIANTS)
    s = sub.add_parser("train", help="train one method (resumable; torchrun for several GPUs)")
    s.add_argument("--profile", choices=profiles, default="cpu")
    s.add_argument("--method", choices=methods, default="robustseg")
    s.add_argument("--data", required=True, nargs="+",
                   help="a prepared cache, or raw dataset folder(s) (several make one mixed collection)")
    s.add_argument("--run-dir", required=True)
    s.add_argument("--cache", help="where to prepare a raw --data folder (default: "
                   "RUN_DIR/../cache-<name>-<hash>-<spacing>)")
    s.add_argument("--spacing", type=float, help="resampling of a raw --data folder in mm (0: none; "
                   "default: the profile's)")
    s.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    s.add_argument("--seed", type=int)
    s.add_argument("--device")
    s.add_argument("--amp")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set epochs=4 --set optim.lr=1e-3")
    s.set_defaults(func=commands.cmd_train)

    s = sub.add_parser("evaluate", help="15-subset evaluation of trained runs into result tables")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--data", required=True, help="the prepared cache the runs were trained on")
    s.add_argument("--out", required=True)
    s.add_argument("--split", default="test")
    s.add_argument("--device", default="auto")
    s.add_argument("--overlap", type=float)
    s.add_argument("--roi", type=int, nargs=3, metavar=("D", "H", "W"))
    s.add_argument("--allow-train-overlap", action="store_true",
                   help="score cases of a run's training split too (refused by default)")
    s.add_argument("--blend", choices=list(BLENDS),
                   help="how overlapping windows are averaged (default: the run's profile's)")
    s.add_argument("--mask-to-brain", action=argparse.BooleanOptionalAction, default=None,
                   help="set predictions outside the brain mask to background (default: the profile's)")
    s.add_argument("--hd95", choices=list(HD95_DEFINITIONS), default="directed-max",
                   help="HD95: larger directed 95th percentile (MONAI) or both pooled (BraTS 2023+)")
    s.add_argument("--empty", choices=list(EMPTY_CONVENTIONS), default="brats2018",
                   help="empty-mask convention: BraTS 2018-2022 (CaPTk) or the brats-evaluation package")
    s.add_argument("--et-postprocess", action="store_true",
                   help="also report ET-pp: ET after relabelling a small predicted ET as core")
    s.set_defaults(func=commands.cmd_evaluate)

    s = sub.add_parser("predict", help="segment one patient from any non-empty subset of modality files")
    s.add_argument("--model", required=True, help="a training run directory")
    for name in MODALITIES:
        s.add_argument(f"--{name}", dest=name, metavar="NIFTI")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--convention", default="brats2021", help="label numbering of the output")
    s.add_argument("--mask", help="brain mask NIfTI (default: non-zero voxels of the inputs)")
    s.add_argument("--zscored", action="store_true", help="inputs are already z-scored in the mask")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=commands.cmd_predict)

    s = sub.add_parser("reproduce", help="data, every method's training, evaluation, tables and figures")
    s.add_argument("--profile", choices=profiles, default="cpu")
    s.add_argument("--data", nargs="+", help="a prepared cache or raw dataset folder(s) (default: phantom)")
    s.add_argument("--work", default="work")
    s.add_argument("--results", default="results")
    s.add_argument("--methods", nargs="+", choices=methods, default=list(METHODS))
    s.add_argument("--device", default="auto")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", metavar="KEY=VALUE")
    s.add_argument("--models", choices=MODEL_SOURCES, default="auto",
                   help="shipped: the book models installed with the package (no training); retrain: train "
                        "them; auto: shipped where the profile has them and nothing is overridden")
    s.set_defaults(func=commands.cmd_reproduce)

    s = sub.add_parser("notebooks", help="execute the tutorial notebooks with papermill for the book")
    s.add_argument("--profile", choices=profiles, default="cpu")
    s.add_argument("--src", default="notebooks")
    s.add_argument("--dst", default="book/notebooks")
    s.add_argument("--only", nargs="+", metavar="NN", help="only notebooks starting with these prefixes")
    s.add_argument("--device", default="auto")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--models", choices=MODEL_SOURCES, default="auto",
                   help="where the notebooks' reproduction takes its networks (see reproduce)")
    s.set_defaults(func=commands.cmd_notebooks)
    return p


def main(argv: list[str] | None = None) -> int:
    from mmdis.data.io import CaseError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CaseError, ValueError, OSError, ImportError, FloatingPointError, MemoryError) as exc:
        # OSError covers a missing file and a full disk, both named by the writers; MemoryError a volume
        # too large for this machine.
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"mmdis {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
