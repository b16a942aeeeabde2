"""Execute the tutorial notebooks with papermill, for the book to render.

The sources in ``notebooks/`` are stored without outputs. :func:`execute_notebooks` runs each one with
papermill, injecting the parameters of a profile (``profile``, ``work_dir``, ``results_dir``, ``device``,
``seed``), and writes the executed copy to ``book/notebooks/``, which ``_toc.yml`` lists and Jupyter Book
renders without executing anything again. The notebooks share one reproduction (``work_dir``): the first
one that calls :func:`mmdis.pipeline.reproduce` trains and evaluates, the others reuse its results. An
executed copy is written to a temporary file and renamed, so a failed notebook never leaves a
half-executed page behind.

Inside a notebook, :func:`print_config` is the one setup cell's report (versions, device, threads), and
:func:`html_table` shows a table as an HTML table, which the book renders as a table whatever the
Markdown flavour of its outputs. The browser check of the rendered book is :mod:`mmdis.book_check`.

The module is also a Sphinx extension (``_config.yml`` lists it): the book renders the executed copies,
which are not in the repository, so the theme's Colab buttons would open ``book/notebooks/...``;
:func:`source_notebook_url` points them at the sources in ``notebooks/`` instead.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from tqdm.auto import tqdm

if TYPE_CHECKING:
    import torch

from mmdis.profiles import get_profile
from mmdis.runtime.files import atomic_path

#: Where the executed copies go, relative to the repository root (``_toc.yml`` points there).
EXECUTED_DIR = Path("book") / "notebooks"
#: Where the notebook sources are, relative to the repository root.
SOURCE_DIR = Path("notebooks")


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
                       models: str = "auto", relative_to: str | Path | None = None) -> dict:
    """The papermill parameters of a profile: one work and one results folder per profile, where the
    models come from (``models``, see :mod:`mmdis.pipeline`), plus the profile's own
    :attr:`~mmdis.profiles.Profile.notebook` parameters.

    The folders are absolute, or relative to ``relative_to`` (the folder the kernel runs in) when it is
    given: the executed pages then show ``"../work/cpu"``, never a path of the machine that built them.
    """
    root = Path(root).resolve()
    folders = {"work_dir": root / "work" / profile, "results_dir": root / "results" / profile}
    if relative_to is not None:
        folders = {k: Path(os.path.relpath(v, Path(relative_to).resolve())) for k, v in folders.items()}
    return {"profile": profile, **{k: v.as_posix() for k, v in folders.items()}, "device": device,
            "seed": seed, "model_source": models, **get_profile(profile).notebook}


#: The tag that collapses a notebook's default parameters in the book, once papermill has injected the
#: values the page was run with below them (myst-nb's ``hide-cell``).
HIDE_DEFAULTS_TAG = "hide-cell"


def collapse_default_parameters(nb) -> int:
    """Tag the default ``parameters`` cell of an executed notebook with :data:`HIDE_DEFAULTS_TAG` when
    papermill injected parameters after it, so that the page shows the parameters once (the injected ones)
    and keeps the defaults one click away. Returns the number of cells tagged."""
    cells = nb["cells"]
    tags = [c.get("metadata", {}).get("tags", []) for c in cells]
    if not any("injected-parameters" in t for t in tags):
        return 0
    tagged = 0
    for cell, cell_tags in zip(cells, tags):
        if "parameters" in cell_tags and HIDE_DEFAULTS_TAG not in cell_tags:
            cell.setdefault("metadata", {})["tags"] = [*cell_tags, HIDE_DEFAULTS_TAG]
            tagged += 1
    return tagged


def execute_notebooks(profile: str = "cpu", src: str | Path = "notebooks", dst: str | Path = EXECUTED_DIR,
                      only: list[str] | None = None, device: str = "auto", seed: int = 0,
                      root: str | Path = ".", timeout: int | None = None,
                      progress: bool = True, models: str = "auto") -> list[dict]:
    """Run every notebook of ``src`` with papermill into ``dst``.

    The folders are injected relative to each notebook's folder (where its kernel runs), and the default
    parameters cell is collapsed under the injected one (:func:`collapse_default_parameters`).

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
    import nbformat
    import papermill

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    sources = notebook_sources(src)
    if only:
        sources = [p for p in sources if any(p.name.startswith(o) for o in only)]
    done = []
    for path in tqdm(sources, desc=f"notebooks ({profile})", unit="nb", disable=not progress):
        out = dst / path.name
        tick = time.perf_counter()
        params = profile_parameters(profile, root, device, seed, models, relative_to=path.parent)
        with atomic_path(out, suffix=".ipynb") as tmp:
            papermill.execute_notebook(str(path), str(tmp), parameters=params, cwd=str(path.parent),
                                       progress_bar=False, execution_timeout=timeout, kernel_name="python3")
            executed = nbformat.read(tmp, as_version=4)
            collapse_default_parameters(executed)
            nbformat.write(executed, tmp)
        done.append({"name": path.name, "output": str(out), "seconds": round(time.perf_counter() - tick, 1)})
    return done


