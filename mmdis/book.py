"""Execute the tutorial notebooks with papermill, for the book to render.

The sources in ``notebooks/`` are stored without outputs. :func:`execute_notebooks` runs each one with
papermill, injecting the parameters of a profile (``profile``, ``work_dir``, ``results_dir``, ``device``,
``seed``), and writes the executed copy to ``book/notebooks/``, which ``_toc.yml`` lists and Jupyter Book
renders without executing anything again. The notebooks share one reproduction (``work_dir``): the first
one that calls :func:`mmdis.pipeline.reproduce` trains and evaluates, the others reuse its results. An
executed copy is written to a temporary file and renamed, so a failed notebook never leaves a
half-executed page behind.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from mmdis.profiles import get_profile
from mmdis.runtime.files import atomic_path

#: Where the executed copies go, relative to the repository root (``_toc.yml`` points there).
EXECUTED_DIR = Path("book") / "notebooks"


def notebook_sources(src: str | Path = "notebooks") -> list[Path]:
    """The numbered notebooks (``01_*.ipynb`` ...) of ``src``, in order.

    Raises:
        FileNotFoundError: if ``src`` has none.
    """
    paths = sorted(p for p in Path(src).glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {src}")
    return paths


def profile_parameters(profile: str, root: str | Path = ".", device: str = "auto", seed: int = 0,
                       models: str = "auto") -> dict:
    """The papermill parameters of a profile: one work and one results folder per profile, as absolute
    paths so that they do not depend on the folder the kernel runs in, where the models come from
    (``models``, see :mod:`mmdis.pipeline`), plus the profile's own
    :attr:`~mmdis.profiles.Profile.notebook` parameters."""
    root = Path(root).resolve()
    return {"profile": profile, "work_dir": str(root / "work" / profile),
            "results_dir": str(root / "results" / profile), "device": device, "seed": seed,
            "model_source": models, **get_profile(profile).notebook}


def execute_notebooks(profile: str = "cpu", src: str | Path = "notebooks", dst: str | Path = EXECUTED_DIR,
                      only: list[str] | None = None, device: str = "auto", seed: int = 0,
                      root: str | Path = ".", timeout: int | None = None,
                      progress: bool = True, models: str = "auto") -> list[dict]:
    """Run every notebook of ``src`` with papermill into ``dst``.

    Args:
        profile: the training profile the notebooks load or train (``smoke``, ``cpu``, ``paper``).
        src: folder of the notebook sources.
        dst: folder of the executed copies.
        only: run only notebooks whose name starts with one of these prefixes (e.g. ``["01", "05"]``).
        device, seed: passed to the notebooks.
        root: the repository root (work and results folders go under it).
        timeout: per-cell timeout in seconds (``None``: none).
        progress: a progress bar over notebooks.
        models: ``auto``, ``shipped`` or ``retrain``: where the notebooks' reproduction takes its networks.

    Returns:
        Per notebook: ``name``, ``output`` and ``seconds``.

    Raises:
        papermill.PapermillExecutionError: naming the notebook and the cell that failed.
    """
    import papermill

    params = profile_parameters(profile, root, device, seed, models)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    sources = notebook_sources(src)
    if only:
        sources = [p for p in sources if any(p.name.startswith(o) for o in only)]
    done = []
    for path in tqdm(sources, desc=f"notebooks ({profile})", unit="nb", disable=not progress):
        out = dst / path.name
        tick = time.perf_counter()
        with atomic_path(out, suffix=".ipynb") as tmp:
            papermill.execute_notebook(str(path), str(tmp), parameters=params, cwd=str(path.parent),
                                       progress_bar=False, execution_timeout=timeout, kernel_name="python3")
        done.append({"name": path.name, "output": str(out), "seconds": round(time.perf_counter() - tick, 1)})
    return done


#: Text that betrays a failed cell in a rendered notebook page.
ERROR_MARKERS = ("Traceback (most recent call last)", "PapermillExecutionError", "NameError:",
                 "ModuleNotFoundError:", "ValueError:", "RuntimeError:", "AssertionError")


def check_rendered_book(html_dir: str | Path = "_build/html", chromium: str = "/usr/bin/chromium",
                        chromedriver: str = "/usr/bin/chromedriver") -> dict[str, list[str]]:
    """Open every page of a built book in headless Chromium and report what a reader would see broken.

    A page fails when it does not load (no title or no main article), when an image is missing or did
    not decode (``naturalWidth == 0``), or when its text shows a Python error from an executed cell.

    Args:
        html_dir: the ``_build/html`` folder of ``jupyter-book build``.
        chromium, chromedriver: Debian's ``chromium`` and ``chromium-driver`` binaries.

    Returns:
        ``pages``: every page checked (relative path) -> its number of images; ``problems``: page -> list
        of problems, only for pages that have some (empty: the book is fine).

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
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    pages = sorted(p for p in html_dir.rglob("*.html") if p.name not in skip
                   and not any(part.startswith("_") for part in p.relative_to(html_dir).parts))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    problems: dict[str, list[str]] = {}
    checked: dict[str, int] = {}
    try:
        for page in pages:
            name = str(page.relative_to(html_dir))
            driver.get(page.as_uri())
            found = []
            article = driver.execute_script("return !!document.querySelector('main, article');")
            if not driver.title or not article:
                found.append("page did not load (no title or main article)")
            broken = driver.execute_script(
                "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                ".map(i => i.getAttribute('src'));")
            found += [f"image not shown: {src}" for src in broken]
            text = driver.execute_script("return document.body ? document.body.innerText : '';")
            found += [f"error in the output: {m}" for m in ERROR_MARKERS if m in text]
            checked[name] = int(driver.execute_script("return document.images.length;"))
            if found:
                problems[name] = found
    finally:
        driver.quit()
    return {"pages": checked, "problems": problems}
