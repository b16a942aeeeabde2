"""The embedded phantom: determinism, tumour anatomy, clinical contrasts, atomic writing, the figure."""

import json
import socket

import nibabel as nib
import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import ndimage

from mmdis.conventions import CORE, EDEMA, ENHANCING, MODALITIES, region_masks, to_canonical
from mmdis.data import phantom as ph
from mmdis.data import phantom_anatomy as pa
from mmdis.data.phantom import PhantomConfig, make_case, write_phantom
from mmdis.plotting.base import best_slice, save_figure
from mmdis.plotting.cases import plot_case

FAST = PhantomConfig(cases=3, seed=0, spacing=4.0)


@pytest.fixture(scope="module")
def cases():
    cfg = PhantomConfig(cases=4, seed=11, spacing=3.0)
    return [make_case(k, cfg) for k in range(cfg.cases)]


# --- determinism -----------------------------------------------------------------------------------


def test_same_seed_same_case_whatever_the_number_of_cases():
    a = make_case(1, FAST)
    b = make_case(1, PhantomConfig(cases=10, seed=0, spacing=4.0))
    assert a.case_id == b.case_id == "PHANTOM_001"
    for m in MODALITIES:
        np.testing.assert_array_equal(a.images[m], b.images[m])
    np.testing.assert_array_equal(a.label, b.label)


def test_other_seed_or_index_gives_another_case():
    a = make_case(1, FAST)
    assert not np.array_equal(a.label, make_case(1, PhantomConfig(cases=3, seed=1, spacing=4.0)).label)
    assert not np.array_equal(a.label, make_case(2, FAST).label)


def test_same_tumour_at_every_spacing():
    # Random fields are drawn in millimetres, so a case is one tumour seen at several resolutions.
    vols = [np.bincount(make_case(0, PhantomConfig(spacing=s)).label.ravel(), minlength=4)[1:] * s**3
            for s in (3.0, 4.0)]
    np.testing.assert_allclose(vols[0].sum(), vols[1].sum(), rtol=0.25)


def test_negative_index_is_refused():
    with pytest.raises(ValueError, match="index"):
        make_case(-1, FAST)


# --- anatomy of the tumour --------------------------------------------------------------------------


def test_geometry_is_the_mni_box(cases):
    shape, affine = pa.grid_geometry(3.0)
    assert cases[0].label.shape == shape == (66, 78, 63)
    np.testing.assert_allclose(cases[0].affine, affine)
    np.testing.assert_allclose(affine[:3, 3], [-98.0, -134.0, -72.0])  # the MNI origin
    np.testing.assert_allclose(affine[:3, :3], np.diag([3.0] * 3))
    assert cases[0].label.dtype == np.uint8
    assert all(v.dtype == np.float32 and v.shape == shape for v in cases[0].images.values())


def test_every_subregion_present_and_nested(cases):
    for case in cases:
        counts = np.bincount(case.label.ravel(), minlength=4)
        assert counts[CORE] > 0 and counts[EDEMA] > 0 and counts[ENHANCING] > 0
        r = region_masks(case.label)
        assert np.all(r["ET"] <= r["TC"]) and np.all(r["TC"] <= r["WT"])
        assert ndimage.label(r["TC"])[1] == 1  # one core
        # Edema surrounds the core: every brain voxel touching the core belongs to the tumour.
        brain = case.images["flair"] > 0
        ring = ndimage.binary_dilation(r["TC"], np.ones((3, 3, 3), bool)) & ~r["TC"] & brain
        assert ring.any() and np.all(case.label[ring] > 0)
        assert r["WT"].sum() > 1.5 * r["TC"].sum()


def test_tumour_is_in_white_matter_of_one_hemisphere(cases):
    sides = set()
    for case in cases:
        centre = np.argwhere(region_masks(case.label)["TC"]).mean(axis=0)
        world = case.affine[:3, :3] @ centre + case.affine[:3, 3]
        sides.add(np.sign(world[0]))
        tc = region_masks(case.label)["TC"]
        # Most of the tumour core sits where the (deformed) anatomy is mostly white matter.
        assert case.tissues["wm"][tc].mean() > 0.4
    assert sides == {-1.0, 1.0}  # this seed puts tumours in both hemispheres


