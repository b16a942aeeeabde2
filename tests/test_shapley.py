"""Exact Shapley values of the sequences: known answers by construction, the axioms, the tidy-table
route with its bootstrap, and the heatmap."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mmdis.conventions import MODALITIES, MODALITY_NAMES, SUBSETS, subset_name
from mmdis.evaluation.shapley import (
    bootstrap_shapley,
    case_shapley,
    contribution_share,
    shapley_table,
    shapley_values,
    shapley_weights,
)
from mmdis.plotting.shapley import plot_shapley_heatmap

NAMES = [MODALITY_NAMES[m] for m in MODALITIES]


def _game(v) -> np.ndarray:
    """A 4-player game over bit masks from a function of the availability tuple."""
    return np.array([v(tuple(bool(t >> i & 1) for i in range(4))) for t in range(16)], float)


def _brute_force(game: np.ndarray, n: int = 4) -> np.ndarray:
    """Shapley values as the mean marginal gain over all n! arrival orders."""
    phi = np.zeros(n)
    orders = list(itertools.permutations(range(n)))
    for order in orders:
        seen = 0
        for i in order:
            phi[i] += game[seen | 1 << i] - game[seen]
            seen |= 1 << i
    return phi / len(orders)


def test_an_additive_game_gives_each_player_its_own_worth():
    worth = np.array([0.3, 0.05, 0.2, 0.25])
    np.testing.assert_allclose(shapley_values(_game(lambda s: worth[list(s)].sum())), worth, atol=1e-12)


def test_a_game_where_only_t1c_matters_gives_t1c_everything():
    phi = shapley_values(_game(lambda s: 0.7 if s[2] else 0.0))
    np.testing.assert_allclose(phi, [0, 0, 0.7, 0], atol=1e-12)


def test_interchangeable_sequences_share_equally():
    # FLAIR or T2 (either one suffices) gives 0.8; nothing else counts.
    phi = shapley_values(_game(lambda s: 0.8 if s[0] or s[3] else 0.0))
    np.testing.assert_allclose(phi, [0.4, 0, 0, 0.4], atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_random_games_match_the_permutation_definition_and_are_efficient(seed):
    game = np.random.default_rng(seed).uniform(size=16)
    game[0] = 0.0
    phi = shapley_values(game)
    np.testing.assert_allclose(phi, _brute_force(game), atol=1e-12)
    assert phi.sum() == pytest.approx(game[-1])  # efficiency: the values share out v(N)


def test_the_weights_are_those_of_the_definition_and_the_shape_is_checked():
    w = shapley_weights(4)
    assert w.shape == (16, 4) and np.allclose(w.sum(axis=0), 0)  # a constant game gives nothing
    assert w[0b1111, 0] == pytest.approx(1 / 4) and w[0, 0] == pytest.approx(-1 / 4)
    with pytest.raises(ValueError, match="2\\*\\*n"):
        shapley_values(np.zeros(15))


def _tidy(values: dict[str, float], case: str = "c0", method: str = "robustseg", region: str = "WT") -> list:
    return [{"method": method, "case": case, "subset": name, "region": region, "metric": "dice",
             "value": values[name]} for name in values]


def test_case_shapley_reads_the_tidy_table_by_subset_name():
    # ET depends on T1c alone, WT is additive over FLAIR and T2: the paper's single-modality story.
    names = {subset_name(s): s for s in SUBSETS}
    et = {n: 0.6 * s[2] for n, s in names.items()}
    wt = {n: 0.5 * s[0] + 0.3 * s[3] for n, s in names.items()}
    rows = _tidy(et, region="ET") + _tidy(wt, region="WT") + _tidy(wt, case="c1", region="WT")
    rows += [{"method": "robustseg", "case": "c0", "subset": "T1", "region": "WT", "metric": "hd95",
              "value": 9.0}]
    per_case = case_shapley(pd.DataFrame(rows))
    got = per_case.set_index(["case", "region", "modality"])["shapley"]
    assert got[("c0", "ET", "T1c")] == pytest.approx(0.6) and got[("c0", "ET", "FLAIR")] == pytest.approx(0)
    assert got[("c1", "WT", "FLAIR")] == pytest.approx(0.5) and got[("c1", "WT", "T2")] == pytest.approx(0.3)
    sums = per_case.groupby(["case", "region"])[["shapley", "full"]].agg({"shapley": "sum", "full": "first"})
    np.testing.assert_allclose(sums["shapley"], sums["full"])
    assert list(per_case["modality"].unique()) == NAMES


def test_case_shapley_refuses_a_missing_subset():
    values = {subset_name(s): 0.5 for s in SUBSETS[:-1]}  # no full set
    with pytest.raises(ValueError, match="all 15 subsets"):
        case_shapley(pd.DataFrame(_tidy(values)))


def _per_case(n_cases: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_cases):
        t1c = rng.uniform(0.4, 0.8)
        rows += _tidy({subset_name(s): t1c * s[2] for s in SUBSETS}, case=f"c{c}", region="ET")
    return case_shapley(pd.DataFrame(rows))


def test_the_bootstrap_is_seeded_and_its_interval_holds_the_mean():
    per_case = _per_case(12)
    a, b = bootstrap_shapley(per_case, n_boot=300, seed=3), bootstrap_shapley(per_case, n_boot=300, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(bootstrap_shapley(per_case, n_boot=300, seed=4))
    t1c = a.set_index("modality").loc["T1c"]
    assert t1c["low"] <= t1c["mean"] <= t1c["high"] and t1c["low"] < t1c["high"] and t1c["cases"] == 12
    flair = a.set_index("modality").loc["FLAIR"]
    assert flair["low"] == flair["high"] == 0  # a sequence that never counts has a zero-width interval


def test_the_heatmap_is_a_figure_with_one_cell_per_sequence_and_region():
    summary = bootstrap_shapley(_per_case(5), n_boot=50)
    fig = plot_shapley_heatmap(summary)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ET"]
    assert len(ax.texts) == 4
    with pytest.raises(ValueError, match="name one"):
        plot_shapley_heatmap(pd.concat([summary, summary.assign(method="hemis")]))


def test_the_table_and_the_shares_read_the_summary():
    summary = bootstrap_shapley(_per_case(4), n_boot=50)
    table = shapley_table(summary)
    assert list(table.index) == [("robustseg", n) for n in NAMES] and list(table.columns) == ["ET"]
    assert table.loc[("robustseg", "FLAIR"), "ET"] == "0.0 [0.0, 0.0]"
    assert contribution_share(summary, "robustseg", ["T1c"], "ET") == pytest.approx(100)
    zero = summary.assign(mean=0.0)
    assert np.isnan(contribution_share(zero, "robustseg", ["T1c"], "ET"))
