"""The notebook sources follow the book's rules and its house style (the notebooks themselves run under
nbval).

Each numbered notebook: a title ``# NN · Title``, a Colab cell first, a ``## Parameters`` heading right
before the one ``parameters`` cell with small (smoke) defaults, then one setup cell that chooses the device
with :func:`mmdis.runtime.device.resolve_device` and reports it with :func:`mmdis.book.print_config`; no
path outside the repository, no stale ``analysis.*`` name, no Markdown line starting with ``%`` (a MyST
comment), no table written as Markdown text; no stored outputs except in cells marked
``# NBVAL_CHECK_OUTPUT``, no execution counts or widget state; ``_toc.yml`` lists every executed copy.
Every style check is also shown failing on a crafted notebook.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import nbformat
import pytest

from mmdis.book import (
    EXECUTED_DIR,
    HIDE_DEFAULTS_TAG,
    collapse_default_parameters,
    notebook_sources,
    profile_parameters,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_sources(ROOT / "notebooks")
REQUIRED = {"profile": "smoke", "work_dir": "../work/smoke", "results_dir": "../results/smoke",
            "device": "auto", "seed": 0}


def _params(cell) -> dict:
    values = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def _resolves(dotted: str) -> bool:
    """Whether ``mmdis.a.b.name`` is a module or an attribute of one (``Class.method`` included)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def style_problems(nb, folder: Path = ROOT / "notebooks", root: Path = ROOT) -> list[str]:
    """What breaks the house style in a notebook read from ``folder`` of a repository at ``root``."""
    found = []
    cells, number = nb.cells, Path(nb.metadata.get("path", "00")).name[:2]
    if not re.match(r"# \d\d · \S", cells[0].source):
        found.append(f"title is not '# NN · Title': {cells[0].source.splitlines()[0]!r}")
    elif number.isdigit() and not cells[0].source.startswith(f"# {number} · "):
        found.append(f"title number differs from the file's {number}")
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        return found + [f"{len(tagged)} parameters cells"]
    k = tagged[0]
    if not (cells[k - 1].cell_type == "markdown" and cells[k - 1].source.startswith("## Parameters")):
        found.append("no '## Parameters' heading right before the parameters cell")
    setup = cells[k + 1] if k + 1 < len(cells) else None
    if setup is None or not re.search(r"\bdev = resolve_device\(device\)", setup.source) \
            or "print_config(dev" not in setup.source:
        found.append("the cell after the parameters is not the setup cell (resolve_device, print_config)")
    code = [c for c in cells if c.cell_type == "code"]
    markdown = [c for c in cells if c.cell_type == "markdown"]
    for value in _params(cells[k]).values():
        if isinstance(value, str) and "/" in value and not (folder / value).resolve().is_relative_to(root):
            found.append(f"parameter path outside the repository: {value}")
    for cell in code:
        chooses = "torch.cuda.is_available()" in cell.source or "resolve_device(" in cell.source
        if chooses and cell is not setup:
            found.append("the device is chosen outside the setup cell")
        if re.search(r"table2_markdown\(|\.to_markdown\(", cell.source):
            found.append("a table shown as Markdown text (use mmdis.book.html_table)")
        if re.search(r"['\"](\.\./){2,}|['\"]/(work|home|tmp)/", cell.source):
            found.append(f"a path outside the repository in: {cell.source[:50]!r}")
    for cell in markdown:
        found += [f"stale name {m}" for m in re.findall(r"`(analysis\.\w+)", cell.source)]
        names = re.findall(r"`(mmdis(?:\.\w+)+)", cell.source)
        found += [f"unresolved name {m}" for m in names if not _resolves(m)]
        lines = cell.source.splitlines()
        found += [f"line starts with %: {line[:40]!r}" for line in lines if line.startswith("%")]
    return found


def _read(path: Path):
    nb = nbformat.read(path, as_version=4)
    nb.metadata["path"] = path.name
    return nb


def test_there_are_eight_numbered_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07", "08"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.lstrip().startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "google.colab" in code[0].source
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    params = _params(tagged[0])
    assert {k: params.get(k) for k in REQUIRED} == REQUIRED
    assert set(profile_parameters("cpu")) <= set(params)  # papermill can set every injected name
    for cell in code:
        assert cell.execution_count is None
        if "NBVAL_CHECK_OUTPUT" not in cell.source:
            assert not cell.outputs, f"stored output in: {cell.source[:60]}"
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_house_style(path):
    assert style_problems(_read(path)) == []


def test_toc_lists_every_executed_notebook():
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert f"{EXECUTED_DIR.as_posix()}/{path.stem}" in toc


# ------------------------------------------------------------------------------- the checks fail
@pytest.fixture()
def good():
    """The first notebook, whose style is checked above; each test below breaks one rule of it."""
    return _read(NOTEBOOKS[0])


def _cell(nb, text):
    return next(c for c in nb.cells if text in c.source)


@pytest.mark.parametrize("breakage, message", [
    (lambda nb: setattr(nb.cells[0], "source", "# 1. Data"), "title"),
    (lambda nb: nb.cells.pop(2), "Parameters' heading"),
    (lambda nb: setattr(_cell(nb, "print_config"), "source", "import torch\ndev = 'cpu'"), "setup cell"),
    (lambda nb: nb.cells.append(nbformat.v4.new_code_cell('d = "cuda" if torch.cuda.is_available() else 0')),
     "device is chosen"),
    (lambda nb: nb.cells.append(nbformat.v4.new_code_cell("display(Markdown(table.to_markdown()))")),
     "Markdown text"),
    (lambda nb: nb.cells.append(nbformat.v4.new_code_cell('x = read("../../shared/data")')), "outside"),
    (lambda nb: setattr(_cell(nb, "seed = 0"), "source", _cell(nb, "seed = 0").source + '\nx = "../../x"'),
     "parameter path outside"),
    (lambda nb: nb.cells.append(nbformat.v4.new_markdown_cell("`analysis.gate_maps` draws")), "stale name"),
    (lambda nb: nb.cells.append(nbformat.v4.new_markdown_cell("see `mmdis.plotting.nosuch`")), "unresolved"),
    (lambda nb: nb.cells.append(nbformat.v4.new_markdown_cell("a\n% not shown")), "starts with %"),
], ids=["title", "heading", "setup", "device", "markdown-table", "path", "parameter-path", "stale",
        "unresolved", "percent"])
def test_each_style_rule_fails_on_a_crafted_notebook(good, breakage, message):
    assert style_problems(good) == []
    breakage(good)
    problems = style_problems(good)
    assert any(message in p for p in problems), problems


def test_the_defaults_are_collapsed_once_papermill_injected_parameters():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'smoke'")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    assert collapse_default_parameters(nb) == 0  # nothing injected: the defaults are what ran
    injected = nbformat.v4.new_code_cell("profile = 'cpu'")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.append(injected)
    assert collapse_default_parameters(nb) == 1 and collapse_default_parameters(nb) == 0
    assert nb.cells[0].metadata["tags"] == ["parameters", HIDE_DEFAULTS_TAG]
    assert nb.cells[1].metadata["tags"] == ["injected-parameters"]


def test_injected_folders_are_relative_to_the_notebooks():
    params = profile_parameters("cpu", ROOT, relative_to=ROOT / "notebooks")
    assert params["work_dir"] == "../work/cpu" and params["results_dir"] == "../results/cpu"
    assert Path(profile_parameters("cpu", ROOT)["work_dir"]).is_absolute()
