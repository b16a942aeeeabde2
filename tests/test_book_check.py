"""The headless-browser check of the rendered book finds what a reader would see broken."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mmdis.book import check_rendered_book

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM.is_file() and DRIVER.is_file()),
                                reason="Debian's chromium and chromium-driver are absent (make browser)")
# A 1x1 PNG.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGA"
                         "WjR9awAAAABJRU5ErkJggg==")


def _page(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><head><title>{path.stem}</title></head><body><main>{body}</main></body></html>")


def test_a_good_book_passes_and_broken_pages_are_named(tmp_path):
    (tmp_path / "pixel.png").write_bytes(PIXEL)
    _page(tmp_path / "index.html", '<p>fine</p><img src="pixel.png">')
    _page(tmp_path / "book" / "fine.html", '<img src="../pixel.png">')
    _page(tmp_path / "book" / "missing.html", '<img src="nowhere.png">')
    _page(tmp_path / "book" / "failed.html", "<pre>Traceback (most recent call last):\n  boom</pre>")
    _page(tmp_path / "_static" / "ignored.html", '<img src="nowhere.png">')
    report = check_rendered_book(tmp_path)
    assert report["pages"] == {"book/failed.html": 0, "book/fine.html": 1, "book/missing.html": 1,
                               "index.html": 1}
    assert set(report["problems"]) == {"book/missing.html", "book/failed.html"}
    assert "nowhere.png" in report["problems"]["book/missing.html"][0]
    assert "Traceback" in report["problems"]["book/failed.html"][0]


def test_a_folder_without_a_book_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.html"):
        check_rendered_book(tmp_path)
