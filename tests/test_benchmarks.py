"""`mmdis bench` (benchmarks/) runs end to end and prints its table (its numbers are read, never asserted)."""

import contextlib
import io
import math
import re

import pytest
import torch
from conftest import write_brats_case

from benchmarks.evaluation import count_windows
from benchmarks.run import run_benchmarks
from benchmarks.table import Row, format_table, make_row
from mmdis.data.cache import prepare

#: The start of every row's quantity, in the order printed, for the quick configuration below.
EXPECTED = [
    "train step, smoke profile (16^3, C=4, batch 1, ",
    "peak memory, smoke profile",
    "achieved, smoke profile",
    "train step, custom (16^3, C=2, batch 1, float32)",
    "peak memory, custom float32 batch 1",
    "FLOPs per train step, custom float32 batch 1",
    "achieved, custom float32 batch 1",
    "train step, custom (16^3, C=2, batch 2, bfloat16 autocast)",
    "peak memory, custom bf16 batch 2",
    "conv3d 3x3x3 fwd+bwd, 2->2 ch at 16^3",
    "conv3d 3x3x3 fwd+bwd, 4->4 ch at 8^3",
    "train step (custom float32 batch 1) / best conv3d",
    "encoders' share of one forward pass",
    "15-subset / independent expected from that share",
    "15-subset evaluation, with_recon=False (24^3 volume, 8 x 16^3 windows, C=2)",
    "15 independent passes, with_recon=False",
    "15-subset / independent, with_recon=False",
    "15-subset evaluation, with_recon=True",
    "15 independent passes, with_recon=True",
    "15-subset / independent, with_recon=True",
    "loader, 0 workers (16^3 patches)",
    "loader, 1 worker (16^3 patches)",
    "loader, 2 workers (16^3 patches)",
    "training consumes",
    "best loader / consumption",
]
#: Rows with a target (on the CPU), and the target.
JUDGED = {"peak memory, custom bf16 batch 2": "<= 12",
          "train step (custom float32 batch 1) / best conv3d": ">= 60",
          "15-subset / independent, with_recon=False": "<= 0.35",
          "15-subset / independent, with_recon=True": "<= 0.35",
          "best loader / consumption": ">= 5"}
CUDA_ONLY = ("train step, custom (16^3, C=2, batch 2", "peak memory, custom bf16 batch 2")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick configuration (one thread, 16^3, C = 2, a 24^3 volume), run once: rows and printed text."""
    tmp = tmp_path_factory.mktemp("bench")
    for k in range(3):
        write_brats_case(tmp / "raw", f"c{k}", shape=(20, 20, 20), seed=k)
    prepare(tmp / "raw", tmp / "cache", progress=False)
    threads = torch.get_num_threads()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rows = run_benchmarks(patch=16, cache_dir=str(tmp / "cache"), seconds=0.05, channels=2,
                              profile="smoke", eval_size=24, device="cpu", threads=1)
    assert torch.get_num_threads() == threads  # given back
    return rows, out.getvalue()


def test_every_row_in_order(quick):
    rows, _ = quick
    assert len(rows) == len(EXPECTED)
    for row, start in zip(rows, EXPECTED):
        assert row.quantity.startswith(start), (row.quantity, start)


def test_values_are_well_formed(quick):
    rows, _ = quick
    for row in rows:
        assert row.unit and row.verdict in ("meets", "misses", "n/a")
        if row.quantity.startswith(CUDA_ONLY):  # run on CPU here
            assert row.value is None and row.text == "n/a on CPU" and row.verdict == "n/a"
            continue
        assert row.value is not None and math.isfinite(row.value) and row.value >= 0, row
        assert float(row.text) == pytest.approx(row.value, rel=0.01, abs=1e-3), row
        if row.quantity.startswith("peak memory"):
            continue  # can be 0 when freed memory was reused
        assert row.value > 0, row


def test_targets_and_verdicts(quick):
    rows, _ = quick
    for row in rows:
        target = next((t for q, t in JUDGED.items() if row.quantity.startswith(q)), "-")
        assert row.target == target, row
        if target == "-" or row.value is None:
            assert row.verdict == "n/a", row
        else:
            bound = float(target.split()[1])
            meets = row.value >= bound if target.startswith(">=") else row.value <= bound
            assert row.verdict == ("meets" if meets else "misses"), row


def test_printed_table(quick):
    rows, out = quick
    lines = out.splitlines()
    assert lines[0].startswith("device cpu (") and f"torch {torch.__version__}" in lines[0]
    assert "intra-op threads 1;" in lines[0] and "load average" in lines[0]
    assert lines[1].startswith("peak memory: ")
    header = lines.index(next(line for line in lines if line.startswith("quantity")))
    assert re.fullmatch(r"quantity +value +unit +target +verdict", lines[header])
    body = lines[header + 2:]
    assert len(body) == len(rows)
    for line, row in zip(body, rows):
        assert line.startswith(row.quantity) and line.rstrip().endswith(row.verdict)
        assert f" {row.text}  {row.unit}" in line


def test_row_verdicts():
    assert make_row("a", 0.3, "x", at_most=0.35).verdict == "meets"
    assert make_row("a", 0.4, "x", at_most=0.35).verdict == "misses"
    assert make_row("a", 5.0, "x", at_least=5).verdict == "meets"
    assert make_row("a", None, "GiB", at_most=12, missing="n/a on CPU") == Row("a", None, "GiB", "<= 12",
                                                                                "n/a", "n/a on CPU")
    assert make_row("a", 1234.5, "s").text == "1234" and make_row("a", 0.01234, "s").text == "0.0123"
    assert format_table([make_row("a", 1.0, "s")]).splitlines()[2].split() == ["a", "1", "s", "-", "n/a"]


@pytest.mark.parametrize(("size", "roi", "windows"), [(16, 16, 1), (24, 16, 2), (80, 80, 1), (240, 80, 5),
                                                       (155, 80, 3)])
def test_count_windows_matches_monai(size, roi, windows):
    from monai.inferers import sliding_window_inference

    seen = []

    def predictor(window):
        seen.append(window.shape)
        return window

    sliding_window_inference(torch.zeros(1, 1, size, 2, 2), (roi, 2, 2), 1, predictor, overlap=0.5)
    assert count_windows(size, roi, 0.5) == len(seen) == windows


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multiple of 8"):
        run_benchmarks(patch=12)
    with pytest.raises(ValueError, match="unknown profile"):
        run_benchmarks(patch=16, profile="huge")
    with pytest.raises(ValueError, match="eval_size"):
        run_benchmarks(patch=16, eval_size=8)


def test_native_grid_rows_on_a_case_with_two_modalities(tmp_path):
    from conftest import write_authors_case

    from benchmarks.native import bench_native

    write_authors_case(tmp_path, modalities=("flair", "t1ce"))
    rows = bench_native(tmp_path, patch=16, channels=2, dev=torch.device("cpu"))
    assert [r.unit for r in rows] == ["s", "MiB", "s", "MiB"]
    assert "one predict (2 sequences)" in rows[0].quantity and rows[0].value > 0
    assert "3 subsets" in rows[2].quantity and rows[2].value > 0
    assert all(r.value >= 0 for r in rows)
