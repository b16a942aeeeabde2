"""The notebook sources follow the book's rules (the notebooks themselves run under nbval).

Each numbered notebook: a title, one ``parameters`` cell with small (smoke) defaults, a Colab cell first,
no stored outputs except in cells marked ``# NBVAL_CHECK_OUTPUT``, no execution counts or widget state;
``_toc.yml`` lists every notebook's executed copy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from mmdis.book import EXECUTED_DIR, notebook_sources, profile_parameters

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


def test_there_are_seven_numbered_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]


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


def test_toc_lists_every_executed_notebook():
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert f"{EXECUTED_DIR.as_posix()}/{path.stem}" in toc
