"""Open every page of a built book in headless Chromium and report what a reader would see broken.

The HTML that Jupyter Book writes can be valid and still read badly: a Markdown table that was never
parsed stays a paragraph of pipes, an equation whose MathJax did not load stays ``\\(g_i\\)``, an image
may not decode. :func:`check_rendered_book` looks at each page after the browser has laid it out, as a
reader would, and saves a full-page screenshot of it, so that a person can look too.

A page fails when

- it does not load (no title or no ``main``/``article`` element);
- it has maths but MathJax is missing, loads from the network, does not finish
  (``MathJax.startup.promise``), or reports an error (``mjx-merror``); or, once it has finished, a text
  node outside code still holds ``\\(``, ``\\[`` or ``$$``;
- a text node outside code holds Markdown table syntax: a delimiter row (``|---|:--:|``, also with the
  dashes that smart quotes turn into en and em dashes) or a row ``| a | b |``;
- an image did not load or decode (``naturalWidth == 0``);
- the page shows an executed cell's error: a traceback output, a Sphinx system message or unresolved
  reference, or the text of a Python exception (:data:`ERROR_MARKERS`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: Text that betrays a failed cell in a rendered notebook page.
ERROR_MARKERS = ("Traceback (most recent call last)", "PapermillExecutionError", "NameError:",
                 "ModuleNotFoundError:", "ValueError:", "RuntimeError:", "AssertionError")
#: Elements whose text is shown as written (code) or is not text at all; they are not searched.
_VERBATIM = "pre, code, kbd, samp, script, style, textarea, noscript, svg, mjx-container, .highlight"
#: Pages of Sphinx's own machinery, not of the book.
_SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
#: How long MathJax and the images may take on one page.
_WAIT_S = 60

# Raw maths and raw tables in the text nodes a reader sees. A delimiter cell is dashes between
# optional colons; Sphinx's smart quotes turn "---" into an em dash and "--" into an en dash.
_TEXT_PROBE = r"""
const skip = arguments[0];
const cell = "\\s*:?[-\u2013\u2014]+:?\\s*";
const delimiter = new RegExp(`^\\s*\\|?${cell}(\\|${cell})+\\|?\\s*$`);
const row = /^\s*\|([^|\n]*\|){2,}\s*$/;
const maths = /\\\(|\\\[|\$\$/;
const found = {maths: [], tables: []};
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const parent = node.parentElement;
  if (!parent || parent.closest(skip)) continue;
  const text = node.nodeValue;
  if (maths.test(text)) found.maths.push(text.trim().slice(0, 60));
  for (const line of text.split("\n")) {
    if (delimiter.test(line) || row.test(line)) found.tables.push(line.trim().slice(0, 60));
  }
}
return found;
"""

# Wait for MathJax's first typeset where the page has maths, then count what it made.
_MATHJAX_PROBE = """
const done = arguments[arguments.length - 1];
const scripts = Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s));
const state = {has_maths: !!document.querySelector(".math, mjx-container"), scripts: scripts};
const mj = window.MathJax;
if (!mj || !mj.startup || !mj.startup.promise) { done({...state, loaded: false}); return; }
mj.startup.promise.then(
  () => done({...state, loaded: true, typeset: document.querySelectorAll("mjx-container").length,
              errors: Array.from(document.querySelectorAll("mjx-merror")).map(e => e.textContent)}),
  (err) => done({...state, loaded: true, failed: String(err)}));
"""

# Load lazy images now and wait until every image has loaded or failed.
_IMAGE_PROBE = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach(i => { if (i.loading === "lazy") i.loading = "eager"; });
Promise.all(images.map(i => i.complete ? null : new Promise(r => {
  i.addEventListener("load", r); i.addEventListener("error", r); }))).then(() => done(
    images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"))));
"""

_ERROR_PROBE = """
return {traceback: document.querySelectorAll(".output.traceback, .output.error").length,
        sphinx: Array.from(document.querySelectorAll(".system-message, .problematic"))
                     .map(e => e.textContent.trim().slice(0, 60)),
        text: document.body ? document.body.innerText : ""};
"""


def bundled_mathjax() -> Path:
    """The ``tex-chtml.js`` of the MathJax 3 that the book serves (PyPI ``sphinx-mathjax-offline``).

    Raises:
        FileNotFoundError: if the package is not installed (it comes with the ``book`` extra).
    """
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("sphinx-mathjax-offline is not installed (pip install -e '.[book]')")
    return Path(spec.origin).parent / "static" / "mathjax" / "tex-chtml.js"


def book_pages(html_dir: str | Path) -> list[Path]:
    """The pages of a built book: every ``.html`` file but Sphinx's index/search pages and ``_*`` folders."""
    html_dir = Path(html_dir)
    return sorted(p for p in html_dir.rglob("*.html") if p.name not in _SKIP_PAGES
                  and not any(part.startswith("_") for part in p.relative_to(html_dir).parts))


