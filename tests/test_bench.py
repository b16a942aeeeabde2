"""`mmdis bench` runs end to end and prints its table (its numbers are read, never asserted)."""

from conftest import write_brats_case

from mmdis.bench import run_benchmarks
from mmdis.data.cache import prepare


def test_bench_prints_every_row(tmp_path, capsys):
    for k in range(3):
        write_brats_case(tmp_path / "raw", f"c{k}", shape=(20, 20, 20), seed=k)
    prepare(tmp_path / "raw", tmp_path / "cache", progress=False)
    rows = dict(run_benchmarks(patch=16, cache_dir=str(tmp_path / "cache"), seconds=0.2, channels=2))
    out = capsys.readouterr().out
    for name in ("loader patches/s (0 workers, 16^3)", "training consumes patches/s",
                 "loader / consumption (target >= 5x)"):
        assert name in rows and name in out
    assert float(rows["training consumes patches/s"]) > 0
