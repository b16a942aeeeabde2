r"""The choices a segmentation score depends on, each named once: the HD95 definition, the empty-mask
convention and the small-ET post-processing.

Two numbers called "HD95" and "Dice" differ between papers and challenge years because of three choices.
mmdis makes each one a named option of :func:`~mmdis.metrics.segmentation_metrics` and
:class:`MetricConfig`, and every result table states the options it was computed with
(:meth:`MetricConfig.describe`).

**HD95 definition.** With :math:`D_{PT} = \{d(p, \partial T) : p \in \partial P\}` and
:math:`D_{TP} = \{d(t, \partial P) : t \in \partial T\}` the directed surface distances (mm):

================  ===============================================================  ==========================
name              formula                                                          used by
================  ===============================================================  ==========================
``directed-max``  :math:`\max\big(q_{95}(D_{PT}),\, q_{95}(D_{TP})\big)`           MONAI
``pooled``        :math:`q_{95}(D_{PT} \cup D_{TP})` (one percentile of both)      Panoptica, BraTS 2023+
================  ===============================================================  ==========================

:math:`q_{95}` is numpy's linear-interpolation percentile in both. If the larger directed percentile is
:math:`x`, at least 95 % of each list, hence of their union, lies at or below :math:`x`, so ``pooled`` is
never larger than ``directed-max`` (up to interpolation between neighbouring values); on lopsided errors
(a distant false positive, a missed satellite) it is much smaller, because the long tail of one direction
is diluted by the other direction's short distances.

**Empty-mask convention.** What a score is when a mask is empty, or the masks do not touch:

========================  ======================================  ==========================================
case                      ``brats2018``                           ``brats2025``
========================  ======================================  ==========================================
both empty                Dice 1, HD95 0                          Dice NaN, HD95 NaN (left out of means)
exactly one empty         Dice 0, HD95 373.13                     Dice 0, HD95 373 (``inf`` as written)
both non-empty, disjoint  Dice 0, HD95 computed                   Dice 0, HD95 373 (``inf`` as written)
other ratios 0/0          1 (sensitivity, precision)              NaN
========================  ======================================  ==========================================

- ``brats2018`` is the rule of the BraTS 2018-2022 evaluations, run with CaPTk on the organisers'
  platform: an absent region predicted absent is a perfect score, and a missing surface costs the
  diagonal of the 240 x 240 x 155 mm volume, :math:`\sqrt{240^2+240^2+155^2} = 373.13` mm. mmdis has
  always used it, generalised to one rule: a ratio 0/0 is 1 (the error it measures could not happen).
- ``brats2025`` is what the ``brats-evaluation`` package (0.0.10, the BraTS 2023-2025 evaluation, a
  wrapper around Panoptica 2.1) computes for its "global" Dice and HD95 with its glioma configuration:
  when prediction and truth share no voxel, Panoptica's edge-case handler replaces both metrics — NaN if
  both are empty, Dice 0 and HD95 ``inf`` otherwise, *including two non-empty masks that do not overlap*,
  whose surfaces are then never measured — and the package's result parser writes ``inf`` as 373. The
  package reports no voxel-wise sensitivity or precision; mmdis gives them NaN for 0/0 under this
  convention, so that "nothing to score" is never averaged in. Its surfaces are the same as mmdis's
  (mask minus its 6-connected erosion), and it measures in voxels: the NIfTI's spacing does not reach its
  global HD95, which is in mm only on the 1 mm BraTS grid. ``tests/test_official_metrics.py`` checks
  every row against values the package itself computed (``data_scripts/brats_eval_fixture.py``): Dice
  and pooled HD95 agree exactly on all twelve volumes.

The default stays ``directed-max`` with ``brats2018``. The paper reports Dice only, computed on a split
of the BraTS 2015 training set with its authors' code, so neither convention is demonstrably the paper's.
``brats2018`` is the convention of the challenge years closest to it, and it gives every case a number in
every subset: under ``brats2025`` a case drops out of a subset's ET mean exactly when that subset's
prediction is also empty, so the 15 subset means of Table 2 would average different sets of cases.
``directed-max`` is MONAI's, against which mmdis is tested, and the stricter of the two. Use ``pooled``
with ``brats2025`` to compare with BraTS 2023+ leaderboards.

**Small-ET post-processing** (:func:`~mmdis.metrics.postprocess.et_postprocess`): if the predicted
enhancing tumour has fewer than :data:`ET_MIN_VOXELS` voxels in total, all of it becomes necrotic /
non-enhancing core. Isensee et al. describe this threshold-based replacement of ET by necrosis for their
nnU-Net BraTS 2020 entry ("nnU-Net for Brain Tumor Segmentation", BrainLes 2020, arXiv:2011.00848),
choosing the threshold by cross-validation; the value 500 voxels is the one commonly quoted for their
BraTS 2018 entry (No New-Net, arXiv:1809.10483) and was not checked against that text here. Because
papers differ on it, ET is reported without it (region ``ET``) and, when asked, with it (region
``ET-pp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The HD95 definitions (module docstring), the default first.
HD95_DEFINITIONS: tuple[str, ...] = ("directed-max", "pooled")
#: Predicted enhancing tumour smaller than this (in voxels) is relabelled by the small-ET post-processing.
ET_MIN_VOXELS = 500
#: Region name of the enhancing tumour after the small-ET post-processing.
ET_PP = "ET-pp"


@dataclass(frozen=True)
class EmptyMaskConvention:
    """The scores of the edge cases, for one convention (module docstring).

    Attributes:
        name: the key in :data:`EMPTY_CONVENTIONS`.
        zero_by_zero: the value of a ratio 0/0 (Dice, sensitivity, precision): 1 or NaN.
        hd95_both_empty: HD95 when both masks are empty.
        hd95_worst: HD95 when a surface cannot be measured (in mm).
        disjoint_is_worst: HD95 is ``hd95_worst`` as soon as the masks share no voxel, even when both are
            non-empty.
        source: where the convention comes from, for captions.
    """

    name: str
    zero_by_zero: float
    hd95_both_empty: float
    hd95_worst: float
    disjoint_is_worst: bool
    source: str


#: The empty-mask conventions, the default first.
EMPTY_CONVENTIONS: dict[str, EmptyMaskConvention] = {
    "brats2018": EmptyMaskConvention(
        "brats2018", 1.0, 0.0, 373.13, False,
        "brats2018 (BraTS 2018-2022, CaPTk: both empty Dice 1 / HD95 0, one empty HD95 373.13 mm)"),
    "brats2025": EmptyMaskConvention(
        "brats2025", math.nan, math.nan, 373.0, True,
        "brats2025 (brats-evaluation 0.0.10: both empty NaN, no overlap HD95 373 mm)"),
}
#: HD95 (mm) when exactly one of prediction and truth is empty under the default convention.
HD95_WORST_CASE_MM = EMPTY_CONVENTIONS["brats2018"].hd95_worst


def get_empty_convention(name: str) -> EmptyMaskConvention:
    """Look up an empty-mask convention, with an error listing the known ones."""
    try:
        return EMPTY_CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown empty-mask convention {name!r}; expected one of "
                         f"{list(EMPTY_CONVENTIONS)}") from None


def check_hd95_definition(name: str) -> str:
    """``name`` if it is one of :data:`HD95_DEFINITIONS`; raises ``ValueError`` otherwise."""
    if name not in HD95_DEFINITIONS:
        raise ValueError(f"unknown HD95 definition {name!r}; expected one of {list(HD95_DEFINITIONS)}")
    return name


@dataclass(frozen=True)
class MetricConfig:
    """How segmentations are scored.

    Attributes:
        hd95: the HD95 definition, one of :data:`HD95_DEFINITIONS`.
        empty: the empty-mask convention, a key of :data:`EMPTY_CONVENTIONS`.
        et_postprocess: also report ET after the small-ET post-processing, as region :data:`ET_PP`.
        et_min_voxels: the post-processing's threshold.
    """

    hd95: str = "directed-max"
    empty: str = "brats2018"
    et_postprocess: bool = False
    et_min_voxels: int = ET_MIN_VOXELS

    def __post_init__(self) -> None:
        check_hd95_definition(self.hd95)
        get_empty_convention(self.empty)
        if self.et_min_voxels < 0:
            raise ValueError(f"et_min_voxels must be >= 0, got {self.et_min_voxels}")

    def describe(self) -> str:
        """One line for a table's caption: the HD95 definition, the convention and the ET rule."""
        hd = {"directed-max": "HD95 directed-max (larger of the two directed 95th percentiles, MONAI)",
              "pooled": "HD95 pooled (95th percentile of both directions together, brats-evaluation)"}
        hd = hd[self.hd95]
        et = (f"ET-pp: ET after relabelling a predicted ET of fewer than {self.et_min_voxels} voxels as core"
              if self.et_postprocess else "ET without small-ET post-processing")
        return f"{hd}; empty masks: {get_empty_convention(self.empty).source}; {et}."
