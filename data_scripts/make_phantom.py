"""Write the embedded phantom data set in the BraTS 2021 layout::

    python data_scripts/make_phantom.py data/phantom --cases 24 --seed 0 --spacing 2

A thin wrapper around :func:`mmdis.data.phantom.write_phantom` (``mmdis phantom`` does the same).
"""

from __future__ import annotations

import argparse
import sys

from mmdis.data.phantom import PhantomConfig, write_phantom


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir", help="destination folder (created)")
    p.add_argument("--cases", type=int, default=PhantomConfig.cases, help="number of cases")
    p.add_argument("--seed", type=int, default=PhantomConfig.seed, help="base seed")
    p.add_argument("--spacing", type=float, default=PhantomConfig.spacing,
                   help="voxel size in mm (1 = the paper's grid)")
    p.add_argument("--overwrite", action="store_true", help="regenerate cases that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        config = PhantomConfig(cases=args.cases, seed=args.seed, spacing=args.spacing)
        paths = write_phantom(args.out_dir, config, progress=not args.quiet, overwrite=args.overwrite)
    except ValueError as exc:
        print(f"make_phantom: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(paths)} phantom cases in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
