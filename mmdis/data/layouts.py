"""Readers for the dataset layouts of the field, detected automatically from a folder.

=============  ======================================================================  ==========
layout         files                                                                   labels
=============  ======================================================================  ==========
``brats2021``  ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` (BraTS 2018-2021)       0,1,2,4
``brats2023``  ``<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (BraTS 2023 GLI)         0,1,2,3
``msd``        ``imagesTr/<case>.nii.gz`` 4-D (FLAIR, T1w, T1gd, T2w), ``labelsTr/``   0,1,2,3
``brats2015``  ``[HGG|LGG/]<case>/VSD.Brain.XX.O.MR_<mod>.<id>/...mha`` and ``...OT``  0..4
``authors``    ``[group/]<case>/{Flair,T1,T1c,T2}_subtrMeanDivStd.nii.gz``,            0..4
               ``brainmask.nii.gz`` and ``OTMultiClass.nii.gz``
=============  ======================================================================  ==========

``.nii`` is accepted wherever ``.nii.gz`` is. :func:`discover_cases` lists the files of every case (a
missing modality file simply leaves a gap, a missing label file makes the case unlabelled);
:func:`read_case` loads and validates one case into a :class:`~mmdis.data.io.RawCase` with canonical
labels (see :mod:`mmdis.conventions`).

The ``authors`` layout is the one the paper's authors' code reads (BraTS 2015 as preprocessed for
DeepMedic): every image is already z-scored within the brain (its background holds the volume's minimum,
not 0), so :func:`read_case` returns it with ``zscored=True`` and the shipped ``brainmask`` as the brain
mask, and no second z-scoring happens. Any non-empty subset of the four modalities may be present; the
label is numbered as in BraTS 2015.
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

LAYOUTS = ("brats2021", "brats2023", "msd", "brats2015", "authors")

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
# The authors' layout: <Mod>_subtrMeanDivStd (z-scored images), brainmask, OTMultiClass (BraTS 2015 labels).
_AUTHORS_IMAGE = {m: f"{name}_subtrMeanDivStd" for m, name in _MHA_NAME.items()}
_AUTHORS_MASK, _AUTHORS_LABEL = "brainmask", "OTMultiClass"
_EXPECT = (
    "brats2021: <case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz; "
    "brats2023: <case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz; "
    "msd: imagesTr/<case>.nii.gz (4-D) and labelsTr/<case>.nii.gz; "
    "brats2015: [HGG|LGG/]<case>/VSD.Brain.XX.O.MR_{Flair,T1,T1c,T2}.<id>/*.mha; "
    "authors: [group/]<case>/{Flair,T1,T1c,T2}_subtrMeanDivStd.nii.gz, brainmask.nii.gz, OTMultiClass.nii.gz"
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
        expected: modality -> the file a complete case would have, named when one is missing; in a
            layout that ships a brain mask, also ``"brain_mask"`` -> where that mask should be.
        group: the sub-folder the case came from (``HGG``/``LGG`` in BraTS 2015, ``imagesTr``/``imagesTs``
            in MSD, e.g. ``train``/``validation`` in the authors' layout), else ``None``.
        brain_mask: the brain-mask file the dataset ships, or ``None`` (the mask is then derived from the
            images, or, where ``expected`` names one, the case fails to read).
        zscored: the images are already z-scored within the brain (the authors' layout).
    """

    case_id: str
    layout: str
    images: dict[str, Path]
    label: Path | None
    label_convention: str
    channels: dict[str, int] | None = None
    expected: dict[str, Path] | None = None
    group: str | None = None
    brain_mask: Path | None = None
    zscored: bool = False

    @property
    def available(self) -> tuple[bool, ...]:
        """Which modality files exist, in :data:`~mmdis.conventions.MODALITIES` order."""
        return tuple(m in self.images for m in MODALITIES)


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


def _nii_files(d: Path) -> list[Path]:
    return [p for p in _visible(d.iterdir()) if p.name.endswith((".nii.gz", ".nii")) and p.is_file()]


def _nii_key(p: Path) -> str:
    return p.name.split(".nii")[0].lower()


def _authors_files(d: Path) -> dict[str, Path]:
    """Lower-case stem -> file, for every visible ``.nii[.gz]`` file of a case folder."""
    files: dict[str, Path] = {}
    for p in _nii_files(d):
        if (key := _nii_key(p)) in files:  # x.nii next to x.nii.gz, or two spellings of one name
            raise CaseError(f"case {d.name}: two files for one volume: {files[key].name} and {p.name}")
        files[key] = p
    return files


#: Stems that make a folder a case of the authors' layout. A mask alone does not: "brainmask" is too
#: common a name to decide a layout on.
_AUTHORS_KEYS = frozenset(s.lower() for s in (*_AUTHORS_IMAGE.values(), _AUTHORS_LABEL))


def _is_authors_case(d: Path) -> bool:
    return any(_nii_key(p) in _AUTHORS_KEYS for p in _nii_files(d))