def _maths_problems(state: dict) -> list[str]:
    """What the MathJax probe's answer says is wrong."""
    remote = [s for s in state["scripts"] if s.startswith(("http:", "https:"))]
    found = [f"MathJax loads from the network: {s}" for s in remote]
    if not state["loaded"]:
        if state["has_maths"]:
            found.append("the page has maths but MathJax did not load")
        return found
    if "failed" in state:
        found.append(f"MathJax failed: {state['failed']}")
    found += [f"MathJax error: {e}" for e in state.get("errors", [])]
    return found


def _screenshot(driver, path: Path, width: int = 1280) -> None:
    """A PNG of the whole page: the viewport is made as tall as the page for the shot, then restored."""
    height = int(driver.execute_script("return Math.max(document.documentElement.scrollHeight, "
                                       "document.body ? document.body.scrollHeight : 0, 1);"))
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _check_page(driver) -> tuple[list[str], dict]:
    """The problems of one loaded page, and what it holds (images, typeset equations, HTML tables)."""
    from selenium.common.exceptions import TimeoutException

    found = []
    if not driver.title or not driver.execute_script("return !!document.querySelector('main, article');"):
        found.append("page did not load (no title or main article)")
    try:
        state = driver.execute_async_script(_MATHJAX_PROBE)
        found += _maths_problems(state)
    except TimeoutException:
        state = {}
        found.append(f"MathJax did not finish within {_WAIT_S} s")
    text = driver.execute_script(_TEXT_PROBE, _VERBATIM)
    found += [f"raw maths in the text: {t!r}" for t in text["maths"]]
    found += [f"raw Markdown table in the text: {t!r}" for t in text["tables"]]
    try:
        broken = driver.execute_async_script(_IMAGE_PROBE)
    except TimeoutException:
        broken = ["(images still loading after the wait)"]
    found += [f"image not shown: {src}" for src in broken]
    errors = driver.execute_script(_ERROR_PROBE)
    if errors["traceback"]:
        found.append(f"{errors['traceback']} error output(s) of executed cells")
    found += [f"Sphinx error in the page: {t!r}" for t in errors["sphinx"]]
    found += [f"error in the output: {m}" for m in ERROR_MARKERS if m in errors["text"]]
    seen = {"images": int(driver.execute_script("return document.images.length;")),
            "maths": int(state.get("typeset", 0)),
            "tables": int(driver.execute_script("return document.querySelectorAll('main table').length;"))}
    return found, seen


def check_rendered_book(html_dir: str | Path = "_build/html", screenshots: str | Path | None = None,
                        chromium: str = "/usr/bin/chromium",
                        chromedriver: str = "/usr/bin/chromedriver") -> dict[str, dict]:
    """Open every page of a built book in headless Chromium and report what a reader would see broken.

    See the module docstring for what fails a page.

    Args:
        html_dir: the ``_build/html`` folder of ``jupyter-book build``.
        screenshots: folder for one full-page PNG per page, named like the page (``book/data.html`` ->
            ``book/data.png``); by default ``screenshots/`` beside ``html_dir`` (``_build/screenshots``).
        chromium, chromedriver: Debian's ``chromium`` and ``chromium-driver`` binaries.

    Returns:
        ``pages``: every page checked (relative path) -> ``images``, ``maths`` (typeset equations),
        ``tables`` (HTML tables in the main content) and ``screenshot`` (its path); ``problems``: page ->
        list of problems, only for pages that have some (empty: the book is fine).

    Raises:
        FileNotFoundError: if ``html_dir`` has no ``index.html`` or the browser is not installed.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    html_dir = Path(html_dir).resolve()
    if not (html_dir / "index.html").is_file():
        raise FileNotFoundError(f"{html_dir} has no index.html: build the book first")
    for binary in (chromium, chromedriver):
        if not Path(binary).is_file():
            raise FileNotFoundError(f"{binary} is missing (apt-get install chromium chromium-driver)")
    shots = Path(screenshots) if screenshots is not None else html_dir.parent / "screenshots"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_script_timeout(_WAIT_S)
    problems: dict[str, list[str]] = {}
    checked: dict[str, dict] = {}
    try:
        for page in book_pages(html_dir):
            name = page.relative_to(html_dir).as_posix()
            driver.get(page.as_uri())
            found, seen = _check_page(driver)
            shot = shots / Path(name).with_suffix(".png")
            _screenshot(driver, shot)
            checked[name] = {**seen, "screenshot": str(shot)}
            if found:
                problems[name] = found
    finally:
        driver.quit()
    return {"pages": checked, "problems": problems}
