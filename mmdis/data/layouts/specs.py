"""One :class:`LayoutSpec` per dataset layout: how its case folders are recognised, where each modality,
the label and any shipped brain mask are, and how its labels are numbered.

The five layouts store their files in four ways, one small class each:

- :class:`SuffixLayout`: ``<case>/<case><suffix>.nii.gz`` (BraTS 2018-2021, BraTS 2023);
- :class:`MhaFolderLayout`: one folder per volume holding an ``.mha`` file (BraTS 2015);
- :class:`StemLayout`: ``<case>/<stem>.nii.gz`` with fixed stems in any capitalisation (the authors');
- :class:`MsdLayout`: one 4-D file per case in ``imagesTr``/``imagesTs``, labels in ``labelsTr`` (MSD).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from mmdis.conventions import MODALITIES, NUM_MODALITIES
from mmdis.data.io import CaseError, CorruptFileError
from mmdis.data.layouts.walk import CaseFiles, case_folders, find_nii, nii_files, nii_key, visible


@dataclass(frozen=True)
class LayoutSpec:
    """What a layout's cases look like on disk.

    Attributes:
        name: the layout's name (``--layout``).
        files: its files in one line, shown when a folder matches no layout.
        label_convention: the numbering of its labels (a key of ``LABEL_CONVENTIONS``).
        modality_files: canonical modality -> the part of the name that identifies its file.
        label_file: the part of the name that identifies the label file.
        brain_mask_file: the stem of the brain mask each case ships (``None``: none is shipped).
        zscored: the images are already z-scored within the brain.
        grouped: case folders may also sit one group folder down (e.g. ``HGG/``, ``LGG/``).
    """

    name: str
    files: str
    label_convention: str
    modality_files: Mapping[str, str] = field(default_factory=dict)
    label_file: str = ""
    brain_mask_file: str | None = None
    zscored: bool = False
    grouped: bool = False

    def is_dataset(self, root: Path) -> bool:
        """Whether the dataset folder itself says it has this layout (without looking at its cases)."""
        return False

    def is_case(self, folder: Path) -> bool:
        """Whether ``folder`` is one case of this layout.

        Raises:
            CaseError: the folder's files are ambiguous (e.g. several candidates for one volume).
        """
        raise NotImplementedError

    def recognises(self, folder: Path) -> bool:
        """:meth:`is_case`, with an ambiguous folder (a folder of many cases' files) counted as no case."""
        try:
            return self.is_case(folder)
        except CaseError:
            return False

    def case(self, folder: Path, group: str | None) -> CaseFiles:
        """The files of the case in ``folder`` (``group``: the group folder it sits in)."""
        raise NotImplementedError

    def cases(self, root: Path) -> list[CaseFiles]:
        """Every case of the dataset folder ``root``, in walking order."""
        return [self.case(d, group) for d, group in case_folders(root, self.is_case, self.grouped)]

    def _case_files(self, folder: Path, images: dict[str, Path], label: Path | None,
                    expected: dict[str, Path], group: str | None,
                    brain_mask: Path | None = None) -> CaseFiles:
        if self.brain_mask_file is not None:
            expected["brain_mask"] = folder / f"{self.brain_mask_file}.nii.gz"
        return CaseFiles(folder.name, self.name, images, label, self.label_convention, expected=expected,
                         group=group, brain_mask=brain_mask, zscored=self.zscored)


@dataclass(frozen=True)
class SuffixLayout(LayoutSpec):
    """``<case>/<case><suffix>.nii.gz``; a folder renamed after unpacking is tolerated (the files keep their
    own prefix)."""

    def is_case(self, folder: Path) -> bool:
        tails = (*self.modality_files.values(), self.label_file)
        return any(find_nii(folder, folder.name, tail) for tail in tails)

    def case(self, folder: Path, group: str | None) -> CaseFiles:
        tails = self.modality_files
        images = {m: p for m in MODALITIES if (p := find_nii(folder, folder.name, tails[m]))}
        expected = {m: folder / f"{folder.name}{tails[m]}.nii.gz" for m in MODALITIES}
        return self._case_files(folder, images, find_nii(folder, folder.name, self.label_file), expected,
                                group)


@dataclass(frozen=True)
class MhaFolderLayout(LayoutSpec):
    """``<case>/VSD.Brain.XX.O.MR_<name>.<id>/<file>.mha`` per modality and
    ``<case>/VSD.Brain.XX.O.<label_file>.<id>/<file>.mha`` for the label."""

    @cached_property
    def _modality_of(self) -> dict[str, str]:
        return {name.lower(): m for m, name in self.modality_files.items()}

    @cached_property
    def _pattern(self) -> re.Pattern:
        # The dot after the sequence keeps T1 from matching T1c.
        names = "|".join(self.modality_files.values())
        return re.compile(rf"\.MR_({names})\.", re.IGNORECASE)

    def is_case(self, folder: Path) -> bool:
        label = f".{self.label_file}."
        return any(self._pattern.search(s.name) or label in s.name for s in folder.iterdir() if s.is_dir())

    def case(self, folder: Path, group: str | None) -> CaseFiles:
        images, label = {}, None
        for sub in (s for s in visible(folder.iterdir()) if s.is_dir()):
            mha = visible(sub.glob("*.mha"))
            if not mha:
                continue
            if f".{self.label_file}." in sub.name:
                label = mha[0]
            elif match := self._pattern.search(sub.name):
                m = self._modality_of[match.group(1).lower()]
                if m in images:
                    raise CaseError(f"case {folder.name}: two {m} folders: {images[m].parent} and {sub}")
                images[m] = mha[0]
        expected = {m: folder / f"VSD.Brain.XX.O.MR_{self.modality_files[m]}.<id>" / "*.mha"
                    for m in MODALITIES}
        return self._case_files(folder, images, label, expected, group)


@dataclass(frozen=True)
class StemLayout(LayoutSpec):
    """``<case>/<stem>.nii.gz`` with fixed stems, in any capitalisation."""

    @cached_property
    def _case_keys(self) -> frozenset[str]:
        # A mask alone does not make a case: "brainmask" is too common a name to decide a layout on.
        return frozenset(s.lower() for s in (*self.modality_files.values(), self.label_file))

    def is_case(self, folder: Path) -> bool:
        return any(nii_key(p) in self._case_keys for p in nii_files(folder))

    def case(self, folder: Path, group: str | None) -> CaseFiles:
        found: dict[str, Path] = {}  # lower-case stem -> file
        for p in nii_files(folder):
            if (key := nii_key(p)) in found:  # x.nii next to x.nii.gz, or two spellings of one name
                raise CaseError(f"case {folder.name}: two files for one volume: {found[key].name} and "
                                f"{p.name}")
            found[key] = p
        stems = self.modality_files
        images = {m: p for m in MODALITIES if (p := found.get(stems[m].lower()))}
        expected = {m: folder / f"{stems[m]}.nii.gz" for m in MODALITIES}
        mask = found.get(self.brain_mask_file.lower()) if self.brain_mask_file else None
        return self._case_files(folder, images, found.get(self.label_file.lower()), expected, group, mask)


#: MSD Task01 channel order (dataset.json: FLAIR, T1w, t1gd, T2w) is the paper's modality order.
_MSD_CHANNELS = {m: i for i, m in enumerate(MODALITIES)}
_MSD_NAMES = {"flair": "flair", "t1": "t1", "t1w": "t1", "t1gd": "t1ce", "t1c": "t1ce", "t1ce": "t1ce",
              "t2": "t2", "t2w": "t2"}


def msd_channels(root: Path) -> dict[str, int]:
    """Modality -> channel from ``dataset.json`` when it says, else the Task01 order.

    Raises:
        CorruptFileError: ``dataset.json`` cannot be parsed.
        CaseError: it declares modalities other than FLAIR, T1w, T1gd and T2w.
    """
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


@dataclass(frozen=True)
class MsdLayout(LayoutSpec):
    """``imagesTr/<case>.nii.gz`` (4-D) with ``labelsTr/<case>.nii.gz``, and unlabelled ``imagesTs/``."""

    #: The image folders, and whether their cases are labelled (imagesTs holds the challenge's test cases).
    image_folders: Mapping[str, bool] = field(default_factory=lambda: {"imagesTr": True, "imagesTs": False})
    label_folder: str = "labelsTr"

    def is_dataset(self, root: Path) -> bool:
        return any((root / sub).is_dir() for sub in self.image_folders)

    def is_case(self, folder: Path) -> bool:
        return False  # a case is a file, not a folder

    def cases(self, root: Path) -> list[CaseFiles]:
        channels = msd_channels(root)
        cases = []
        for sub, labelled in self.image_folders.items():
            if not (root / sub).is_dir():
                continue
            for f in visible((root / sub).glob("*.nii*")):
                case_id = f.name.split(".nii")[0]
                label = find_nii(root / self.label_folder, case_id, fallback=False) if labelled else None
                cases.append(CaseFiles(case_id, self.name, dict.fromkeys(MODALITIES, f), label,
                                       self.label_convention, channels=dict(channels), group=sub))
        return cases


_MHA_NAMES = dict(zip(MODALITIES, ("Flair", "T1", "T1c", "T2")))

#: Every layout, in the order of :data:`~mmdis.data.layouts.LAYOUTS`.
SPECS: tuple[LayoutSpec, ...] = (
    SuffixLayout("brats2021", "<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz", "brats2021",
                 modality_files={m: f"_{m}" for m in MODALITIES}, label_file="_seg"),
    SuffixLayout("brats2023", "<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz", "brats2023",
                 modality_files=dict(zip(MODALITIES, ("-t2f", "-t1n", "-t1c", "-t2w"))), label_file="-seg"),
    MsdLayout("msd", "imagesTr/<case>.nii.gz (4-D) and labelsTr/<case>.nii.gz", "msd"),
    MhaFolderLayout("brats2015", "[HGG|LGG/]<case>/VSD.Brain.XX.O.MR_{Flair,T1,T1c,T2}.<id>/*.mha",
                    "brats2015", modality_files=_MHA_NAMES, label_file="OT", grouped=True),
    # The authors' code reads BraTS 2015 as preprocessed for DeepMedic: z-scored images, a brain mask and
    # BraTS 2015 labels.
    StemLayout("authors", "[group/]<case>/{Flair,T1,T1c,T2}_subtrMeanDivStd.nii.gz, brainmask.nii.gz, "
               "OTMultiClass.nii.gz", "brats2015",
               modality_files={m: f"{name}_subtrMeanDivStd" for m, name in _MHA_NAMES.items()},
               label_file="OTMultiClass", brain_mask_file="brainmask", zscored=True, grouped=True),
)
