"""Readers for the dataset layouts of the field, detected automatically from a folder.

=============  =====================================================================  ==========
layout         files                                                                  labels
=============  =====================================================================  ==========
``brats2021``  ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` (BraTS 2018-2021)       0,1,2,4
``brats2023``  ``<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (BraTS 2023 GLI)         0,1,2,3
``msd``        ``imagesTr/<case>.nii.gz`` 4-D (FLAIR, T1w, T1gd, T2w), ``labelsTr/``   0,1,2,3
``brats2015``  ``[HGG|LGG/]<case>/VSD.Brain.XX.O.MR_<mod>.<id>/...mha`` and ``...OT``  0..4
=============  =====================================================================  ==========

``.nii`` is accepted wherever ``.nii.gz`` is. :func:`discover_cases` lists the files of every case (a
missing modality file simply leaves a gap, a missing label file makes the case unlabelled);
:func:`read_case` loads and validates one case into a :class:`~mmdis.data.io.RawCase` with canonical
labels (see :mod:`mmdis.conventions`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmdis.conventions import MODALITIES, NUM_MODALITIES, to_canonical
from mmdis.data.io import (
    CaseError,
    CorruptFileError,
    GeometryError,
    IntensityError,
    MissingModalityError,
    RawCase,
    check_same_geometry,
    load_mha,
    load_nifti,
)

LAYOUTS = ("brats2021", "brats2023", "msd", "brats2015")

#: File-name suffix of each canonical modality in the two NIfTI BraTS layouts.
_SUFFIX = {"brats2021": {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2"},
           "brats2023": {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}}
_SEP = {"brats2021": "_", "brats2023": "-"}
#: MSD Task01 channel order (dataset.json: FLAIR, T1w, t1gd, T2w) is the paper's modality order.
_MSD_CHANNELS = {m: i for i, m in enumerate(MODALITIES)}
_MSD_NAMES = {"flair": "flair", "t1": "t1", "t1w": "t1", "t1gd": "t1ce", "t1c": "t1ce", "t1ce": "t1ce",
              "t2": "t2", "t2w": "t2"}
# BraTS 2015 folders: VSD.Brain.XX.O.MR_T1c.54513. The dot after the sequence keeps T1 from matching T1c.
_MHA_MOD = re.compile(r"\.MR_(Flair|T1c|T1|T2)\.", re.IGNORECASE)
_MHA_KEY = {"flair": "flair", "t1": "t1", "t1c": "t1ce", "t2": "t2"}
_MHA_NAME = dict(zip(MODALITIES, ("Flair", "T1", "T1c", "T2")))
_EXPECT = (
    "brats2021: <case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz; "
    "brats2023: <case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz; "
    "msd: imagesTr/<case>.nii.gz (4-D) and labelsTr/<case>.nii.gz; "
    "brats2015: [HGG|LGG/]<case>/VSD.Brain.XX.O.MR_{Flair,T1,T1c,T2}.<id>/*.mha"
)


@dataclass
class CaseFiles:
    """Where one case's volumes are.

    Attributes:
        case_id: identifier (the case folder's name, or the MSD file name without extension).
        layout: one of :data:`LAYOUTS`.
        images: canonical modality -> file, only for files that exist. MSD: every modality -> the same
            4-D file, with ``channels`` saying which channel holds which modality.
        label: label file, or ``None`` for an unlabelled case.
        label_convention: label numbering of the dataset (a key of ``LABEL_CONVENTIONS``).
        channels: MSD only: modality -> channel of the 4-D file; ``None`` for one file per modality.
        expected: modality -> the file a complete case would have, named when one is missing.
        group: the sub-folder the case came from (``HGG``/``LGG`` in BraTS 2015, ``imagesTr``/``imagesTs``
            in MSD), else ``None``.
    """

    case_id: str
    layout: str
    images: dict[str, Path]
    label: Path | None
    label_convention: str
    channels: dict[str, int] | None = None
    expected: dict[str, Path] | None = None
    group: str | None = None


def _visible(paths) -> list[Path]:
    # Hidden entries are macOS resource forks (._x), temporaries of atomic writes (.x.tmp), __MACOSX.
    return sorted(p for p in paths if not p.name.startswith((".", "__")))


def _subdirs(root: Path) -> list[Path]:
    return [p for p in _visible(root.iterdir()) if p.is_dir()]


def _find_nii(folder: Path, stem: str, tail: str = "", fallback: bool = True) -> Path | None:
    """``folder/<stem><tail>.nii.gz`` (or ``.nii``); else the one file ending in ``<tail>.nii[.gz]``."""
    for ext in (".nii.gz", ".nii"):
        if (p := folder / f"{stem}{tail}{ext}").is_file():
            return p
    if not fallback:
        return None
    # Tolerate a folder renamed after unpacking: the files keep their own prefix.
    found = [p for ext in (".nii.gz", ".nii") for p in _visible(folder.glob(f"*{tail}{ext}"))]
    if len(found) > 1:
        raise CaseError(f"case {folder.name}: several files end in {tail}: {[p.name for p in found]}")
    return found[0] if found else None


def _nifti_layout_of(case_dir: Path) -> str | None:
    for layout in ("brats2021", "brats2023"):
        sep = _SEP[layout]
        try:
            if any(_find_nii(case_dir, case_dir.name, f"{sep}{s}")
                   for s in (*_SUFFIX[layout].values(), "seg")):
                return layout
        except CaseError:  # several candidates: a folder of many cases' files, not one case
            continue
    return None


def _is_brats2015_case(d: Path) -> bool:
    return any(_MHA_MOD.search(s.name) or ".OT." in s.name for s in d.iterdir() if s.is_dir())


def _brats2015_case_dirs(root: Path) -> list[tuple[Path, str | None]]:
    # Case folders sit under HGG/LGG (training), HGG_LGG (testing) or directly under the root.
    dirs = []
    for d in _subdirs(root):
        if _is_brats2015_case(d):
            dirs.append((d, None))
        else:
            dirs += [(c, d.name) for c in _subdirs(d) if _is_brats2015_case(c)]
    return dirs


def _match_layout(root: Path) -> str | None:
    if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        return "msd"
    for d in _subdirs(root):
        if layout := _nifti_layout_of(d):
            return layout
    return "brats2015" if _brats2015_case_dirs(root) else None


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
    entries = _visible(root.iterdir())
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:8])
    found = f"it holds {len(entries)} entries ({shown}{', ...' if len(entries) > 8 else ''})"
    hint = ""
    if _nifti_layout_of(root):
        hint = f"; {root.name} looks like a single {_nifti_layout_of(root)} case: pass its parent folder"
    elif inner := [d.name for d in _subdirs(root) if _match_layout(d)]:
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
        One :class:`CaseFiles` per case; a case lacking some files is listed all the same.

    Raises:
        CaseError: the layout cannot be detected, or two cases share an id.
        ValueError: ``layout`` is not one of :data:`LAYOUTS`.
    """
    root = Path(root)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
    layout = layout or detect_layout(root)
    if layout in _SEP:
        cases = [c for c in (_brats_nifti_case(d, layout) for d in _subdirs(root)) if c.images or c.label]
    elif layout == "msd":
        cases = _msd_cases(root)
    else:
        cases = [_brats2015_case(d, group) for d, group in _brats2015_case_dirs(root)]
    cases.sort(key=lambda c: c.case_id)
    for a, b in zip(cases, cases[1:]):
        if a.case_id == b.case_id:
            where = [str(next(iter(c.images.values()), c.label)) for c in (a, b)]
            raise CaseError(f"case {a.case_id} appears twice in {root}: {where[0]} and {where[1]}")
    return cases


def _brats_nifti_case(d: Path, layout: str) -> CaseFiles:
    sep, suffix = _SEP[layout], _SUFFIX[layout]
    images = {m: p for m in MODALITIES if (p := _find_nii(d, d.name, f"{sep}{suffix[m]}"))}
    expected = {m: d / f"{d.name}{sep}{suffix[m]}.nii.gz" for m in MODALITIES}
    return CaseFiles(d.name, layout, images, _find_nii(d, d.name, f"{sep}seg"), layout, expected=expected)


def _msd_channels(root: Path) -> dict[str, int]:
    """Modality -> channel from ``dataset.json`` when it says, else the Task01 order."""
    path = root / "dataset.json"
    if not path.is_file():
        return dict(_MSD_CHANNELS)
    try:
        declared = json.loads(path.read_text()).get("modality")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise CorruptFileError(f"{path} is not a valid dataset.json ({exc})") from exc
    if not declared:
        return dict(_MSD_CHANNELS)
    try:
        channels = {_MSD_NAMES.get(str(name).lower()): int(ch) for ch, name in declared.items()}
    except (ValueError, AttributeError):
        channels = {}
    if set(channels) != set(MODALITIES) or sorted(channels.values()) != list(range(NUM_MODALITIES)):
        raise CaseError(f"{path}: modalities {declared} are not FLAIR, T1w, T1gd and T2w")
    return channels


def _msd_cases(root: Path) -> list[CaseFiles]:
    channels = _msd_channels(root)
    cases = []
    for sub in ("imagesTr", "imagesTs"):
        if not (root / sub).is_dir():
            continue
        for f in _visible((root / sub).glob("*.nii*")):
            case_id = f.name.split(".nii")[0]
            # imagesTs holds the challenge's test cases, never labelled.
            label = _find_nii(root / "labelsTr", case_id, fallback=False) if sub == "imagesTr" else None
            cases.append(CaseFiles(case_id, "msd", dict.fromkeys(MODALITIES, f), label, "msd",
                                   channels=dict(channels), group=sub))
    return cases


def _brats2015_case(d: Path, group: str | None) -> CaseFiles:
    images, label = {}, None
    for sub in (s for s in _visible(d.iterdir()) if s.is_dir()):
        mha = _visible(sub.glob("*.mha"))
        if not mha:
            continue
        if ".OT." in sub.name:
            label = mha[0]
        elif match := _MHA_MOD.search(sub.name):
            m = _MHA_KEY[match.group(1).lower()]
            if m in images:
                raise CaseError(f"case {d.name}: two {m} folders: {images[m].parent} and {sub}")
            images[m] = mha[0]
    expected = {m: d / f"VSD.Brain.XX.O.MR_{_MHA_NAME[m]}.<id>" / "*.mha" for m in MODALITIES}
    return CaseFiles(d.name, "brats2015", images, label, "brats2015", expected=expected, group=group)


def _load(path: Path, case_id: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    data, affine = (load_mha if path.suffix == ".mha" else load_nifti)(path, case_id, what)
    return data, affine


def _as_3d(data: np.ndarray, case_id: str, path: Path) -> np.ndarray:
    # Some converters write (X, Y, Z, 1); a genuine fourth axis is an error, not something to guess about.
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise GeometryError(f"case {case_id}: {path} must be a 3-D volume, got shape {data.shape}")
    return data


def read_case(files: CaseFiles, allow_missing: bool = False) -> RawCase:
    """Load and validate one case.

    Args:
        files: from :func:`discover_cases`.
        allow_missing: keep a case that lacks some modality (it is left out of ``images``, never
            zero-filled); otherwise that raises. At least one modality must exist either way.

    Returns:
        The case with ``float32 (X, Y, Z)`` images per present modality and a canonical ``uint8
        (X, Y, Z)`` label (or ``None``).

    Raises:
        MissingModalityError: a modality file is missing (and not allowed), or no modality exists.
        GeometryError: shapes or affines differ between the case's volumes; an MSD image is not
            ``(X, Y, Z, 4)``.
        IntensityError: non-finite voxels, or every image voxel is zero (an empty brain).
        CorruptFileError: a file cannot be decoded.
        LabelError: label values outside the dataset's label set.
    """
    cid = files.case_id
    missing = [m for m in MODALITIES if m not in files.images]
    if missing and not allow_missing:
        where = ", ".join(f"{m} ({(files.expected or {}).get(m, '?')})" for m in missing)
        raise MissingModalityError(f"case {cid}: missing modality file(s): {where}")
    if not files.images:
        expected = ", ".join(str(p) for p in (files.expected or {}).values())
        raise MissingModalityError(f"case {cid}: no modality file found (expected {expected})")
    images, shapes, affines, sources = {}, {}, {}, {}
    if files.channels is not None:  # MSD: one 4-D file holds every modality
        path = next(iter(files.images.values()))
        data, affines["image"] = _load(path, cid, "4-D image")
        if data.ndim != 4 or data.shape[-1] != NUM_MODALITIES:
            raise GeometryError(f"case {cid}: {path} must be 4-D (X, Y, Z, {NUM_MODALITIES}) with channels "
                                f"FLAIR, T1w, T1gd, T2w; got shape {data.shape}")
        images = {m: np.ascontiguousarray(data[..., files.channels[m]]) for m in MODALITIES}  # (X, Y, Z)
        shapes["image"] = data.shape[:3]
        sources = {"image": str(path), **dict.fromkeys(MODALITIES, str(path))}
    else:
        for m in (m for m in MODALITIES if m in files.images):
            path = files.images[m]
            data, affines[m] = _load(path, cid, m)
            images[m] = _as_3d(data, cid, path)
            shapes[m], sources[m] = images[m].shape, str(path)
    raw_label = None
    if files.label is not None:
        raw_label, affines["label"] = _load(files.label, cid, "label")
        raw_label = _as_3d(raw_label, cid, files.label)
        shapes["label"], sources["label"] = raw_label.shape, str(files.label)
    check_same_geometry(shapes, affines, cid, sources)
    label = None
    if raw_label is not None:
        label = to_canonical(raw_label, files.label_convention, where=f"case {cid}: {files.label}")
    if not any(np.any(v != 0) for v in images.values()):
        read = ", ".join(sorted({sources[m] for m in images}))
        raise IntensityError(f"case {cid}: the brain is empty (every voxel of {read} is 0)")
    return RawCase(cid, files.layout, images, label, next(iter(affines.values())), files.label_convention,
                   sources=sources)


def load_dataset(
    root: str | Path, layout: str | None = None, allow_missing: bool = False
) -> Iterator[RawCase]:
    """Yield every case of a folder as a :class:`~mmdis.data.io.RawCase`, in case-id order."""
    for files in discover_cases(root, layout):
        yield read_case(files, allow_missing=allow_missing)
