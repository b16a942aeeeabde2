"""Parameter and FLOP counts of the model variants, on the ``meta`` device by default (no memory, fast):
``mmdis summary``.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix
products, 2 FLOPs per multiply-add); normalisation, activations and element-wise ops are not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from mmdis.conventions import NUM_CLASSES, NUM_MODALITIES
from mmdis.losses import LossConfig, total_loss
from mmdis.models.config import VARIANTS
from mmdis.models.networks import build_model

#: Every named variant, in the order of :data:`mmdis.models.config.VARIANTS`.
ALL: tuple[str, ...] = tuple(VARIANTS)


def count_flops(fn: Callable[[], None]) -> int:
    """FLOPs of one call of ``fn`` (convolutions and matrix products, 2 per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def summarize(
    variants: Sequence[str] = ALL,
    size: int = 80,
    base_channels: int = 16,
    batch: int = 1,
    device: str | torch.device = "meta",
) -> list[dict]:
    """Parameters and FLOPs per variant for one ``size**3`` input.

    Args:
        variants: names from :data:`mmdis.models.config.VARIANTS` (default: all, in that order).
        size: cube side of the input patch (a multiple of 8).
        base_channels: ``C`` of the first stage.
        batch: batch size.
        device: where to build the model and the dummy batch; ``"meta"`` allocates nothing.

    Returns:
        One dict per variant with ``variant``, ``params``, ``forward_flops`` (eval-mode forward) and
        ``train_flops`` (train-mode forward, loss of Eq. (3) and backward).
    """
    rows = []
    for name in variants:
        with torch.device(device):
            model = build_model(name, base_channels=base_channels)
            x = torch.randn(batch, NUM_MODALITIES, size, size, size)  # (B, M, D, H, W)
            y = torch.randint(0, NUM_CLASSES, (batch, size, size, size))  # (B, D, H, W)
            available = torch.ones(batch, NUM_MODALITIES, dtype=torch.bool)  # (B, M)
        params = sum(p.numel() for p in model.parameters())

        def forward(model=model, x=x, available=available) -> None:
            model.eval()
            with torch.no_grad():
                model(x, available)

        def train_step(model=model, x=x, y=y, available=available) -> None:
            model.train()
            loss = total_loss(model(x, available), x, y, LossConfig())["total"]
            loss.backward()

        rows.append(
            {
                "variant": name,
                "params": params,
                "forward_flops": count_flops(forward),
                "train_flops": count_flops(train_step),
                "size": size,
                "base_channels": base_channels,
                "batch": batch,
            }
        )
    return rows


def format_summary(rows: list[dict]) -> str:
    """Markdown table of :func:`summarize` rows (parameters in millions, FLOPs in GFLOP)."""
    lines = [
        "| variant | params (M) | forward (GFLOP) | train step (GFLOP) |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['params'] / 1e6:.2f} | {r['forward_flops'] / 1e9:.1f} "
            f"| {r['train_flops'] / 1e9:.1f} |"
        )
    return "\n".join(lines)
