"""Data-parallel training: two CPU processes (gloo) under torchrun, and the invariants DDP relies on."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from ddp_worker import weights_hash
from torch.nn.parallel import DistributedDataParallel

from mmdis.losses import total_loss
from mmdis.models.config import VARIANTS
from mmdis.training import load_checkpoint, make_config, save_checkpoint
from mmdis.training.distributed import Distributed, init_distributed

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def cache_dir(phantom_cache):
    return phantom_cache


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", list(VARIANTS))
def test_every_parameter_gets_a_gradient_under_modality_dropout(method):
    """Why DDP can run with ``find_unused_parameters=False``: whatever modality dropout and missing
    modalities leave out of the fusion, every parameter still takes part in the backward pass (with a
    zero gradient where its modality was dropped). A parameter without a gradient would make DDP wait
    for it and fail at the next step."""
    config = make_config("smoke", method)
    torch.manual_seed(0)
    model = config.build_model().train()
    x = torch.randn(2, 4, 16, 16, 16)  # (B, M, D, H, W)
    y = torch.randint(0, 4, (2, 16, 16, 16))
    available = torch.tensor([[True, True, True, True], [False, True, False, False]])
    for _ in range(3):  # several dropout draws, one sample with a single modality
        out = model(x, available)
        model.zero_grad(set_to_none=True)
        total_loss(out, x, y, config.loss, present=available)["total"].backward()
        missing = [name for name, p in model.named_parameters() if p.grad is None]
        assert not missing, missing


def test_single_process_runs_without_a_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ddp, device = init_distributed("cpu")
    assert ddp == Distributed() and not ddp.active and ddp.main and device == torch.device("cpu")
    assert not dist.is_initialized()


class _TwoRanks(Distributed):
    """Rank 0 of 2 without a process group: ``all_gather`` returns the ranks' val scores of 5 cases."""

    def all_gather(self, obj):
        return [[0.0, 0.2, 0.4], [0.1, 0.3]]


def test_each_rank_takes_its_block_of_patches_and_every_wth_val_case():
    ddp = Distributed(rank=1, world_size=3)
    patches = ddp.shard(list(range(12)), 4)
    assert [patches[i] for i in range(len(patches))] == [4, 5, 6, 7]
    assert ddp.cases(["a", "b", "c", "d", "e"]) == ["b", "e"]
    # The ranks' scores come back in the order of the cases, whatever rank segmented each.
    assert _TwoRanks(rank=0, world_size=2).gather_cases([0.0, 0.2, 0.4]) == [0.0, 0.1, 0.2, 0.3, 0.4]
    alone, model, ids = Distributed(), torch.nn.Linear(1, 1), ["a", "b"]
    assert alone.shard(ids, 2) is ids and alone.cases(ids) == ids and alone.gather_cases([0.5]) == [0.5]
    assert alone.wrap(model, torch.device("cpu")) is model


def test_checkpoint_of_a_wrapped_model_loads_into_a_bare_one(tmp_path):
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = make_config("smoke", "hemis").build_model()
        wrapped = DistributedDataParallel(model)
        save_checkpoint(tmp_path / "c.pt", model=wrapped, epoch=1, step=2)
    finally:
        dist.destroy_process_group()
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    assert ckpt["method"] == "hemis" and not any(k.startswith("module.") for k in ckpt["model"])
    bare = make_config("smoke", "hemis").build_model()
    load_checkpoint(tmp_path / "c.pt", bare, restore_rng=False)
    for (name, p), q in zip(model.state_dict().items(), bare.state_dict().values()):
        assert torch.equal(p, q), name


@pytest.mark.slow
def test_two_cpu_processes_train_one_run(cache_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER),
           str(cache_dir), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]

    # One run folder, written by rank 0 alone: no second metrics.csv or checkpoint anywhere.
    straight = out / "straight"
    expected = {"config.json", "env.json", "metrics.csv", "last.pt"}
    assert expected <= {p.name for p in straight.iterdir()} <= expected | {"tb"}
    assert sorted(p.name for p in out.rglob("last.pt")) == ["last.pt", "last.pt"]  # straight, resumed
    assert sorted(p.name for p in out.rglob("metrics.csv")) == ["metrics.csv", "metrics.csv"]
    assert ranks[0]["writes"] > 0 and ranks[1]["writes"] == 0
    env = json.loads((straight / "env.json").read_text())
    assert env["world_size"] == 2 and env["backend"] == "gloo"
    with open(straight / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]  # global steps, not one row per rank and step

    # Each rank drew its own block of patch indices, every epoch: 2 steps x batch 1 per rank.
    for run in ("straight/0", "straight/1"):
        assert ranks[0]["indices"][run] == [0, 1] and ranks[1]["indices"][run] == [2, 3]

    # Same start, same end on both ranks; training moved the weights.
    assert ranks[0]["init"] == ranks[1]["init"]
    assert ranks[0]["trained"] == ranks[1]["trained"]
    assert ranks[0]["trained"][0] != ranks[0]["init"][0]

    # The checkpoint holds the bare network and loads into a single-process model.
    model = make_config("smoke", "robustseg").build_model()
    ckpt = load_checkpoint(straight / "last.pt", model, restore_rng=False)
    assert (ckpt["epoch"], ckpt["step"]) == (2, 4)
    assert weights_hash(model) == ranks[0]["trained"][0]
    assert len(ckpt["rank_rng"]) == 2
    assert not torch.equal(ckpt["rank_rng"][0]["torch"], ckpt["rank_rng"][1]["torch"])

    # Stopped after epoch 1 and resumed (new process groups each time): exactly the uninterrupted run.
    assert ranks[0]["trained"][2] == ranks[0]["trained"][0]
    with open(out / "resumed" / "metrics.csv", newline="") as f:
        assert [r["total"] for r in csv.DictReader(f)] == [r["total"] for r in rows]

    for rank, record in enumerate(ranks):
        result = record["results"][0]
        assert (result["rank"], result["world_size"], result["step"]) == (rank, 2, 4)
        assert result["peak_memory_mb"] > 0 and result["seconds_per_step"] > 0
        assert result["val_dice_wt"] == ranks[0]["results"][0]["val_dice_wt"]
        assert result["last"] == ranks[0]["results"][0]["last"]  # losses are means over the ranks
