"""Preprocess a BraTS / MSD dataset folder into an mmdis cache.

A thin wrapper around ``mmdis prepare`` for people who keep data scripts beside the data::

    python data_scripts/prepare_brats.py /data/BraTS2021_Training_Data data/brats2021 --spacing 1
"""

import sys

from mmdis.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