def test_tumour_in_brain_and_background_zero(cases):
    for case in cases:
        brain = case.images["flair"] > 0
        assert np.all(brain[case.label > 0])
        for m in MODALITIES:
            assert np.array_equal(case.images[m] > 0, brain)  # one brain mask for all sequences
            assert np.all(case.images[m] == np.rint(case.images[m]))  # exactly what int16 stores
        assert 1.2e6 < brain.sum() * 27 < 2.2e6  # an adult brain volume (mm^3)


def test_tumour_sizes_vary(cases):
    sizes = [int((c.label > 0).sum()) for c in cases]
    assert max(sizes) > 2 * min(sizes)
    cores = [int(region_masks(c.label)["TC"].sum()) for c in cases]
    assert max(cores) > 2 * min(cores)


# --- clinical contrasts -----------------------------------------------------------------------------


def _region_means(case):
    """Mean intensity per region, each sequence normalised by its brain mean."""
    lab, t = case.label, case.tissues
    regions = {
        "wm": (t["wm"] > 0.9) & (lab == 0), "gm": (t["gm"] > 0.8) & (lab == 0),
        "csf": (t["csf"] > 0.8) & (lab == 0), "edema": lab == EDEMA, "core": lab == CORE,
        "enh": lab == ENHANCING, "tumour": lab > 0,
    }
    brain = case.images["flair"] > 0
    out = {}
    for m in MODALITIES:
        img = case.images[m] / case.images[m][brain].mean()
        out[m] = {k: float(img[mask].mean()) for k, mask in regions.items()}
    return out


def test_clinical_contrasts_hold_on_average(cases):
    means = [_region_means(c) for c in cases]

    def avg(m, k):
        return np.mean([x[m][k] for x in means])

    assert avg("flair", "edema") > 1.25 * avg("flair", "wm")  # FLAIR: edema bright
    assert avg("flair", "csf") < 0.5 * avg("flair", "wm")  # FLAIR: CSF suppressed
    assert avg("t2", "csf") > 1.5 * avg("t2", "wm")  # T2: CSF bright
    assert avg("t2", "edema") > 1.25 * avg("t2", "wm")  # T2: edema bright
    assert avg("t2", "core") > 1.5 * avg("t2", "wm")  # T2: necrosis bright
    assert avg("t1ce", "enh") > 1.8 * avg("t1ce", "core")  # T1c: rim bright, necrosis dark
    assert avg("t1ce", "enh") > 1.8 * avg("t1", "enh")  # enhancement only with contrast
    assert avg("t1", "tumour") < 0.9 * avg("t1", "wm")  # T1: tumour mildly dark
    assert avg("t1", "wm") > 1.2 * avg("t1", "gm") > avg("t1", "csf")  # T1: WM > GM > CSF
    # No sequence carries everything: T1c hardly shows the edema, T2 hardly tells ET from edema.
    assert abs(avg("t1ce", "edema") / avg("t1ce", "wm") - 1) < 0.25
    assert abs(avg("t2", "enh") / avg("t2", "edema") - 1) < 0.25


def test_contrast_holds_in_every_case(cases):
    for x in map(_region_means, cases):
        assert x["flair"]["edema"] > x["flair"]["wm"] and x["t1ce"]["enh"] > x["t1ce"]["core"]


# --- writing ----------------------------------------------------------------------------------------


def test_written_layout_labels_and_images(tmp_path):
    paths = write_phantom(tmp_path / "ph", FAST, progress=False)
    assert [p.name for p in paths] == ["PHANTOM_000", "PHANTOM_001", "PHANTOM_002"]
    expected = {f"PHANTOM_000_{s}.nii.gz" for s in (*MODALITIES, "seg")}
    assert {p.name for p in paths[0].iterdir()} == expected
    case = make_case(0, FAST)
    seg = nib.load(paths[0] / "PHANTOM_000_seg.nii.gz")
    raw = np.asarray(seg.dataobj)
    assert set(np.unique(raw).tolist()) == {0, 1, 2, 4}
    np.testing.assert_array_equal(to_canonical(raw, "brats2021"), case.label)
    for m in MODALITIES:
        img = nib.load(paths[0] / f"PHANTOM_000_{m}.nii.gz")
        assert img.get_data_dtype() == np.int16
        np.testing.assert_allclose(img.affine, case.affine)
        np.testing.assert_array_equal(np.asarray(img.dataobj, dtype=np.float32), case.images[m])
    info = json.loads((tmp_path / "ph" / "phantom.json").read_text())
    assert info["seed"] == 0 and info["spacing"] == 4.0 and info["cases"] == 3
    assert info["layout"] == "brats2021"


