"""The training-budget study: snapshots found, summaries computed right on tables whose answer is known,
and a real (smoke) run with snapshots evaluated end to end."""

from __future__ import annotations

import pandas as pd
import pytest

from mmdis.plotting.study import plot_study
from mmdis.study import run_study, snapshots, study_summary, subsets_evaluated
from mmdis.training.config import make_config
from mmdis.training.loop import train


def _write_study(folder, rows, gates=None, floor=None):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "rows.csv", index=False)
    if gates is not None:
        pd.DataFrame(gates).to_csv(folder / "gates.csv", index=False)
    pd.DataFrame(floor or [{"modality": "FLAIR", "psnr": 10.0, "ssim": 0.1}]).to_csv(folder / "floor.csv",
                                                                                      index=False)


def _dice(method, step, subset, region, value, case="a"):
    return {"method": method, "case": case, "subset": subset, "region": region, "metric": "dice",
            "value": value, "step": step}


def test_dice_is_averaged_over_cases_first_then_subsets(tmp_path):
    # Subset T1 has two cases (0.2, 0.4 -> 0.3), subset T2 one (0.9): the subset average is 0.6, whereas a
    # plain mean of the three rows would be 0.5.
    rows = [_dice("robustseg", 400, "T1", "WT", 0.2, "a"), _dice("robustseg", 400, "T1", "WT", 0.4, "b"),
            _dice("robustseg", 400, "T2", "WT", 0.9, "a")]
    _write_study(tmp_path, rows)
    s = study_summary(tmp_path)
    value = s[(s["quantity"] == "dice") & (s["region"] == "WT")]["value"].item()
    assert value == pytest.approx(0.6)
    assert subsets_evaluated(tmp_path) == 2


def test_psnr_counts_only_missing_sequences_above_the_floor(tmp_path):
    rows = [{"method": "robustseg", "case": "a", "subset": "T1", "region": "FLAIR", "metric": "psnr",
             "value": 14.0, "step": 400},  # FLAIR missing: 4 dB above the 10 dB floor
            {"method": "robustseg", "case": "a", "subset": "FLAIR+T1", "region": "FLAIR", "metric": "psnr",
             "value": 30.0, "step": 400}]  # FLAIR an input: not a reconstruction of a missing sequence
    _write_study(tmp_path, rows + [_dice("robustseg", 400, "T1", "WT", 0.5)])
    s = study_summary(tmp_path)
    rec = s[s["quantity"] == "psnr_missing_above_floor"]
    assert rec["region"].tolist() == ["FLAIR"] and rec["value"].item() == pytest.approx(4.0)


def test_gate_spread_and_ablation_rank(tmp_path):
    gates = [{"stage": 0, "modality": m, "region": "edema", "mean_gate": g, "voxels": 10,
              "method": "robustseg", "step": 400, "case": "a"} for m, g in (("FLAIR", 0.9), ("T1", 0.3))]
    gates.append({"stage": 1, "modality": "T1", "region": "edema", "mean_gate": 0.0, "voxels": 10,
                  "method": "robustseg", "step": 400, "case": "a"})  # stage 1: not in the summary
    rows = [_dice("ablation-mean", 400, "T1", "WT", 0.7), _dice("ablation-mean-dis", 400, "T1", "WT", 0.5),
            _dice("robustseg", 400, "T1", "WT", 0.9), _dice("hemis", 400, "T1", "WT", 0.99)]
    _write_study(tmp_path, rows, gates)
    s = study_summary(tmp_path)
    spread = s[(s["quantity"] == "gate_spread") & (s["region"] == "edema")]["value"].item()
    assert spread == pytest.approx(0.6)
    mean = s[s["quantity"] == "mean_gate"].set_index("region")["value"]
    assert mean["edema/FLAIR"] == pytest.approx(0.9) and mean["edema/T1"] == pytest.approx(0.3)
    rank = s[s["quantity"] == "ablation_rank"].set_index("method")["value"]
    # HeMIS is not one of the ablation's variants.
    assert rank.to_dict() == {"robustseg": 1, "ablation-mean": 2, "ablation-mean-dis": 3}
    fig = plot_study(s)
    assert len(fig.axes) == 4


def test_a_run_without_snapshots_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    assert snapshots(tmp_path / "run") == {}
    with pytest.raises(ValueError, match="no snapshots"):
        run_study({"robustseg": tmp_path / "run"}, tmp_path / "cache", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_run_study_on_a_smoke_run(phantom_cache, tmp_path):
    config = make_config("smoke", "robustseg", snapshots=(2, 4))
    train(config, phantom_cache, tmp_path / "run", progress=False)
    assert list(snapshots(tmp_path / "run")) == [2, 4]
    out = run_study({"robustseg": tmp_path / "run"}, phantom_cache, tmp_path / "study", progress=False)
    s = study_summary(out)
    assert set(s["step"]) == {2, 4}
    assert {"dice", "mean_gate", "gate_spread", "psnr_missing_above_floor"} <= set(s["quantity"])
    assert s["value"].notna().any()
    provenance = (out / "provenance.json").read_text()
    assert "step_000002.pt" in provenance and "sha256" in provenance
