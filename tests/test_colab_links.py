"""The Colab launch buttons and the install cell point at notebooks and a repository that exist.

The book renders the executed copies in ``book/notebooks/``, which are not in the repository; the theme
would send Colab there, so :func:`mmdis.book.source_notebook_url` (a Sphinx hook listed in ``_config.yml``)
points each button at the source in ``notebooks/``. The built pages are checked when ``_build/html``
exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
import yaml

from mmdis.book import EXECUTED_DIR, SOURCE_DIR, notebook_sources, source_notebook_url

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
NOTEBOOKS = notebook_sources(ROOT / SOURCE_DIR)
BUILT = ROOT / "_build" / "html"


def _colab_prefix() -> str:
    """``<colab_url>/github/<org>/<repo>/blob/<branch>/``, from ``_config.yml``."""
    org, repo = urlparse(CONFIG["repository"]["url"]).path.strip("/").split("/")[:2]
    colab = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{org}/{repo}/blob/{CONFIG['repository'].get('branch', 'main')}/"


def repository_path(url: str) -> Path:
    """The file of the repository that a Colab link opens.

    Raises:
        ValueError: if the link is not a Colab link into the configured repository and branch.
    """
    prefix = _colab_prefix()
    if not url.startswith(prefix):
        raise ValueError(f"{url} does not open {prefix}...")
    return Path(url.removeprefix(prefix))


def test_the_config_has_a_github_repository_and_colab_buttons():
    assert urlparse(CONFIG["repository"]["url"]).netloc == "github.com"
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert "mmdis.book" in CONFIG["sphinx"]["extra_extensions"]  # the hook that rewrites the buttons


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_the_install_cell_installs_the_configured_repository(path):
    install = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert "google.colab" in install.source
    found = re.search(r'REPOSITORY = "([^"]+)"', install.source)
    assert found and found.group(1) == CONFIG["repository"]["url"]
    assert "mmdis[book] @ git+{REPOSITORY}" in install.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_the_button_of_each_page_opens_its_source_notebook(path):
    # What sphinx-book-theme writes for the page book/notebooks/<name>, then the rewrite.
    theme_url = f"{_colab_prefix()}{EXECUTED_DIR.as_posix()}/{path.stem}.ipynb"
    target = repository_path(source_notebook_url(theme_url))
    assert target == SOURCE_DIR / path.name and (ROOT / target).is_file()


def test_the_rewrite_leaves_other_links_alone():
    url = "https://colab.research.google.com/github/o/r/blob/main/book/intro.md"
    assert source_notebook_url(url) == url
    with pytest.raises(ValueError, match="does not open"):
        repository_path("https://colab.research.google.com/github/other/repo/blob/main/notebooks/x.ipynb")


@pytest.mark.skipif(not (BUILT / "index.html").is_file(), reason="no built book (make html)")
def test_the_built_pages_launch_existing_notebooks():
    pages = {p: p.read_text(errors="replace") for p in (BUILT / EXECUTED_DIR).glob("*.html")}
    if not pages:
        pytest.skip("the built book has no notebook pages")
    for page, html in pages.items():
        links = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', html))
        assert len(links) == 1, f"{page.name}: Colab links {links}"
        target = repository_path(links.pop().replace("&amp;", "&"))
        assert target == SOURCE_DIR / f"{page.stem}.ipynb", page.name
        assert (ROOT / target).is_file(), f"{page.name} launches {target}, which is not in the repository"
