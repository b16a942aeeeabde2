"""The named profiles: one :class:`Profile` per name, and the only place that switches on a profile's name.

A profile says how much of everything a run gets: the training configuration's overrides, the sliding
windows of its evaluation, the spacing its data are resampled to, how many phantom cases are generated
when no data are named, and extra parameters for the notebooks. Training
(:func:`mmdis.training.config.make_config`), evaluation, the reproduction pipeline, the notebooks and the
command line all read :data:`PROFILES` through :func:`get_profile`; adding a profile is one entry here.

======== ================================================================================================
profile  purpose
======== ================================================================================================
smoke    tests: 16^3 patches, C = 4, 2 epochs x 2 iterations; seconds on a laptop.
cpu      a 2-core CPU on the phantom at 3 mm: 32^3 patches, C = 8, 20 x 20 = 400 steps, lr 1e-3.
paper    Chen et al. (2019): 80^3 patches, C = 16, batch 1, Adam 1e-4, poly 0.9, 300 x 300 iterations.
======== ================================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Window blendings of the sliding-window evaluation (MONAI's ``mode``).
BLENDS = ("gaussian", "constant")


@dataclass(frozen=True)
class Profile:
    """Everything a named profile decides.

    Attributes:
        name: the profile's name (``--profile``).
        purpose: one line for help texts and the book.
        train: overrides of :class:`~mmdis.training.config.TrainConfig`'s defaults; a nested config
            (``optim``, ``loss``, ``patch``, ``model``) is given as a dict of its fields, merged onto the
            defaults.
        eval_roi: ``(D, H, W)`` of the evaluation's sliding windows.
        eval_overlap: overlap of neighbouring windows, in ``[0, 1)``.
        eval_blend: how overlapping windows are averaged: ``gaussian`` (MONAI's importance weights; ours)
            or ``constant`` (a uniform average, as the authors' code).
        eval_mask: set predictions outside the brain mask to background.
        recon_cases: on how many test cases reconstructions are scored (``None``: all).
        spacing: isotropic spacing in mm the data are resampled to (``None``: the data's own grid).
        phantom_cases: phantom cases generated when no data are named.
        notebook: extra papermill parameters of the notebooks for this profile.
    """

    name: str
    purpose: str
    train: Mapping[str, Any] = field(default_factory=dict)
    eval_roi: tuple[int, int, int] = (80, 80, 80)
    eval_overlap: float = 0.5
    eval_blend: str = "gaussian"
    eval_mask: bool = True
    recon_cases: int | None = None
    spacing: float | None = None
    phantom_cases: int = 60
    notebook: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.eval_roi) != 3 or any(int(s) < 1 for s in self.eval_roi):
            raise ValueError(f"profile {self.name}: eval_roi must be three positive integers")
        if not 0.0 <= self.eval_overlap < 1.0:
            raise ValueError(f"profile {self.name}: eval_overlap must lie in [0, 1)")
        if self.eval_blend not in BLENDS:
            raise ValueError(f"profile {self.name}: eval_blend must be one of {list(BLENDS)}")
        if not isinstance(self.eval_mask, bool):
            raise ValueError(f"profile {self.name}: eval_mask must be a bool, got {self.eval_mask!r}")
        if self.phantom_cases < 3:
            raise ValueError(f"profile {self.name}: phantom_cases must be at least 3 (train, val, test)")

    @property
    def eval_window(self) -> tuple[tuple[int, int, int], float]:
        """``(roi_size, overlap)`` of the evaluation's sliding windows."""
        return tuple(int(s) for s in self.eval_roi), float(self.eval_overlap)


#: Every profile, by name. Windows much larger than the training patches hurt: instance normalisation then
#: sees mostly background (measured on the phantom, full modalities, cpu profile: WT Dice 0.84 with 48^3
#: windows, 0.78 with 32^3 and 0.74 with one 64^3 window), so each profile evaluates with windows suited
#: to its patches.
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "smoke", "tests: 16^3 patches, C = 4, 2 x 2 steps; seconds on a laptop",
            train={"epochs": 2, "iters_per_epoch": 2, "patch_size": (16, 16, 16), "base_channels": 4,
                   "val_every": 1, "model": {"appearance_channels": 4}},
            eval_roi=(64, 64, 64), spacing=3.0, phantom_cases=8,
        ),
        # The embedded phantom at 3 mm on a 2-core CPU: 3200 steps of 32^3 patches with a 10x larger
        # learning rate than the paper's, which trains for 28x more steps, and snapshots for the training-
        # budget study of the book. The authors' gate norm and shared AdaIN, and reconstruction decoders
        # of 4C channels (the authors' 128 is 8C). The book models shipped in mmdis/book_models/cpu are
        # these runs. amp "auto" takes bf16 autocast where the CPU computes bf16 natively (3-4x faster
        # than float32 there) and float32 elsewhere (where bf16 is emulated and about 6x slower).
        Profile(
            "cpu", "a 2-core CPU on the phantom at 3 mm: 32^3 patches, C = 8, 3200 steps",
            train={"epochs": 160, "iters_per_epoch": 20, "patch_size": (32, 32, 32), "base_channels": 8,
                   "val_every": 20, "snapshots": (400, 800, 1600, 3200), "optim": {"lr": 1e-3},
                   "model": {"appearance_channels": 8, "recon_channels": 32, "recon_shared_adain": True,
                             "gate_norm": True}},
            eval_roi=(48, 48, 48), recon_cases=2, spacing=3.0, phantom_cases=24,
        ),
        # The paper's numbers, and where the paper is silent the authors' code (book/method.md lists each
        # choice): L2 weight decay 1e-4 (their loss adds 1e-4 times tf.nn.l2_loss, whose gradient 1e-4 w
        # is Adam's coupled weight_decay), LeakyReLU slope 0.2, an instance norm before the gate sigmoid,
        # MUNIT-sized reconstruction decoders (128 channels, 5^3 up-convolutions, a 7^3 output conv, one
        # AdaIN per decoder) and appearance encoders (32/64/128/128/128, 4^3 kernels), uniformly random
        # crops without augmentation, the L1 over the whole patch, and uniformly averaged windows.
        Profile(
            "paper", "Chen et al. (2019): 80^3 patches, C = 16, 300 x 300 steps, on a GPU",
            train={"epochs": 300, "iters_per_epoch": 300, "patch_size": (80, 80, 80), "base_channels": 16,
                   "batch_size": 1, "val_every": 10, "optim": {"weight_decay": 1e-4},
                   "loss": {"recon_region": "patch"},
                   "patch": {"sampling": "uniform", "flip": False, "intensity_scale": 0.0,
                             "intensity_shift": 0.0},
                   "model": {"leaky_slope": 0.2, "gate_norm": True, "recon_channels": 128,
                             "recon_up_kernel": 5, "recon_out_kernel": 7, "recon_shared_adain": True,
                             "appearance_channels": 32, "appearance_kernel": 4}},
            eval_roi=(80, 80, 80), eval_blend="constant", eval_mask=False, spacing=None, phantom_cases=60,
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The :class:`Profile` called ``name``.

    Raises:
        ValueError: naming the unknown profile and the known ones.
    """
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown profile {name!r}; known profiles: {list(PROFILES)}") from None
