"""Write the embedded phantom data set in the BraTS 2021 layout::

    python data_scripts/make_phantom.py data/phantom --cases 24 --seed 0 --spacing 2 [--overwrite] [--quiet]

A thin wrapper around ``mmdis phantom`` (same arguments, parsed by the command line's own parser);
``--quiet`` may come anywhere, as it always could here.
"""

import sys

from mmdis.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    quiet = ["--quiet"] if "--quiet" in args else []
    sys.exit(main([*quiet, "phantom", *(a for a in args if a != "--quiet")]))
