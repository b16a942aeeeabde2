"""Open every page of the built book in headless Chromium; exit 1 if any page shows a problem.

Usage: python data_scripts/check_book.py [_build/html [screenshot folder]]
Needs Debian's chromium and chromium-driver and the selenium package (the ``test`` extra). One full-page
screenshot per page goes to ``_build/screenshots/`` (or the folder given).
"""

import sys

from mmdis.book_check import check_rendered_book

if __name__ == "__main__":
    html = sys.argv[1] if len(sys.argv) > 1 else "_build/html"
    report = check_rendered_book(html, sys.argv[2] if len(sys.argv) > 2 else None)
    for page, seen in report["pages"].items():
        status = "; ".join(report["problems"].get(page, [])) or "ok"
        counts = f"{seen['images']:3d} images {seen['maths']:4d} equations {seen['tables']:3d} tables"
        print(f"{page:55s} {counts}  {status}")
    shots = {str(seen["screenshot"]).rsplit("/", 1)[0] for seen in report["pages"].values()}
    print(f"{len(report['pages'])} pages, {len(report['problems'])} with problems; screenshots in "
          f"{', '.join(sorted(shots))}")
    sys.exit(1 if report["problems"] else 0)
