"""The registry of layouts: which layout a dataset folder has (:func:`detect_layout`) and its cases
(:func:`discover_cases`), looked up in :data:`REGISTRY` (one :class:`~mmdis.data.layouts.specs.LayoutSpec`
per layout; adding a layout is one entry in :data:`~mmdis.data.layouts.specs.SPECS`)."""

from __future__ import annotations

from pathlib import Path

from mmdis.data.io import CaseError
from mmdis.data.layouts.specs import SPECS, LayoutSpec
from mmdis.data.layouts.walk import CaseFiles, case_folders, subdirs, visible

#: Layout name -> its spec.
REGISTRY: dict[str, LayoutSpec] = {spec.name: spec for spec in SPECS}
#: The names of the layouts (``--layout``).
LAYOUTS: tuple[str, ...] = tuple(REGISTRY)
#: What each layout's files look like, for the message of a folder that matches none.
_EXPECT = "; ".join(f"{spec.name}: {spec.files}" for spec in SPECS)


def get_layout(name: str) -> LayoutSpec:
    """The spec of the layout called ``name``.

    Raises:
        ValueError: naming the unknown layout and the known ones.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; expected one of {list(LAYOUTS)}") from None


def _match_layout(root: Path) -> str | None:
    """The layout of ``root``: one its folder itself declares; else the first layout with cases directly
    under it, in the order of its sub-folders; else the first layout with grouped cases."""
    if spec := next((s for s in SPECS if s.is_dataset(root)), None):
        return spec.name
    flat = [s for s in SPECS if not s.grouped]
    for d in subdirs(root):
        if spec := next((s for s in flat if s.recognises(d)), None):
            return spec.name
    grouped = (s for s in SPECS if s.grouped and case_folders(root, s.recognises, grouped=True))
    return next((s.name for s in grouped), None)


def detect_layout(root: str | Path) -> str:
    """Name the layout of a dataset folder (one of :data:`LAYOUTS`).

    Raises:
        CaseError: the folder does not exist or matches no layout; the message lists what the folder
            holds and what each layout expects.
    """
    root = Path(root)
    if not root.is_dir():
        raise CaseError(f"dataset folder {root} does not exist")
    if layout := _match_layout(root):
        return layout
    entries = visible(root.iterdir())
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:8])
    found = f"it holds {len(entries)} entries ({shown}{', ...' if len(entries) > 8 else ''})"
    hint = ""
    if single := next((s.name for s in SPECS if s.recognises(root)), None):
        hint = f"; {root.name} looks like a single {single} case: pass its parent folder"
    elif inner := [d.name for d in subdirs(root) if _match_layout(d)]:
        hint = f"; the sub-folder {inner[0]} looks like a dataset: pass it instead"
    raise CaseError(
        f"{root} matches no known dataset layout: {found if entries else 'it is empty'}{hint}. "
        f"Expected one of: {_EXPECT}"
    )


def discover_cases(root: str | Path, layout: str | None = None) -> list[CaseFiles]:
    """List the cases of a dataset folder, sorted by case id.

    Args:
        root: dataset folder.
        layout: one of :data:`LAYOUTS`, or ``None`` to detect it.

    Returns:
        One :class:`~mmdis.data.layouts.walk.CaseFiles` per case; a case lacking some files is listed
        all the same.

    Raises:
        CaseError: the layout cannot be detected, or two cases share an id.
        ValueError: ``layout`` is not one of :data:`LAYOUTS`.
    """
    root = Path(root)
    spec = get_layout(layout) if layout is not None else REGISTRY[detect_layout(root)]
    cases = sorted(spec.cases(root), key=lambda c: c.case_id)
    for a, b in zip(cases, cases[1:]):
        if a.case_id == b.case_id:
            where = [str(next(iter(c.images.values()), c.label)) for c in (a, b)]
            raise CaseError(f"case {a.case_id} appears twice in {root}: {where[0]} and {where[1]}")
    return cases
