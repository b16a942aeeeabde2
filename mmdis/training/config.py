"""Typed configuration of a training run (:class:`TrainConfig`), resolved from a profile by make_config.

A run is fully described by one :class:`TrainConfig`; :func:`mmdis.training.train` saves it as
``config.json`` beside the checkpoints (nanoGPT's habit), and :meth:`TrainConfig.from_dict` reads it back.
:func:`make_config` resolves a named profile (:data:`mmdis.profiles.PROFILES`) and a method, then applies
overrides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mmdis.data.datasets import PatchConfig
from mmdis.losses import LossConfig
from mmdis.models.config import VARIANTS, ModelConfig, variant_config
from mmdis.models.networks import SIZE_MULTIPLE, MultimodalSegNet
from mmdis.profiles import get_profile
from mmdis.runtime.configs import check_fields, check_name, check_types
from mmdis.runtime.device import AMP_MODES


@dataclass(frozen=True)
class OptimConfig:
    r"""Adam with the poly learning-rate decay of the paper.

    .. math:: \eta_e = \eta_0 \left(1 - \frac{e}{E}\right)^{p}

    Attributes:
        lr: :math:`\eta_0`, the initial learning rate (paper: 1e-4).
        weight_decay: Adam's (coupled) L2 weight decay; the paper is silent, the authors' code uses 1e-4,
            which the ``paper`` profile takes.
        poly_power: :math:`p` (paper: 0.9).
    """

    lr: float = 1e-4
    weight_decay: float = 0.0
    poly_power: float = 0.9

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be positive, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be non-negative, got {self.weight_decay!r}")
        if self.poly_power < 0:
            raise ValueError(f"optim.poly_power must be non-negative, got {self.poly_power!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        method: a model variant of :data:`~mmdis.models.config.VARIANTS` (``robustseg``, ``hemis``, ...).
        profile: the named profile the config was made from (see :data:`mmdis.profiles.PROFILES`).
        epochs: :math:`E`, number of epochs (the poly schedule decays over them).
        iters_per_epoch: optimiser steps per epoch.
        base_channels: ``C``, width of the first encoder stage.
        batch_size: patches per step (paper: 1).
        seed: seeds the model's initialisation, the patch sampler and modality dropout.
        val_every: validate (WT Dice on the val split) every this many epochs; 0 never.
        amp: mixed precision. ``auto``: bf16 autocast on a CUDA device that supports it, fp16 autocast
            with a loss scaler on an older one, float32 on the CPU. ``bf16``: bf16 autocast on any device
            (on a CPU with AVX512-BF16 the ``cpu`` profile trains 3.6x faster; not with 16^3 patches,
            see :func:`~mmdis.runtime.device.resolve_amp`). ``fp16``: fp16 autocast and a
            ``GradScaler`` on any device. ``off``: float32.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``. Under DDP a CUDA device
            is always ``cuda:LOCAL_RANK``, one GPU per process.
        deterministic: ask torch for deterministic kernels
            (``torch.use_deterministic_algorithms(True, warn_only=True)``, ``cudnn.deterministic``, no
            ``cudnn.benchmark``, ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless set), so that a CUDA run
            repeats bit for bit on the same hardware and software, at some cost in speed; a kernel
            without a deterministic version warns instead of failing. The float32 CPU kernels used here
            are deterministic anyway. The flags are restored when :func:`~mmdis.training.train` returns.
        num_workers: DataLoader worker processes (0: load in the main process).
        snapshots: steps after which a copy of the checkpoint is kept as
            ``snapshots/step_NNNNNN.pt`` (for learning curves); each a multiple of ``iters_per_epoch``.
        model: overrides of :class:`~mmdis.models.config.ModelConfig` fields, e.g.
            ``{"appearance_channels": 4}``.
        loss: weights of the objective, Eq. (3).
        optim: optimiser and schedule.
        patch: how patches are sampled and augmented; ``patch.patch_size`` is the ``(D, H, W)`` of a
            training patch, each a multiple of 8 (also readable as ``config.patch_size``, and settable
            as ``patch_size=`` in :func:`make_config`).
    """

    method: str = "robustseg"
    profile: str = "smoke"
    epochs: int = 2
    iters_per_epoch: int = 2
    base_channels: int = 4
    batch_size: int = 1
    seed: int = 0
    val_every: int = 1
    amp: str = "auto"
    device: str = "auto"
    num_workers: int = 0
    deterministic: bool = False
    snapshots: tuple[int, ...] = ()
    model: Mapping[str, Any] = field(default_factory=dict)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    patch: PatchConfig = field(default_factory=lambda: PatchConfig(patch_size=(16, 16, 16)))

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """``(D, H, W)`` of a training patch, ``patch.patch_size``."""
        return self.patch.patch_size

    @property
    def bottom_depth(self) -> int:
        """Depth of the network's deepest feature map on a training patch (it decides ``amp="auto"`` on
        a CPU, see :func:`~mmdis.runtime.device.resolve_amp`)."""
        return self.patch_size[0] // SIZE_MULTIPLE

    def __post_init__(self) -> None:
        check_name(self.method, VARIANTS, "method")
        get_profile(self.profile)  # raises for an unknown name
        for name, low in (("epochs", 1), ("iters_per_epoch", 1), ("base_channels", 1), ("batch_size", 1),
                          ("seed", 0), ("val_every", 0), ("num_workers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if isinstance(self.snapshots, (int, str)):
            raise ValueError(f"snapshots must be a list of steps, got {self.snapshots!r}")
        snaps = tuple(self.snapshots)
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 or s % self.iters_per_epoch
               for s in snaps):
            raise ValueError(f"snapshots must be positive multiples of iters_per_epoch "
                             f"({self.iters_per_epoch}), got {list(snaps)}")
        object.__setattr__(self, "snapshots", tuple(sorted(set(snaps))))
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"deterministic must be a bool, got {self.deterministic!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {list(AMP_MODES)}, got {self.amp!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        check_fields(ModelConfig, self.model, "model override", exclude=("name", "base_channels"))
        check_types(variant_config(self.method, base_channels=self.base_channels), self.model, "model")
        for name, kind in (("loss", LossConfig), ("optim", OptimConfig), ("patch", PatchConfig)):
            if not isinstance(getattr(self, name), kind):
                got = type(getattr(self, name)).__name__
                raise ValueError(f"{name} must be a {kind.__name__}, got {got}")
        size = tuple(self.patch.patch_size)
        if len(size) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"patch_size must be three positive integers, got {self.patch.patch_size!r}")
        if any(s % SIZE_MULTIPLE for s in size):
            raise ValueError(f"patch_size {size} must be a multiple of {SIZE_MULTIPLE} in every axis")
        # Frozen: normalise through object.__setattr__ (a list from JSON becomes a tuple).
        object.__setattr__(self, "model", dict(self.model))
        object.__setattr__(self, "patch", replace(self.patch, patch_size=size))
        self.model_config()  # an invalid override value fails now, not after the data are loaded

    def model_config(self) -> ModelConfig:
        """The resolved :class:`ModelConfig` of the run's network (``name`` is the method)."""
        return variant_config(self.method, base_channels=self.base_channels, **self.model)

    def build_model(self) -> MultimodalSegNet:
        """A freshly initialised network of this run (the caller seeds the RNG)."""
        return MultimodalSegNet(self.model_config())

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict of every field (nested configs as dicts)."""
        data = asdict(self)
        data["patch"]["patch_size"] = list(self.patch_size)
        data["snapshots"] = list(self.snapshots)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`, e.g. for a run's ``config.json``.

        Raises:
            ValueError: for an unknown key (named in the message) or an invalid value.
        """
        data = _lift_patch_size(data)
        check_fields(cls, data, "TrainConfig")
        for name, kind in (("loss", LossConfig), ("optim", OptimConfig), ("patch", PatchConfig)):
            if isinstance(data.get(name), Mapping):
                sub = dict(data[name])
                check_fields(kind, sub, name)
                if "patch_size" in sub:
                    sub["patch_size"] = tuple(sub["patch_size"])
                data[name] = kind(**sub)
        return cls(**data)


