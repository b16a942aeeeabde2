"""Book models: trained runs exported as safetensors beside their provenance, read back without pickle.

A shipped profile is a folder ``mmdis/book_models/<profile>/`` installed with the package. It holds one
folder per method with

================== ==================================================================================
``model.safetensors`` the weights (stored in ``float16`` to halve the size; loaded as ``float32``) and,
                   as metadata, the method, step, epoch and model configuration
``config.json``    the run's :class:`~mmdis.training.config.TrainConfig`
``env.json``       versions and hardware of the training run
``metrics.csv``    the loss terms of every step and the validation Dice
``command.txt``    the command that trains it from scratch
``record.json``    what the tests check: the validation WT Dice of the *stored* weights (float32
                   inference), the first losses of the run, recomputed in float32 at export, and the
                   step time and wall time of the training
================== ==================================================================================

and one ``SHA256SUMS`` over every file. :func:`verify_manifest` refuses a folder whose files do not
match it; :func:`materialise` copies a verified method into a run directory that
:func:`mmdis.evaluation.evaluate.load_run` reads like any other.

Shapes: a state dict maps parameter names to tensors of their module's shapes; nothing here is spatial.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmdis.runtime.files import atomic_path, write_text
from mmdis.training.checkpoint import read_checkpoint

#: Where the shipped profiles live (inside the installed package).
SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "book_models"
WEIGHTS = "model.safetensors"
MANIFEST = "SHA256SUMS"
#: The files of one shipped method, in the order the manifest lists them.
METHOD_FILES = (WEIGHTS, "config.json", "env.json", "metrics.csv", "command.txt", "record.json")
#: Storage dtype of shipped weights.
STORED_DTYPE = torch.float16


#: The loss terms a record keeps, and for how many of the first steps.
LOSS_TERMS = ("total", "seg", "dice", "ce", "rec", "kl")
FIRST_STEPS = 3


def first_losses(metrics_csv: str | Path, steps: int = FIRST_STEPS) -> list[dict[str, float]]:
    """The loss terms of the first ``steps`` rows of a run's ``metrics.csv``."""
    with open(metrics_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))[:steps]
    return [{k: float(row[k]) for k in LOSS_TERMS} for row in rows]


def first_losses_float32(profile: str, method: str, cache_dir: str | Path,
                         steps: int = FIRST_STEPS) -> list[dict[str, float]]:
    """The first ``steps`` losses of ``make_config(profile, method)`` retrained in float32 from its seed.

    The run is the same config stopped after ``steps`` steps of its first epoch (``steps`` is capped at the
    epoch's length): patches are a function of seed, epoch and index, and the first epoch's learning rate
    does not depend on the epoch's length, so these are the recorded run's first steps.
    """
    from mmdis.training.config import make_config
    from mmdis.training.loop import train

    steps = min(steps, make_config(profile, method).iters_per_epoch)
    config = make_config(profile, method, amp="off", iters_per_epoch=steps, snapshots=(), val_every=0)
    with tempfile.TemporaryDirectory() as tmp:
        train(config, cache_dir, Path(tmp) / "run", progress=False, stop_after=1)
        return first_losses(Path(tmp) / "run" / "metrics.csv", steps)


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: nn.Module, path: str | Path, metadata: Mapping[str, Any],
                 dtype: torch.dtype = STORED_DTYPE) -> Path:
    """Write ``model``'s state dict to ``path`` as safetensors (atomically), values JSON-encoded as metadata.

    Raises:
        ValueError: if a weight does not survive the cast to ``dtype`` (overflow to inf).
    """
    from safetensors.torch import save_file

    state = {}
    for name, tensor in model.state_dict().items():
        stored = tensor.detach().to("cpu", dtype if tensor.is_floating_point() else tensor.dtype).contiguous()
        if stored.is_floating_point() and not bool(torch.isfinite(stored).all()):
            raise ValueError(f"weight {name} does not fit in {dtype} (max |w| {tensor.abs().max():.3g})")
        state[name] = stored
    path = Path(path)
    with atomic_path(path, ".safetensors") as tmp:
        save_file(state, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
        os.chmod(tmp, 0o644)  # readable by everyone once installed, like the package's other files
    return path


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict (floating tensors as ``float32``) and the metadata of a safetensors file.

    Only the safetensors format is parsed (a JSON header and raw tensor bytes): nothing is unpickled.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file if it is not a readable safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_meta = handle.metadata() or {}
            state = {k: handle.get_tensor(k) for k in handle.keys()}
        metadata = {k: json.loads(v) for k, v in raw_meta.items()}
    except (SafetensorError, OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable safetensors weights file: {err}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return state, metadata


def write_manifest(folder: str | Path) -> Path:
    """Write ``folder/SHA256SUMS`` (``sha256sum`` format) over every file below ``folder``."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    lines = [f"{sha256(p)}  {p.relative_to(folder).as_posix()}" for p in files]
    return write_text(folder / MANIFEST, "\n".join(lines) + "\n")


def verify_manifest(folder: str | Path, only: str | None = None) -> dict[str, str]:
    """Check every file listed in ``folder/SHA256SUMS`` (those under ``only/`` when given).

    Returns:
        ``{relative path: sha256}`` of the checked files.

    Raises:
        FileNotFoundError: if the manifest or a listed file is missing (named).
        ValueError: naming each file whose checksum differs from the manifest.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} does not exist: {folder} holds no shipped models")
    listed = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            listed[name.strip()] = digest
    if only is not None:
        listed = {k: v for k, v in listed.items() if k.startswith(f"{only}/")}
        if not listed:
            raise FileNotFoundError(f"{manifest} lists no files of {only!r}")
    bad = []
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in {manifest} but missing")
        if sha256(path) != digest:
            bad.append(str(path))
    if bad:
        raise ValueError(f"checksum mismatch against {manifest}: {', '.join(bad)}")
    return listed


def shipped_dir(profile: str) -> Path:
    """``mmdis/book_models/<profile>`` (it may not exist)."""
    return SHIPPED_ROOT / profile


def shipped_methods(profile: str) -> list[str]:
    """The methods shipped for ``profile`` (empty when the profile has no shipped models)."""
    folder = shipped_dir(profile)
    if not (folder / MANIFEST).is_file():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / WEIGHTS).is_file())


