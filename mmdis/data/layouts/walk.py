"""What one case's files are (:class:`CaseFiles`) and the folder walking every layout shares.

:func:`case_folders` is the one walk over a dataset folder: case folders sit directly under it or, in a
layout whose cases are grouped (BraTS 2015's ``HGG``/``LGG``, DeepMedic's ``train``/``validation``), one
folder further down. Hidden entries (macOS resource forks, temporaries of atomic writes, ``__MACOSX``) are
never cases or files of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mmdis.conventions import MODALITIES
from mmdis.data.io import CaseError

#: The extensions of a NIfTI file, preferred first.
NIFTI_EXTENSIONS = (".nii.gz", ".nii")


@dataclass
class CaseFiles:
    """Where one case's volumes are.

    Attributes:
        case_id: identifier (the case folder's name, or the MSD file name without extension).
        layout: one of :data:`~mmdis.data.layouts.LAYOUTS`.
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


def visible(paths: Iterable[Path]) -> list[Path]:
    """``paths`` without hidden entries (``.x``, ``__x``), sorted."""
    return sorted(p for p in paths if not p.name.startswith((".", "__")))


def subdirs(root: Path) -> list[Path]:
    """The visible sub-folders of ``root``, sorted."""
    return [p for p in visible(root.iterdir()) if p.is_dir()]


def case_folders(root: Path, is_case: Callable[[Path], bool],
                 grouped: bool = False) -> list[tuple[Path, str | None]]:
    """Every case folder of a dataset folder, with the group folder it sits in (``None``: directly under
    ``root``).

    Args:
        root: the dataset folder.
        is_case: whether a folder is one case of the layout.
        grouped: also look one folder down, in the sub-folders that are not cases themselves.
    """
    found = []
    for d in subdirs(root):
        if is_case(d):
            found.append((d, None))
        elif grouped:
            found += [(c, d.name) for c in subdirs(d) if is_case(c)]
    return found


def find_nii(folder: Path, stem: str, tail: str = "", fallback: bool = True) -> Path | None:
    """``folder/<stem><tail>.nii.gz`` (or ``.nii``); else the one file ending in ``<tail>.nii[.gz]``.

    Raises:
        CaseError: with ``fallback``, when several files end in ``<tail>``.
    """
    for ext in NIFTI_EXTENSIONS:
        if (p := folder / f"{stem}{tail}{ext}").is_file():
            return p
    if not fallback:
        return None
    # Tolerate a folder renamed after unpacking: the files keep their own prefix.
    found = [p for ext in NIFTI_EXTENSIONS for p in visible(folder.glob(f"*{tail}{ext}"))]
    if len(found) > 1:
        raise CaseError(f"case {folder.name}: several files end in {tail}: {[p.name for p in found]}")
    return found[0] if found else None


def nii_files(d: Path) -> list[Path]:
    """The visible ``.nii[.gz]`` files of a folder."""
    return [p for p in visible(d.iterdir()) if p.name.endswith(NIFTI_EXTENSIONS) and p.is_file()]


def nii_key(p: Path) -> str:
    """A NIfTI file's name without extension, lower case."""
    return p.name.split(".nii")[0].lower()
