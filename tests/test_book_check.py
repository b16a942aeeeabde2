"""The headless-browser check of the rendered book finds what a reader would see broken.

Each kind of problem is shown failing on a crafted page (raw maths, a raw Markdown table, a broken image,
a traceback), and a page with maths typeset by the bundled MathJax passes.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mmdis.book_check import book_pages, bundled_mathjax, check_rendered_book

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM.is_file() and DRIVER.is_file()),
                                reason="Debian's chromium and chromium-driver are absent (make browser)")
# A 1x1 PNG.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGA"
                         "WjR9awAAAABJRU5ErkJggg==")
# What Sphinx writes for {math}`g_i` and a display equation, and how it loads MathJax 3.
MATHS = ('<p>The gate <span class="math notranslate nohighlight">\\(g_i = \\sigma(x)\\)</span> and</p>'
         '<div class="math notranslate nohighlight">\\[\\mathcal{L} = \\sum_{i=1}^{M} \\| x_i \\|_1\\]</div>')


def _mathjax(src: str) -> str:
    return f'<script defer src="{src}"></script>'


def _page(path: Path, body: str, head: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<html><head><meta charset="utf-8"><title>{path.stem}</title>{head}</head>'
                    f"<body><main>{body}</main></body></html>")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One browser run over a crafted book with one good and several broken pages."""
    root = tmp_path_factory.mktemp("book")
    (root / "pixel.png").write_bytes(PIXEL)
    local = _mathjax(bundled_mathjax().as_uri())
    _page(root / "index.html", '<p>fine</p><img src="pixel.png">')
    _page(root / "book" / "maths.html", MATHS + '<img src="../pixel.png"><pre>| a | b |\n|---|---|</pre>'
          "<table><tr><td>1</td></tr></table>", head=local)
    _page(root / "book" / "raw_maths.html", MATHS)  # no MathJax at all
    _page(root / "book" / "cdn_maths.html", MATHS, head=_mathjax("https://cdn.invalid/mathjax/tex-chtml.js"))
    _page(root / "book" / "raw_table.html", "<p>| subset | FLAIR | WT |\n|:\u2014-|:\u2014|\u2014:|\n"
          "| T2 | \u25cb | 80.1 |</p>")
    _page(root / "book" / "missing.html", '<img src="nowhere.png">')
    _page(root / "book" / "failed.html", "<pre>Traceback (most recent call last):\n  boom</pre>")
    _page(root / "book" / "bad_tex.html",
          '<span class="math">\\(\\begin{nosuchenv} x \\end{nosuchenv}\\)</span>', head=local)
    _page(root / "_static" / "ignored.html", '<img src="nowhere.png">')
    return check_rendered_book(root, screenshots=root.parent / f"{root.name}-shots"), root


def test_every_page_but_sphinx_machinery_is_checked(report):
    result, root = report
    assert set(result["pages"]) == {p.relative_to(root).as_posix() for p in book_pages(root)}
    assert "_static/ignored.html" not in result["pages"] and len(result["pages"]) == 8


def test_a_page_with_typeset_maths_and_loaded_images_passes(report):
    result, _ = report
    assert "index.html" not in result["problems"]
    assert "book/maths.html" not in result["problems"], result["problems"].get("book/maths.html")
    seen = result["pages"]["book/maths.html"]
    assert seen["maths"] == 2 and seen["images"] == 1 and seen["tables"] == 1


def test_raw_maths_fails(report):
    problems = report[0]["problems"]["book/raw_maths.html"]
    assert any("did not load" in p for p in problems)
    assert any("raw maths" in p and "g_i" in p for p in problems)


def test_mathjax_from_the_network_fails(report):
    problems = report[0]["problems"]["book/cdn_maths.html"]
    assert any("loads from the network" in p for p in problems)
    assert any("raw maths" in p for p in problems)


def test_a_raw_markdown_table_fails(report):
    problems = report[0]["problems"]["book/raw_table.html"]
    assert sum("raw Markdown table" in p for p in problems) == 3  # header, em-dash delimiter, row


def test_a_broken_image_fails(report):
    assert report[0]["problems"]["book/missing.html"] == ["image not shown: nowhere.png"]


def test_a_traceback_fails(report):
    assert any("Traceback" in p for p in report[0]["problems"]["book/failed.html"])


def test_a_mathjax_error_fails(report):
    assert any("MathJax error" in p for p in report[0]["problems"]["book/bad_tex.html"])


def test_a_full_page_screenshot_is_saved_per_page(report):
    result, root = report
    for name, seen in result["pages"].items():
        shot = Path(seen["screenshot"])
        assert shot == root.parent / f"{root.name}-shots" / Path(name).with_suffix(".png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_a_book_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.html"):
        check_rendered_book(tmp_path)
