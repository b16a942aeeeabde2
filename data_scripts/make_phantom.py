"""Write the embedded phantom data set (BraTS 2021 layout); a wrapper around ``mmdis phantom``::

    python data_scripts/make_phantom.py data/phantom --cases 24 --seed 0 --spacing 2
"""

import sys

from mmdis.cli import main

if __name__ == "__main__":
    sys.exit(main(["phantom", *sys.argv[1:]]))