def _authors_case_dirs(root: Path) -> list[tuple[Path, str | None]]:
    # Case folders sit directly under the root or one group folder down (DeepMedic's train/, validation/).
    dirs = []
    for d in _subdirs(root):
        if _is_authors_case(d):
            dirs.append((d, None))
        else:
            dirs += [(c, d.name) for c in _subdirs(d) if _is_authors_case(c)]
    return dirs


def _match_layout(root: Path) -> str | None:
    if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        return "msd"
    for d in _subdirs(root):
        if layout := _nifti_layout_of(d):
            return layout
    if _brats2015_case_dirs(root):
        return "brats2015"
    return "authors" if _authors_case_dirs(root) else None


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
    if single := _nifti_layout_of(root) or ("authors" if _is_authors_case(root) else None):
        hint = f"; {root.name} looks like a single {single} case: pass its parent folder"
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
    elif layout == "brats2015":
        cases = [_brats2015_case(d, group) for d, group in _brats2015_case_dirs(root)]
    else:
        cases = [_authors_case(d, group) for d, group in _authors_case_dirs(root)]
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


def _authors_case(d: Path, group: str | None) -> CaseFiles:
    found = _authors_files(d)
    images = {m: p for m in MODALITIES if (p := found.get(_AUTHORS_IMAGE[m].lower()))}
    expected: dict[str, Path] = {m: d / f"{_AUTHORS_IMAGE[m]}.nii.gz" for m in MODALITIES}
    expected["brain_mask"] = d / f"{_AUTHORS_MASK}.nii.gz"
    return CaseFiles(d.name, "authors", images, found.get(_AUTHORS_LABEL.lower()), "brats2015",
                     expected=expected, group=group, brain_mask=found.get(_AUTHORS_MASK.lower()),
                     zscored=True)


def _binary_mask(data: np.ndarray, case_id: str, path: Path) -> np.ndarray:
    """A shipped brain mask as ``bool``: it must hold two values (0 and one other) and some brain."""
    values = np.unique(data)
    if values.size > 2 or (values.size == 2 and values[0] != 0 and values[1] != 0):
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise CaseError(f"case {case_id}: brain mask {path} must be binary (0 and 1), found values {shown}")
    mask = data != 0
    if not mask.any():
        raise IntensityError(f"case {case_id}: brain mask {path} is empty (every voxel is 0)")
    return mask


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
        IntensityError: non-finite voxels, every image voxel is zero (an empty brain), or a shipped
            brain mask is empty.
        CorruptFileError: a file cannot be decoded.
        LabelError: label values outside the dataset's label set.
        CaseError: the layout ships a brain mask and this case's is missing or not binary.
    """
    cid = files.case_id
    expected_files = files.expected or {}
    missing = [m for m in MODALITIES if m not in files.images]
    if missing and not allow_missing:
        where = ", ".join(f"{m} ({expected_files.get(m, '?')})" for m in missing)
        raise MissingModalityError(f"case {cid}: missing modality file(s): {where}")
    if not files.images:
        expected = ", ".join(str(expected_files[m]) for m in MODALITIES if m in expected_files)
        raise MissingModalityError(f"case {cid}: no modality file found (expected {expected})")
    if files.brain_mask is None and "brain_mask" in expected_files:
        raise CaseError(f"case {cid}: brain mask file {expected_files['brain_mask']} does not exist "
                        f"(the {files.layout} layout ships one per case)")
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
    raw_mask = None
    if files.brain_mask is not None:  # checked against the images' geometry like any other volume
        raw_mask, affines["brain_mask"] = _load(files.brain_mask, cid, "brain mask")
        raw_mask = _as_3d(raw_mask, cid, files.brain_mask)
        shapes["brain_mask"], sources["brain_mask"] = raw_mask.shape, str(files.brain_mask)
    raw_label = None
    if files.label is not None:
        raw_label, affines["label"] = _load(files.label, cid, "label")
        raw_label = _as_3d(raw_label, cid, files.label)
        shapes["label"], sources["label"] = raw_label.shape, str(files.label)
    check_same_geometry(shapes, affines, cid, sources)
    brain_mask = None if raw_mask is None else _binary_mask(raw_mask, cid, files.brain_mask)
    label = None
    if raw_label is not None:
        label = to_canonical(raw_label, files.label_convention, where=f"case {cid}: {files.label}")
    if not any(np.any(v != 0) for v in images.values()):
        read = ", ".join(sorted({sources[m] for m in images}))
        raise IntensityError(f"case {cid}: the brain is empty (every voxel of {read} is 0)")
    return RawCase(cid, files.layout, images, label, next(iter(affines.values())), files.label_convention,
                   brain_mask=brain_mask, zscored=files.zscored, sources=sources)


def load_dataset(
    root: str | Path, layout: str | None = None, allow_missing: bool = False
) -> Iterator[RawCase]:
    """Yield every case of a folder as a :class:`~mmdis.data.io.RawCase`, in case-id order."""
    for files in discover_cases(root, layout):
        yield read_case(files, allow_missing=allow_missing)
