"""The package's layout: imports only run downhill, no cycles, modules of about 300 lines, and a profile is
resolved in one module. Each check is also shown failing on a crafted package."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from import_graph import cycles, imports, layering, oversized, upward_edges

PACKAGE = Path(__file__).resolve().parents[1] / "mmdis"

#: The layers of mmdis, bottom first: a module may import from a lower layer or from its own unit.
LAYERS = layering([
    ["mmdis.conventions", "mmdis.runtime", "mmdis.profiles"],
    ["mmdis.data", "mmdis.models"],
    ["mmdis.losses", "mmdis.inference", "mmdis.metrics"],
    ["mmdis.training"],
    ["mmdis.plotting"],
    ["mmdis.evaluation", "mmdis.inspection"],
    ["mmdis.pipeline", "mmdis.book", "mmdis.book_check", "mmdis.study"],
    ["mmdis.commands"],
    ["mmdis.cli"],
])
#: "Around 300 lines" (STYLE.md): the longest module may run a little over.
MAX_LINES = 320


def test_mmdis_imports_only_run_downhill():
    assert upward_edges(imports(PACKAGE), LAYERS) == []


def test_mmdis_has_no_import_cycle():
    assert cycles(imports(PACKAGE)) == []


def test_mmdis_modules_are_about_300_lines():
    assert oversized(PACKAGE, MAX_LINES) == []


_PROFILE_SWITCH = (
    re.compile(r'(^|[{,])\s*"(smoke|cpu|paper)"\s*:'),  # a table keyed by profile names
    re.compile(r'profile\w*\s*(==|!=|\bin\b)\s*[(\[{]?\s*"(smoke|cpu|paper)"', re.IGNORECASE),
    re.compile(r'PROFILES\s*\[\s*"(smoke|cpu|paper)"\s*\]'),
)


def profile_switches(text: str) -> list[str]:
    """Lines of ``text`` that key a table by a profile name or compare a profile with a name."""
    return [line.strip() for line in text.splitlines()
            if any(p.search(line.split("#")[0]) for p in _PROFILE_SWITCH)]


def test_profile_names_are_switched_on_in_one_module():
    """Only mmdis/profiles.py may hold a table keyed by profile names or compare against one."""
    offenders = [f"{path.relative_to(PACKAGE)}: {line}" for path in sorted(PACKAGE.rglob("*.py"))
                 if path.name != "profiles.py" for line in profile_switches(path.read_text())]
    assert offenders == []


def test_profile_switches_are_found():
    bad = 'SPACING = {"smoke": 3.0, "cpu": 3.0}\nif profile == "paper":\n    x = PROFILES["cpu"]\n'
    assert len(profile_switches(bad)) == 3
    fine = 'if device.type == "cpu":\n    x = make_config(profile, method)  # "paper": the default\n'
    assert profile_switches(fine) == []


# ------------------------------------------------------------------------------- the checks fail
def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_a_function_local_import_that_climbs_is_found(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "low.py": "def f():\n    from pkg.high import g\n    return g\n",
        "high.py": "from pkg.low import f\n\ndef g():\n    return f\n",
    })
    layers = layering([["pkg.low"], ["pkg.high"]])
    assert upward_edges(imports(pkg), layers) == [("pkg.low", "pkg.high")]
    assert cycles(imports(pkg)) == [["pkg.high", "pkg.low", "pkg.high"]]


def test_imports_between_units_of_one_layer_and_of_submodules_are_read(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/x.py": "from pkg.b import y\n",
        "a/z.py": "from pkg.a import x\n",
        "b/__init__.py": "",
        "b/y.py": "",
    })
    graph = imports(pkg)
    assert graph["pkg.a.x"] == {"pkg.b.y"} and graph["pkg.a.z"] == {"pkg.a.x"}
    layers = layering([["pkg.a", "pkg.b"]])
    assert upward_edges(graph, layers) == [("pkg.a.x", "pkg.b.y")]  # same layer, other unit
    with pytest.raises(KeyError, match="no declared layer"):
        upward_edges(graph, layering([["pkg.a"]]))


def test_an_oversized_module_is_found(tmp_path):
    pkg = _package(tmp_path, {"__init__.py": "", "big.py": "x = 1\n" * 12})
    assert oversized(pkg, 10) == [(str(pkg / "big.py"), 12)]
    assert oversized(pkg, 12) == []
