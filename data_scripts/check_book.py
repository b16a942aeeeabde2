"""Open every page of the built book in headless Chromium; exit 1 if any page shows a problem.

Usage: python data_scripts/check_book.py [_build/html]
Needs Debian's chromium and chromium-driver and the selenium package (the ``test`` extra).
"""

import sys

from mmdis.book import check_rendered_book

if __name__ == "__main__":
    report = check_rendered_book(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    for page, images in report["pages"].items():
        status = "; ".join(report["problems"].get(page, [])) or "ok"
        print(f"{page:60s} {images:3d} images  {status}")
    sys.exit(1 if report["problems"] else 0)