#: The packages whose versions :func:`print_config` reports, in that order.
CONFIG_PACKAGES = ("mmdis", "torch", "numpy", "scipy", "pandas", "matplotlib", "monai", "nibabel")


def config_lines(device: torch.device | str = "cpu", profile: str | None = None) -> list[str]:
    """The lines of :func:`print_config`: ``name: value``, aligned."""
    import torch  # here, so that the Sphinx extension below loads without torch

    device = torch.device(device)
    rows = [("python", f"{platform.python_version()} ({sys.platform})")]
    for name in CONFIG_PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    rows += [("device", f"{device}{gpu}"), ("torch threads", str(torch.get_num_threads())),
             ("CPU cores", str(os.cpu_count()))]
    if profile is not None:
        rows.append(("profile", profile))
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" for k, v in rows]


def print_config(device: torch.device | str = "cpu", profile: str | None = None) -> None:
    """Print what a notebook runs with: Python and package versions, the device, torch's threads and the
    CPU cores, and the profile (like MONAI's ``print_config``). ``device`` is the one
    :func:`mmdis.runtime.device.resolve_device` chose."""
    print("\n".join(config_lines(device, profile)))


def html_table(table: pd.DataFrame, floatfmt: str = ".2f", caption: str | None = None):
    """A DataFrame as an HTML table for a notebook's output (``IPython.display.HTML``).

    Numbers are written with ``floatfmt``, missing values as empty cells; the table keeps pandas'
    ``dataframe`` class, so the book styles it like every other DataFrame output. Prefer it to Markdown
    text, which the book's output renderer (CommonMark) does not parse as a table.
    """
    from IPython.display import HTML

    numbers = [c for c in table.columns if pd.api.types.is_float_dtype(table[c])]
    styler = table.style.format(f"{{:{floatfmt}}}", subset=numbers, na_rep="")
    if caption:
        styler = styler.set_caption(caption)
    return HTML(styler.set_table_attributes('class="dataframe"').to_html())


# ------------------------------------------------------------------------------ Sphinx extension
def source_notebook_url(url: str) -> str:
    """A launch URL that names an executed copy (``.../blob/main/book/notebooks/05_x.ipynb``), pointed at
    the notebook's source (``.../blob/main/notebooks/05_x.ipynb``); other URLs are returned unchanged."""
    return url.replace(f"/{EXECUTED_DIR.as_posix()}/", f"/{SOURCE_DIR.as_posix()}/", 1)


def _launch_buttons_to_sources(app, pagename, templatename, context, doctree) -> None:
    # Runs after sphinx-book-theme has put its launch buttons into the page context.
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []) if isinstance(group, dict) else []:
            if "url" in button:
                button["url"] = source_notebook_url(button["url"])


def setup(app) -> dict:
    """Sphinx entry point: rewrite the launch buttons of every page (see :func:`source_notebook_url`)."""
    app.connect("html-page-context", _launch_buttons_to_sources, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