def make_config(profile: str = "smoke", method: str = "robustseg", **overrides: Any) -> TrainConfig:
    """Resolve a named profile for a method, then apply overrides.

    Nested configs may be overridden by a dict merged onto the profile's (``optim={"lr": 1e-3}``,
    ``model={"p_keep": 0.7}``) or replaced by an instance (``loss=LossConfig(lambda_rec=0)``).

    Example: ``make_config("cpu", "hemis", epochs=4, optim={"lr": 3e-4})``.

    Raises:
        ValueError: naming an unknown profile, method or field, or an invalid value.
    """
    train_overrides = get_profile(profile).train
    if "profile" in overrides or "method" in overrides:
        raise ValueError("pass profile and method as the first two arguments, not as overrides")
    base = TrainConfig(method=method, profile=profile)
    return _override(_override(base, train_overrides), overrides)


def _lift_patch_size(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with a top-level ``patch_size`` (the short form, and what older ``config.json`` files
    hold) moved into ``patch``, where the one copy of it lives."""
    data = dict(data)
    if "patch_size" in data:
        size = data.pop("patch_size")
        patch = data.get("patch")
        if isinstance(patch, PatchConfig):
            data["patch"] = replace(patch, patch_size=tuple(size))
        else:
            data["patch"] = {**(patch or {}), "patch_size": size}
    return data


def _override(base: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """``base`` with ``overrides`` applied; a dict for a nested config is merged onto ``base``'s.
    ``patch_size`` is accepted as short for ``patch={"patch_size": ...}``."""
    overrides = _lift_patch_size(overrides)
    check_fields(TrainConfig, overrides, "TrainConfig")
    check_types(base, overrides, "config")
    resolved: dict[str, Any] = {}
    for name, value in overrides.items():
        if name == "model" and isinstance(value, Mapping):
            value = {**base.model, **value}
        elif name in ("loss", "optim", "patch") and isinstance(value, Mapping):
            current = getattr(base, name)
            check_fields(type(current), value, name)
            check_types(current, value, name)
            value = replace(current, **{k: tuple(v) if k == "patch_size" else v for k, v in value.items()})
        resolved[name] = value
    return replace(base, **resolved)
