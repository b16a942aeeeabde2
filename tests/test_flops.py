"""``mmdis summary``'s counts (benchmarks.flops): parameters and FLOPs of every model variant."""

from __future__ import annotations

from benchmarks.flops import ALL, format_summary, summarize
from mmdis.models import VARIANTS, build_model


def test_summarize_tiny():
    rows = summarize(size=16, base_channels=4)
    assert [r["variant"] for r in rows] == list(ALL) == list(VARIANTS)
    for r in rows:
        assert r["params"] > 0 and r["train_flops"] > r["forward_flops"] > 0
    by_name = {r["variant"]: r for r in rows}
    assert by_name["robustseg"]["params"] > by_name["ablation-mean"]["params"]
    assert by_name["ablation-mean-dis"]["forward_flops"] > by_name["ablation-mean"]["forward_flops"]
    table = format_summary(rows)
    assert all(name in table for name in VARIANTS) and "GFLOP" in table


def test_summarize_meta_matches_cpu():
    """Counting on the meta device (nothing computed) gives the numbers of a real CPU run."""
    meta = summarize(["robustseg", "imputation"], size=16, base_channels=4, device="meta")
    cpu = summarize(["robustseg", "imputation"], size=16, base_channels=4, device="cpu")
    assert meta == cpu
    model = build_model("robustseg", base_channels=4)
    assert meta[0]["params"] == sum(p.numel() for p in model.parameters())