def test_second_run_skips_existing_cases_and_adds_missing(tmp_path):
    write_phantom(tmp_path, PhantomConfig(cases=2, seed=0, spacing=4.0), progress=False)
    f = tmp_path / "PHANTOM_001" / "PHANTOM_001_t2.nii.gz"
    before = f.stat().st_mtime_ns
    paths = write_phantom(tmp_path, FAST, progress=False)
    assert f.stat().st_mtime_ns == before and len(paths) == 3 and paths[2].is_dir()
    write_phantom(tmp_path, FAST, progress=False, overwrite=True)
    assert f.stat().st_mtime_ns != before


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    write_phantom(tmp_path, FAST, progress=False)
    with pytest.raises(ValueError, match="seed"):
        write_phantom(tmp_path, PhantomConfig(cases=3, seed=5, spacing=4.0), progress=False)
    # overwrite makes the folder hold exactly the new phantom, extra old cases included
    write_phantom(tmp_path, PhantomConfig(cases=2, seed=5, spacing=4.0), progress=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PHANTOM_000", "PHANTOM_001", "phantom.json"]
    np.testing.assert_array_equal(
        to_canonical(np.asarray(nib.load(tmp_path / "PHANTOM_001" / "PHANTOM_001_seg.nii.gz").dataobj),
                     "brats2021"),
        make_case(1, PhantomConfig(cases=2, seed=5, spacing=4.0)).label,
    )


def test_interrupted_write_leaves_no_case_and_no_temporary(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = ph.save_nifti

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # in the middle of the second case
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(ph, "save_nifti", failing)
    with pytest.raises(OSError, match="disk full"):
        write_phantom(tmp_path, FAST, progress=False)
    # the first case is complete, the second left nothing (no folder, no hidden temporary)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PHANTOM_000", "phantom.json"]
    assert len(list((tmp_path / "PHANTOM_000").iterdir())) == 5
    monkeypatch.setattr(ph, "save_nifti", real)
    write_phantom(tmp_path, FAST, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [f"PHANTOM_00{k}" for k in range(3)]


def test_nothing_is_downloaded(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the phantom tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    pa.mni_1mm.cache_clear()
    pa.anatomy.cache_clear()
    pa.placement.cache_clear()
    case = make_case(0, FAST)
    assert case.label.any()


# --- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"cases": 0}, "cases"), ({"cases": 2.5}, "cases"), ({"cases": True}, "cases"),
     ({"seed": -1}, "seed"), ({"spacing": 0.1}, "spacing"), ({"spacing": 9}, "spacing"),
     ({"spacing": float("nan")}, "spacing"), ({"deformation_mm": -1}, "deformation_mm"),
     ({"noise": -0.1}, "noise"), ({"bias": 2.0}, "bias")],
)
def test_config_validation_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PhantomConfig(**kwargs)


# --- the figure -------------------------------------------------------------------------------------


def test_figure_has_five_axes_and_handles_missing_modalities(cases):
    fig = plot_case(cases[0].images, cases[0].label, title="x")
    assert isinstance(fig, Figure) and len(fig.axes) == 5
    partial = {m: v for m, v in cases[0].images.items() if m != "t1"}
    assert len(plot_case(partial, None, axis=1).axes) == 5
    assert len(plot_case(cases[0].images, cases[0].label, axis=0, slice_index=30).axes) == 5
    with pytest.raises(ValueError, match="slice_index"):
        plot_case(cases[0].images, cases[0].label, slice_index=999)


def test_best_slice_has_the_most_tumour(cases):
    lab = cases[0].label
    k = best_slice(lab, axis=2)
    assert (lab[:, :, k] > 0).sum() == max((lab[:, :, z] > 0).sum() for z in range(lab.shape[2]))


def test_save_figure_is_atomic(tmp_path, cases, monkeypatch):
    fig = plot_case(cases[0].images, cases[0].label)
    out = save_figure(fig, tmp_path / "sub" / "case.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def broken(*args, **kwargs):
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        save_figure(fig, tmp_path / "other.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


@pytest.mark.slow
def test_paper_grid_1mm():
    case = make_case(0, PhantomConfig(cases=1, spacing=1.0))
    assert case.label.shape == (197, 233, 189)
    assert np.bincount(case.label.ravel(), minlength=4).min() > 0
