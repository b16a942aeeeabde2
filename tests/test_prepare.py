"""`prepare`: raw folder -> cache, with missing modalities, reuse, and failure without debris."""

import json

import numpy as np
import pytest
from conftest import write_brats_case

from mmdis.data.cache import Cache, PrepareConfig, prepare
from mmdis.data.io import CorruptFileError, MissingModalityError
from mmdis.data.layouts import discover_cases, read_case
from mmdis.data.preprocess import restore_prediction


def test_prepare_flags_missing_modalities_when_allowed(tmp_path):
    write_brats_case(tmp_path / "raw", "a")
    write_brats_case(tmp_path / "raw", "b", modalities=("flair", "t1ce"), seed=1)
    write_brats_case(tmp_path / "raw", "c", seed=2)
    with pytest.raises(MissingModalityError, match="case b"):
        prepare(tmp_path / "raw", tmp_path / "cache", progress=False)
    config = PrepareConfig(allow_missing=True)
    manifest = prepare(tmp_path / "raw", tmp_path / "cache", config, progress=False)
    by_id = {e["case_id"]: e for e in manifest["cases"]}
    assert by_id["b"]["modalities"] == ["flair", "t1ce"]
    assert by_id["b"]["available"] == [True, False, True, False]
    cache = Cache.open(tmp_path / "cache")
    case = cache.load("b")
    assert np.all(case.image[1] == 0) and np.all(case.image[3] == 0)
    assert sorted(cache.case_ids()) == ["a", "b", "c"]


def test_cached_label_restores_to_the_source_grid(tmp_path):
    write_brats_case(tmp_path / "raw", "a")
    prepare(tmp_path / "raw", tmp_path / "cache", progress=False)
    case = Cache.open(tmp_path / "cache").load("a")
    raw = read_case(discover_cases(tmp_path / "raw")[0])
    np.testing.assert_array_equal(restore_prediction(np.asarray(case.label), case.crop), raw.label)


def test_failure_midway_leaves_no_half_written_case(tmp_path):
    write_brats_case(tmp_path / "raw", "a")
    d = write_brats_case(tmp_path / "raw", "b", seed=1)
    (d / "b_t2.nii.gz").write_bytes(b"truncated")
    with pytest.raises(CorruptFileError, match=r"case b.*b_t2\.nii\.gz"):
        prepare(tmp_path / "raw", tmp_path / "cache", progress=False)
    cases = sorted(p.name for p in (tmp_path / "cache" / "cases").iterdir())
    assert cases == ["a"]  # a finished case stays, nothing of b, no temporary folders
    assert not (tmp_path / "cache" / "manifest.json").exists()


def test_changed_parameters_redo_the_case(tmp_path):
    write_brats_case(tmp_path / "raw", "a", shape=(16, 16, 16))
    prepare(tmp_path / "raw", tmp_path / "cache", progress=False)
    m2 = prepare(tmp_path / "raw", tmp_path / "cache", PrepareConfig(spacing=2.0), progress=False)
    assert m2["cases"][0]["spacing"] == [2.0, 2.0, 2.0]
    meta = json.loads((tmp_path / "cache" / "cases" / "a" / "meta.json").read_text())
    assert meta["preprocessing"]["spacing"] == 2.0


@pytest.mark.parametrize(("kwargs", "name"), [({"spacing": 0.0}, "spacing"), ({"margin": -1}, "margin"),
                                               ({"fractions": (1, 1)}, "fractions")])
def test_prepare_config_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PrepareConfig(**kwargs)
