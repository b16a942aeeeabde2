"""Data conventions of mmdis, declared once.

Everything that names a modality, a label or a tumour region is defined here and imported elsewhere,
so that the model, the readers, the metrics and the book agree.

Canonical label set used inside mmdis (whatever the source dataset):

======  ==========================================  =======================
label   tissue                                      BraTS 2021 label
======  ==========================================  =======================
0       background and healthy tissue               0
1       necrotic and non-enhancing tumour core      1 (2015: 1 and 3)
2       peritumoral edema                           2
3       enhancing tumour                            4
======  ==========================================  =======================

Regions (the paper's "complete", "core" and "enhancing" tumour):
whole tumour WT = {1, 2, 3}, tumour core TC = {1, 3}, enhancing tumour ET = {3}.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: Modality order of the paper (FLAIR, T1, T1c, T2); index i of every (B, M, ...) tensor.
MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
#: Display names, in the order of :data:`MODALITIES`.
MODALITY_NAMES: dict[str, str] = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1c", "t2": "T2"}
NUM_MODALITIES = len(MODALITIES)

#: Canonical labels (see the module docstring).
BACKGROUND, CORE, EDEMA, ENHANCING = 0, 1, 2, 3
CANONICAL_LABELS: dict[int, str] = {
    BACKGROUND: "background",
    CORE: "necrotic / non-enhancing core",
    EDEMA: "edema",
    ENHANCING: "enhancing tumour",
}
NUM_CLASSES = len(CANONICAL_LABELS)

#: Tumour regions as sets of canonical labels.
REGIONS: dict[str, tuple[int, ...]] = {
    "WT": (CORE, EDEMA, ENHANCING),
    "TC": (CORE, ENHANCING),
    "ET": (ENHANCING,),
}
REGION_NAMES: dict[str, str] = {"WT": "whole tumour", "TC": "tumour core", "ET": "enhancing tumour"}


@dataclass(frozen=True)
class LabelConvention:
    """How one dataset numbers its labels.

    Attributes:
        name: dataset key, e.g. ``"brats2021"``.
        to_canonical: dataset label -> canonical label; any other value in a file is an error.
        from_canonical: canonical label -> dataset label, used to write predictions.
    """

    name: str
    to_canonical: dict[int, int]
    from_canonical: dict[int, int]

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(sorted(self.to_canonical))


LABEL_CONVENTIONS: dict[str, LabelConvention] = {
    # BraTS 2018-2021: 1 NCR/NET, 2 ED, 4 ET (3 unused).
    "brats2021": LabelConvention("brats2021", {0: 0, 1: 1, 2: 2, 4: 3}, {0: 0, 1: 1, 2: 2, 3: 4}),
    # BraTS 2023 GLI: 1 NCR, 2 ED, 3 ET.
    "brats2023": LabelConvention("brats2023", {0: 0, 1: 1, 2: 2, 3: 3}, {0: 0, 1: 1, 2: 2, 3: 3}),
    # MSD Task01 BrainTumour: 1 edema, 2 non-enhancing tumour, 3 enhancing tumour.
    "msd": LabelConvention("msd", {0: 0, 1: 2, 2: 1, 3: 3}, {0: 0, 1: 2, 2: 1, 3: 3}),
    # BraTS 2015: 1 necrosis, 2 edema, 3 non-enhancing, 4 enhancing. Necrosis and non-enhancing
    # tumour both belong to the core and merge into canonical 1; written back as 1.
    "brats2015": LabelConvention("brats2015", {0: 0, 1: 1, 2: 2, 3: 1, 4: 3}, {0: 0, 1: 1, 2: 2, 3: 4}),
}


class LabelError(ValueError):
    """A label volume holds values outside its dataset's label set."""


def to_canonical(label: np.ndarray, convention: str, where: str = "label volume") -> np.ndarray:
    """Map a dataset's label volume to canonical labels.

    Args:
        label: integer-valued array of any shape.
        convention: a key of :data:`LABEL_CONVENTIONS`.
        where: what to name in an error message (a file path, a case id).

    Returns:
        ``uint8`` array of the same shape with values in ``0..3``.

    Raises:
        LabelError: if ``label`` holds a value that ``convention`` does not define, or non-integers.
    """
    conv = get_convention(convention)
    values = np.unique(label)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        raise LabelError(f"{where}: label values must be integers, found {values[:8].tolist()}")
    unexpected = sorted(set(values.astype(np.int64).tolist()) - set(conv.to_canonical))
    if unexpected:
        raise LabelError(
            f"{where}: label values {unexpected} are not in the {conv.name} label set "
            f"{list(conv.labels)}"
        )
    lut = np.zeros(max(conv.to_canonical) + 1, dtype=np.uint8)
    for src, dst in conv.to_canonical.items():
        lut[src] = dst
    return lut[label.astype(np.int64)]


def from_canonical(label: np.ndarray, convention: str) -> np.ndarray:
    """Map canonical labels (0..3) to a dataset's labels, e.g. to write a prediction file."""
    conv = get_convention(convention)
    lut = np.zeros(NUM_CLASSES, dtype=np.uint8)
    for src, dst in conv.from_canonical.items():
        lut[src] = dst
    if label.size and (label.min() < 0 or label.max() >= NUM_CLASSES):
        raise LabelError(f"canonical labels must lie in 0..{NUM_CLASSES - 1}")
    return lut[label.astype(np.int64)]


def get_convention(name: str) -> LabelConvention:
    """Look up a label convention by name, with an error listing the known ones."""
    try:
        return LABEL_CONVENTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown label convention {name!r}; expected one of {sorted(LABEL_CONVENTIONS)}"
        ) from None


def region_masks(label: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of WT, TC and ET for a canonical label array of any shape."""
    return {name: np.isin(label, classes) for name, classes in REGIONS.items()}


def _table2_order() -> list[tuple[bool, ...]]:
    # The paper's Table 2 lists one modality, then pairs, triples and the full set; inside each
    # group it uses the order below (F, T1, T1c, T2 columns).
    order = [
        "---X", "--X-", "-X--", "X---",
        "--XX", "-XX-", "XX--", "-X-X", "X--X", "X-X-",
        "XXX-", "XX-X", "X-XX", "-XXX",
        "XXXX",
    ]  # fmt: skip
    return [tuple(c == "X" for c in row) for row in order]


#: All 15 non-empty availability masks, each a tuple of 4 bools in :data:`MODALITIES` order,
#: in the row order of the paper's Table 2.
SUBSETS: tuple[tuple[bool, ...], ...] = tuple(_table2_order())
assert sorted(SUBSETS) == sorted(
    s for s in itertools.product([False, True], repeat=NUM_MODALITIES) if any(s)
)


def subset_name(available: tuple[bool, ...] | list[bool]) -> str:
    """Readable name of an availability mask, e.g. ``"FLAIR+T1c"``."""
    if len(available) != NUM_MODALITIES:
        raise ValueError(f"available must have {NUM_MODALITIES} entries, got {len(available)}")
    names = [MODALITY_NAMES[m] for m, a in zip(MODALITIES, available) if a]
    if not names:
        raise ValueError("available has no modality: at least one must be present")
    return "+".join(names)


def subset_dots(available: tuple[bool, ...] | list[bool]) -> str:
    """Filled and empty dots per modality (``●○●○``), as in the result tables."""
    return "".join("●" if a else "○" for a in available)
