"""Worker of ``tests/test_ddp.py``: one rank of a DDP training run on the CPU (gloo), started by torchrun.

Usage::

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py CACHE_DIR OUT_DIR

Trains the smoke profile three times: ``OUT_DIR/straight`` in one go, ``OUT_DIR/resumed`` stopped after
the first epoch and resumed. Each call of :func:`mmdis.training.train` creates and destroys the process
group itself. Writes ``OUT_DIR/rank<r>.json`` with what this rank saw: hashes of its network at
initialisation and after each run, the patch indices it drew per epoch, how often it wrote a run file,
and the result dicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from mmdis.data.datasets import PatchDataset
from mmdis.training import TrainConfig, loop, make_config, runlog, train


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 of every tensor of the state dict, in key order."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(cache_dir: str, out_dir: str) -> None:
    rank = int(os.environ["RANK"])
    out = Path(out_dir)
    record: dict = {"rank": rank, "init": [], "trained": [], "indices": {}, "writes": 0, "results": []}

    # The network each train() call builds is trained in place (DDP wraps it), so keep a handle on it.
    built: list[torch.nn.Module] = []
    build = TrainConfig.build_model

    def capture(self: TrainConfig) -> torch.nn.Module:
        model = build(self)
        record["init"].append(weights_hash(model))
        built.append(model)
        return model

    TrainConfig.build_model = capture

    get_item = PatchDataset.__getitem__
    current_run = {"name": ""}

    def logged_item(self: PatchDataset, index: int) -> dict:
        key = f"{current_run['name']}/{self.epoch}"
        record["indices"].setdefault(key, []).append(index)
        return get_item(self, index)

    PatchDataset.__getitem__ = logged_item

    def counted(fn):
        def wrapper(*args, **kwargs):
            record["writes"] += 1
            return fn(*args, **kwargs)
        return wrapper

    # Every function that writes into the run folder, where the loop looks it up.
    for module, name in ((loop, "save_checkpoint"), (loop, "save_json"), (runlog, "write_metrics"),
                         (runlog, "tensorboard_writer")):
        setattr(module, name, counted(getattr(module, name)))

    config = make_config("smoke", "robustseg", epochs=2, iters_per_epoch=2)
    runs = [("straight", {}), ("resumed", {"stop_after": 1}), ("resumed", {"resume": True})]
    for run, kwargs in runs:
        current_run["name"] = f"{run}{'+' if kwargs.get('resume') else ''}"
        result = train(config, cache_dir, out / run, progress=False, **kwargs)
        record["trained"].append(weights_hash(built[-1]))
        record["results"].append(result)
    (out / f"rank{rank}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
