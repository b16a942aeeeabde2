"""mmdis against the official BraTS evaluation (``brats-evaluation`` 0.0.10), through a recorded fixture.

``data_scripts/brats_eval_fixture.py`` ran the official package, in its own virtual environment, on the
volumes that :func:`build_volumes` makes from the real labels of the shared samples, and recorded its
numbers in ``tests/fixtures/brats_evaluation_0.0.10.json``. Here the same volumes are rebuilt and scored
by mmdis: Dice to 1e-7, the ``pooled`` HD95 to 1e-3 mm under the ``brats2025`` convention, and every
edge case as :mod:`mmdis.metrics.definitions` documents it under both conventions. A copy of the fixture
with one wrong number is shown to fail. Skipped when the shared samples are absent.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from data_scripts.brats_eval_fixture import FIXTURE, build_volumes, shared_data
from mmdis.conventions import REGIONS
from mmdis.metrics import HD95_WORST_CASE_MM, hd95, overlap_scores, segmentation_metrics

SHARED = shared_data()
if SHARED is None or not FIXTURE.is_file():
    pytest.skip("the shared BraTS samples (or the fixture) are absent", allow_module_level=True)

pytestmark = pytest.mark.realdata
#: brats-evaluation 0.0.10 scores files in voxel units: the NIfTI's spacing is not passed on to its
#: global HD95 (the anisotropic volume scores as the isotropic one), so it is compared at 1 mm.
OFFICIAL_SPACING = (1.0, 1.0, 1.0)
DICE_TOL, HD95_TOL = 1e-7, 1e-3


def _value(v) -> float:
    return float(v)  # "nan" and "inf" parse as floats


def _close(a: float, b: float, tol: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= tol


def _masks(volume, region):
    pred, truth, _ = volume
    return np.isin(pred, REGIONS[region]), np.isin(truth, REGIONS[region])


def mismatches(recorded: dict, volumes: dict) -> list[str]:
    """Every fixture entry that mmdis (``pooled``, ``brats2025``) does not reproduce, as readable lines."""
    bad = []
    for name, entry in recorded["volumes"].items():
        for region, want in entry["regions"].items():
            pred, truth = _masks(volumes[name], region)
            if (int(pred.sum()), int(truth.sum())) != (want["pred_voxels"], want["truth_voxels"]):
                bad.append(f"{name} {region}: the rebuilt volume differs from the scored one")
                continue
            dice = overlap_scores(pred, truth, empty="brats2025")["dice"]
            dist = hd95(pred, truth, OFFICIAL_SPACING, definition="pooled", empty="brats2025")
            if not _close(dice, _value(want["global_bin_dsc"]), DICE_TOL):
                bad.append(f"{name} {region}: Dice {dice} != official {want['global_bin_dsc']}")
            if not _close(dist, _value(want["global_hd95"]), HD95_TOL):
                bad.append(f"{name} {region}: HD95 {dist} != official {want['global_hd95']}")
    return bad


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def volumes() -> dict:
    return build_volumes(SHARED)


def test_fixture_records_the_package_and_holds_only_numbers(recorded, volumes):
    assert recorded["package"] == "brats-evaluation" and recorded["brats-evaluation"] == "0.0.10"
    assert set(recorded["volumes"]) == set(volumes)
    for entry in recorded["volumes"].values():
        for values in entry["regions"].values():
            assert all(isinstance(v, (int, float)) or v in ("nan", "inf") for v in values.values())


def test_mmdis_reproduces_the_official_dice_and_pooled_hd95(recorded, volumes):
    assert mismatches(recorded, volumes) == []


def test_a_wrong_fixture_value_is_caught(recorded, volumes):
    crafted = copy.deepcopy(recorded)
    crafted["volumes"]["gli-shift-0-m3-4"]["regions"]["TC"]["global_hd95"] += 0.01
    crafted["volumes"]["gli-shift-2-0-0"]["regions"]["ET"]["global_bin_dsc"] -= 1e-6
    bad = mismatches(crafted, volumes)
    assert len(bad) == 2
    assert bad[0].startswith("gli-shift-2-0-0 ET: Dice") and bad[1].startswith("gli-shift-0-m3-4 TC: HD95")


def test_official_edge_cases_are_the_brats2025_convention(recorded):
    regions = recorded["volumes"]["both-empty"]["regions"]
    assert all(r["global_bin_dsc"] == r["global_hd95"] == "nan" for r in regions.values())
    for name in ("gli-empty-prediction", "gli-empty-truth", "gli-disjoint"):
        for r in recorded["volumes"][name]["regions"].values():
            assert (r["global_bin_dsc"], r["global_bin_hd95"], r["global_hd95"]) == (0.0, "inf", 373.0), name
    et = recorded["volumes"]["gli-truth-without-et"]["regions"]["ET"]
    assert (et["global_bin_dsc"], et["global_hd95"]) == (0.0, 373.0)


@pytest.mark.parametrize(("name", "dice", "hd"), [
    ("both-empty", 1.0, 0.0),
    ("gli-empty-prediction", 0.0, HD95_WORST_CASE_MM),
    ("gli-empty-truth", 0.0, HD95_WORST_CASE_MM),
])
def test_the_same_edge_cases_under_brats2018(volumes, name, dice, hd):
    for region, values in segmentation_metrics(*volumes[name]).items():
        assert (values["dice"], values["hd95"]) == (dice, hd), region


def test_disjoint_masks_are_measured_under_brats2018(volumes):
    """The one place the conventions differ on non-empty masks: brats2025 stops at "no overlap"."""
    spacing = volumes["gli-disjoint"][2]
    for region in REGIONS:
        p, t = _masks(volumes["gli-disjoint"], region)
        for definition in ("directed-max", "pooled"):
            measured = hd95(p, t, spacing, definition=definition)
            assert 0 < measured < HD95_WORST_CASE_MM, (region, definition)
            assert hd95(p, t, spacing, definition=definition, empty="brats2025") == 373.0


def test_directed_max_is_never_below_pooled(volumes):
    for name, volume in volumes.items():
        for region in REGIONS:
            p, t = _masks(volume, region)
            if p.any() and t.any():
                high, low = (hd95(p, t, volume[2], definition=d) for d in ("directed-max", "pooled"))
                assert high >= low - 1e-9, (name, region)


def test_the_official_package_ignores_the_files_spacing(recorded, volumes):
    iso, aniso = (recorded["volumes"][n]["regions"]["WT"]
                  for n in ("b15-shift-1-2-m1", "b15-shift-anisotropic"))
    assert iso["global_hd95"] == aniso["global_hd95"]
    p, t = _masks(volumes["b15-shift-anisotropic"], "WT")
    in_mm = hd95(p, t, volumes["b15-shift-anisotropic"][2], definition="pooled")
    assert in_mm > iso["global_hd95"] + 0.5  # what the 1 x 1.2 x 2 mm grid really measures


def test_a_distant_false_positive_splits_the_two_definitions(recorded, volumes):
    """A 12-voxel cube far from the tumour: 8.5 % of the predicted WT surface, 4.4 % of both pooled."""
    volume = volumes["gli-distant-false-positive"]
    p, t = _masks(volume, "WT")
    assert recorded["volumes"]["gli-distant-false-positive"]["regions"]["WT"]["global_hd95"] == 0.0
    assert hd95(p, t, volume[2], definition="pooled") == 0.0
    assert hd95(p, t, volume[2], definition="directed-max") > 150.0