def materialise(profile: str, method: str, run_dir: str | Path) -> Path:
    """Copy a verified shipped method into ``run_dir`` (replacing it whole), ready for evaluation.

    An existing ``run_dir`` whose weights already have the shipped checksum is kept (with its cached
    evaluation rows).

    Raises:
        FileNotFoundError: if ``profile`` ships no ``method``.
        ValueError: if a shipped file does not match the manifest.
    """
    folder = shipped_dir(profile)
    if method not in shipped_methods(profile):
        raise FileNotFoundError(f"profile {profile!r} ships no model of {method!r} in {folder} "
                                f"(shipped: {shipped_methods(profile) or 'none'})")
    listed = verify_manifest(folder, only=method)
    run_dir = Path(run_dir)
    current = run_dir / WEIGHTS
    if current.is_file() and sha256(current) == listed[f"{method}/{WEIGHTS}"]:
        return run_dir
    with atomic_path(run_dir) as tmp:
        shutil.copytree(folder / method, tmp)
    return run_dir


def export_run(run_dir: str | Path, dest: str | Path, command: str, record: Mapping[str, Any]) -> Path:
    """Export a finished run's ``last.pt`` into ``dest`` as a shipped method folder (atomically).

    Args:
        run_dir: a training run (``config.json``, ``env.json``, ``metrics.csv``, ``last.pt``).
        dest: the method's folder, e.g. ``mmdis/book_models/cpu/robustseg``.
        command: the command that retrains it from scratch.
        record: the measurements the tests check (see the module docstring).
    """
    from mmdis.models.config import ModelConfig
    from mmdis.models.networks import MultimodalSegNet

    run_dir = Path(run_dir)
    ckpt = read_checkpoint(run_dir / "last.pt")
    model = MultimodalSegNet(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    meta = {"method": ckpt["method"], "epoch": ckpt["epoch"], "step": ckpt["step"],
            "model_config": ckpt["model_config"], "stored_dtype": str(STORED_DTYPE).replace("torch.", ""),
            "last_pt_sha256": sha256(run_dir / "last.pt")}
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        save_weights(model, tmp / WEIGHTS, meta)
        for name in ("config.json", "env.json", "metrics.csv"):
            shutil.copyfile(run_dir / name, tmp / name)
        write_text(tmp / "command.txt", command.strip() + "\n")
        write_text(tmp / "record.json", json.dumps(dict(record), indent=2, sort_keys=True) + "\n")
    return Path(dest)
