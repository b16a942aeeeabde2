"""Readers for the dataset layouts of the field, detected automatically from a folder.

=============  =====================================================================  ==========
layout         files                                                                  labels
=============  =====================================================================  ==========
``brats2021``  ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` (BraTS 2018-2021)       0,1,2,4
``brats2023``  ``<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (BraTS 2023 GLI)         0,1,2,3
``msd``        ``imagesTr/<case>.nii.gz`` 4-D (FLAIR, T1w, T1gd, T2w), ``labelsTr/``   0,1,2,3
``brats2015``  ``[HGG|LGG/]<case>/VSD.Brain.XX.O.MR_<mod>.<id>/...mha`` and ``...OT``  0..4
=============  =====================================================================  ==========

:func:`discover_cases` lists the files of every case (a missing modality file simply leaves a gap);
:func:`read_case` loads and validates one case into a :class:`~mmdis.data.io.RawCase` with canonical
labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmdis.conventions import MODALITIES, to_canonical
from mmdis.data.io import (
    CaseError,
    IntensityError,
    MissingModalityError,
    RawCase,
    check_same_geometry,
    load_mha,
    load_nifti,
)

LAYOUTS = ("brats2021", "brats2023", "msd", "brats2015")

_SUFFIX = {"brats2021": {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2"},
           "brats2023": {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}}
_SEP = {"brats2021": "_", "brats2023": "-"}
_CONVENTION = {"brats2021": "brats2021", "brats2023": "brats2023", "msd": "msd", "brats2015": "brats2015"}
_MSD_CHANNELS = {m: i for i, m in enumerate(MODALITIES)}  # FLAIR, T1w, T1gd, T2w
# BraTS 2015 folder names: VSD.Brain.XX.O.MR_T1c.54513 -- match the sequence exactly (T1 is not T1c).
_MHA_MOD = re.compile(r"\.MR_(Flair|T1c|T1|T2)\.", re.IGNORECASE)
_MHA_KEY = {"flair": "flair", "t1": "t1", "t1c": "t1ce", "t2": "t2"}
_EXPECT = (
    "brats2021: <case>/<case>_{flair,t1,t1ce,t2}.nii.gz; brats2023: <case>/<case>-{t2f,t1n,t1c,t2w}.nii.gz; "
    "msd: imagesTr/*.nii.gz (4-D); brats2015: <case>/VSD.Brain.XX.O.MR_*/...mha"
)


@dataclass
class CaseFiles:
    """Where one case's volumes are.

    Attributes:
        case_id: identifier.
        layout: one of :data:`LAYOUTS`.
        images: modality -> file, only for files that exist (MSD: every modality -> the 4-D file).
        label: label file or ``None`` for an unlabelled case.
        label_convention: label numbering of the dataset.
        channels: MSD only: modality -> channel of the 4-D file.
        expected: modality -> the file a complete case would have (for error messages).
    """

    case_id: str
    layout: str
    images: dict[str, Path]
    label: Path | None
    label_convention: str
    channels: dict[str, int] | None = None
    expected: dict[str, Path] | None = None


def _nii(path_without_ext: Path) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        p = path_without_ext.with_name(path_without_ext.name + ext)
        if p.is_file():
            return p
    return None


def _visible_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _brats2015_case_dirs(root: Path) -> list[Path]:
    dirs = []
    for d in _visible_dirs(root):
        if d.name.upper() in ("HGG", "LGG"):
            dirs += _visible_dirs(d)
        elif any(_MHA_MOD.search(s.name) for s in d.iterdir()):
            dirs.append(d)
    return dirs


def detect_layout(root: str | Path) -> str:
    """Name the layout of a dataset folder.

    Raises:
        CaseError: the folder does not exist or matches no layout (the message says what each expects).
    """
    root = Path(root)
    if not root.is_dir():
        raise CaseError(f"dataset folder {root} does not exist")
    if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        return "msd"
    for d in _visible_dirs(root):
        for layout in ("brats2021", "brats2023"):
            sep, suffix = _SEP[layout], _SUFFIX[layout]
            if any(_nii(d / f"{d.name}{sep}{s}") for s in (*suffix.values(), "seg")):
                return layout
    if _brats2015_case_dirs(root):
        return "brats2015"
    raise CaseError(f"{root} matches no known dataset layout; expected one of: {_EXPECT}")


def discover_cases(root: str | Path, layout: str | None = None) -> list[CaseFiles]:
    """List the cases of a dataset folder, sorted by case id."""
    root = Path(root)
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
    if layout in _SEP:
        cases = [_brats_nifti_case(d, layout) for d in _visible_dirs(root)]
        cases = [c for c in cases if c.images or c.label]
    elif layout == "msd":
        cases = _msd_cases(root)
    else:
        cases = [_brats2015_case(d) for d in _brats2015_case_dirs(root)]
    return sorted(cases, key=lambda c: c.case_id)


def _brats_nifti_case(d: Path, layout: str) -> CaseFiles:
    sep = _SEP[layout]
    expected = {m: d / f"{d.name}{sep}{s}.nii.gz" for m, s in _SUFFIX[layout].items()}
    images = {m: p for m in MODALITIES if (p := _nii(d / f"{d.name}{sep}{_SUFFIX[layout][m]}"))}
    return CaseFiles(d.name, layout, images, _nii(d / f"{d.name}{sep}seg"), _CONVENTION[layout],
                     expected=expected)


def _msd_cases(root: Path) -> list[CaseFiles]:
    cases = []
    for sub, labelled in (("imagesTr", True), ("imagesTs", False)):
        folder = root / sub
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.nii*")):
            if f.name.startswith("."):  # macOS resource forks (._BRATS_001.nii.gz)
                continue
            case_id = f.name.split(".nii")[0]
            label = _nii(root / "labelsTr" / case_id) if labelled else None
            cases.append(CaseFiles(case_id, "msd", dict.fromkeys(MODALITIES, f), label, "msd",
                                   channels=dict(_MSD_CHANNELS)))
    return cases


def _brats2015_case(d: Path) -> CaseFiles:
    images, label = {}, None
    for sub in sorted(d.iterdir()):
        mha = next(iter(sorted(sub.glob("*.mha"))), None) if sub.is_dir() else None
        if mha is None:
            continue
        if ".OT." in sub.name:
            label = mha
        elif match := _MHA_MOD.search(sub.name):
            images[_MHA_KEY[match.group(1).lower()]] = mha
    expected = {m: d / f"VSD.Brain.XX.O.MR_{n}.*" for m, n in
                zip(MODALITIES, ("Flair", "T1", "T1c", "T2"))}
    return CaseFiles(d.name, "brats2015", images, label, "brats2015", expected=expected)


def _load(path: Path, case_id: str, what: str):
    return load_mha(path, case_id, what) if path.suffix == ".mha" else load_nifti(path, case_id, what)


def read_case(files: CaseFiles, allow_missing: bool = False) -> RawCase:
    """Load and validate one case.

    Args:
        files: from :func:`discover_cases`.
        allow_missing: keep a case that lacks some modality (it is left out of ``images``, never
            zero-filled); otherwise that raises.

    Raises:
        MissingModalityError: a modality file is missing (and not allowed), or no modality exists.
        GeometryError: shapes or affines differ between the case's volumes.
        IntensityError: non-finite voxels or an all-zero brain.
        CorruptFileError: a file cannot be decoded.
        LabelError: label values outside the dataset's label set.
    """
    cid = files.case_id
    missing = [m for m in MODALITIES if m not in files.images]
    if missing and not allow_missing:
        where = ", ".join(str((files.expected or {}).get(m, m)) for m in missing)
        raise MissingModalityError(f"case {cid}: missing {', '.join(missing)} ({where})")
    if not files.images:
        raise MissingModalityError(f"case {cid}: no modality file found")
    images, shapes, affines, sources = {}, {}, {}, {}
    if files.channels is not None:  # MSD: one 4-D file
        path = next(iter(files.images.values()))
        data, affine = _load(path, cid, "4-D image")
        if data.ndim != 4 or data.shape[-1] != len(MODALITIES):
            raise CaseError(
                f"case {cid}: {path} must be 4-D with {len(MODALITIES)} channels (FLAIR, T1w, T1gd, T2w), "
                f"got shape {data.shape}"
            )
        for m, ch in files.channels.items():
            images[m] = np.ascontiguousarray(data[..., ch])
        shapes["image"], affines["image"], sources["image"] = data.shape[:3], affine, str(path)
    else:
        for m in MODALITIES:
            if m in files.images:
                images[m], affines[m] = _load(files.images[m], cid, m)
                shapes[m], sources[m] = images[m].shape, str(files.images[m])
                if images[m].ndim != 3:
                    raise CaseError(f"case {cid}: {files.images[m]} must be 3-D, got shape {images[m].shape}")
    label = None
    if files.label is not None:
        raw_label, affines["label"] = _load(files.label, cid, "label")
        shapes["label"], sources["label"] = raw_label.shape, str(files.label)
    check_same_geometry(shapes, affines, cid, sources)
    if files.label is not None:
        label = to_canonical(raw_label, files.label_convention, where=f"case {cid}: {files.label}")
    if not any(np.any(v != 0) for v in images.values()):
        files_read = ", ".join(sources.values())
        raise IntensityError(f"case {cid}: the brain is empty (every voxel of {files_read} is 0)")
    return RawCase(cid, files.layout, images, label, next(iter(affines.values())), files.label_convention,
                   sources=sources)


def load_dataset(root: str | Path, layout: str | None = None, allow_missing: bool = False):
    """Yield every case of a folder as a :class:`~mmdis.data.io.RawCase`."""
    for files in discover_cases(root, layout):
        yield read_case(files, allow_missing=allow_missing)
