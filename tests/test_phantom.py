"""The embedded phantom: determinism, anatomy of the tumour, clinical contrasts, atomic writing."""

import nibabel as nib
import numpy as np
import pytest

from mmdis.conventions import CORE, EDEMA, ENHANCING, MODALITIES, region_masks, to_canonical
from mmdis.data import phantom as ph
from mmdis.data.phantom import PhantomConfig, make_case, write_phantom
from mmdis.viz import plot_case

FAST = PhantomConfig(cases=3, seed=0, spacing=4.0)


@pytest.fixture(scope="module")
def cases():
    cfg = PhantomConfig(cases=4, seed=11, spacing=3.0)
    return [make_case(k, cfg) for k in range(cfg.cases)]


def test_same_seed_same_case_and_independent_of_case_count():
    a = make_case(1, FAST)
    b = make_case(1, PhantomConfig(cases=10, seed=0, spacing=4.0))
    for m in MODALITIES:
        np.testing.assert_array_equal(a.images[m], b.images[m])
    np.testing.assert_array_equal(a.label, b.label)
    c = make_case(1, PhantomConfig(cases=3, seed=1, spacing=4.0))
    assert not np.array_equal(a.label, c.label)


def test_every_subregion_present_and_nested(cases):
    for case in cases:
        counts = np.bincount(case.label.ravel(), minlength=4)
        assert counts[CORE] > 0 and counts[EDEMA] > 0 and counts[ENHANCING] > 0
        r = region_masks(case.label)
        assert np.all(r["ET"] <= r["TC"]) and np.all(r["TC"] <= r["WT"])
        # the core sits inside the whole tumour's bounding box, edema surrounds it
        wt = np.argwhere(r["WT"])
        tc = np.argwhere(r["TC"])
        assert np.all(tc.min(0) >= wt.min(0)) and np.all(tc.max(0) <= wt.max(0))
        assert r["WT"].sum() > 1.5 * r["TC"].sum()


def test_tumour_lies_in_the_brain_and_background_is_zero(cases):
    for case in cases:
        brain = case.images["flair"] > 0
        assert np.all(brain[case.label > 0])
        for m in MODALITIES:
            assert np.array_equal(case.images[m] > 0, brain)  # one brain mask for all sequences


def test_tumour_size_varies(cases):
    sizes = [int((c.label > 0).sum()) for c in cases]
    assert max(sizes) > 1.3 * min(sizes)


def _norm_means(case):
    brain = case.images["flair"] > 0
    out = {}
    for m in MODALITIES:
        img = case.images[m] / case.images[m][brain].mean()
        out[m] = {
            "edema": img[case.label == EDEMA].mean(),
            "core": img[case.label == CORE].mean(),
            "enh": img[case.label == ENHANCING].mean(),
            "healthy": img[brain & (case.label == 0)].mean(),
        }
    return out


def test_clinical_contrasts_hold_on_average(cases):
    tpl = ph._template()
    means = [_norm_means(c) for c in cases]

    def avg(m, k):
        return np.mean([x[m][k] for x in means])

    assert avg("flair", "edema") > 1.3 * avg("flair", "healthy")  # FLAIR: edema bright
    assert avg("t2", "edema") > 1.2 * avg("t2", "healthy")  # T2: edema bright
    assert avg("t1ce", "enh") > 1.5 * avg("t1ce", "core")  # T1c: rim bright, necrosis dark
    assert avg("t1ce", "enh") > 1.3 * avg("t1", "enh")  # enhancement only with contrast
    assert avg("t1", "edema") < avg("t1", "healthy")  # T1: tumour mildly dark
    assert avg("t1ce", "edema") < 1.1 * avg("t1ce", "healthy")  # T1c does not show edema
    # CSF: suppressed on FLAIR, bright on T2 (sampled where the undeformed template is pure CSF)
    case = cases[0]
    shape, _ = ph.output_grid(3.0)
    idx = np.indices(shape) * 3
    csf = tpl["csf"][tuple(idx)] > 0.9
    csf &= case.label == 0
    brain = case.images["flair"] > 0
    flair, t2 = (case.images[m] / case.images[m][brain].mean() for m in ("flair", "t2"))
    assert flair[csf].mean() < 0.7 and t2[csf].mean() > 1.2


def test_written_layout_and_labels(tmp_path):
    paths = write_phantom(tmp_path / "ph", FAST, progress=False)
    assert [p.name for p in paths] == ["PHANTOM_000", "PHANTOM_001", "PHANTOM_002"]
    case = make_case(0, FAST)
    seg = nib.load(paths[0] / "PHANTOM_000_seg.nii.gz")
    values = set(np.unique(np.asarray(seg.dataobj)).tolist())
    assert values == {0, 1, 2, 4}
    np.testing.assert_array_equal(to_canonical(np.asarray(seg.dataobj), "brats2021"), case.label)
    flair = nib.load(paths[0] / "PHANTOM_000_flair.nii.gz")
    np.testing.assert_allclose(flair.affine[:3, :3], np.diag([4.0] * 3))
    np.testing.assert_allclose(np.asarray(flair.dataobj), np.rint(case.images["flair"]))
    assert (tmp_path / "ph" / "phantom.json").is_file()


def test_second_run_reuses_cases_and_refuses_other_settings(tmp_path):
    write_phantom(tmp_path, FAST, progress=False)
    f = tmp_path / "PHANTOM_001" / "PHANTOM_001_t2.nii.gz"
    before = f.stat().st_mtime_ns
    write_phantom(tmp_path, FAST, progress=False)
    assert f.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="seed"):
        write_phantom(tmp_path, PhantomConfig(cases=3, seed=5, spacing=4.0), progress=False)


def test_interrupted_write_leaves_no_case(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = ph.save_nifti

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(ph, "save_nifti", failing)
    with pytest.raises(OSError, match="disk full"):
        write_phantom(tmp_path, FAST, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"cases": 0}, "cases"), ({"spacing": 0.1}, "spacing"), ({"spacing": 9}, "spacing"),
     ({"noise": -1}, "noise")],
)
def test_config_validation_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PhantomConfig(**kwargs)


def test_preview_figure(cases):
    fig = plot_case(cases[0].images, cases[0].label, title="x")
    assert len(fig.axes) == 5
    partial = {m: v for m, v in cases[0].images.items() if m != "t1"}
    assert len(plot_case(partial, None).axes) == 5


@pytest.mark.slow
def test_paper_grid_1mm():
    case = make_case(0, PhantomConfig(cases=1, spacing=1.0))
    assert case.label.shape == (197, 233, 189)
    assert np.bincount(case.label.ravel(), minlength=4).min() > 0
