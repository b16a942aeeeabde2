r"""Part 3 of ``mmdis bench``: evaluating the 15 modality subsets of one volume.

:func:`~mmdis.inference.predict_subsets` (encoders once per window) is timed against 15 independent
passes (the same function called with one subset, i.e. ``model(x, subset)`` per window), with and without
reconstructions (target: the shared evaluation costs at most 0.35 x the independent passes). Every
independent pass runs the same kernels on the same shapes, whichever subset it fuses, so when they do not
all fit in ``seconds`` the mean of those timed (in Table-2 order, at least one) is multiplied by 15; the
row says how many were timed. Two more rows time ``model.encode`` and ``model.decode`` on one window: with
the encoders' share :math:`e` of a forward pass, sharing them gives a ratio of :math:`1 - 14 e / 15` when
decoding a subset costs what it costs alone (decoding several subsets as one batch can do better).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from benchmarks.table import EVAL_RATIO_TARGET, Row, make_row
from benchmarks.timing import say, time_repeated
from mmdis.conventions import NUM_MODALITIES, SUBSETS
from mmdis.inference import predict_subsets
from mmdis.models import build_model


@dataclass(frozen=True)
class EvalResult:
    """Seconds to evaluate one volume for all 15 subsets, ``shared`` (one encoding per window) and
    ``independent`` (15 single-subset passes, see the module docstring), keyed by ``with_recon``;
    ``timed`` independent passes were measured per setting, over ``windows`` windows.
    ``encoder_share`` is ``encode`` / (``encode`` + ``decode``) for one window and all modalities."""

    shared: dict[bool, float]
    independent: dict[bool, float]
    timed: int
    windows: int
    encoder_share: float

    @property
    def expected_ratio(self) -> float:
        r"""The 15-subset / independent ratio that running the encoders once per window gives if each
        subset's fusion and decoding cost what they cost in an independent pass,

        .. math:: \frac{e + 15 (1 - e)}{15} = 1 - \frac{14}{15} e,

        with :math:`e` the encoders' share of one forward pass (``encoder_share``). Decoding several
        subsets as one batch can do better than this."""
        return 1 - 14 / 15 * self.encoder_share


def count_windows(size: int, roi: int, overlap: float) -> int:
    """Sliding windows along one axis of ``size`` voxels, placed as MONAI places them."""
    if size <= roi:
        return 1
    step = max(int(roi * (1 - overlap)), 1)
    return math.ceil((size - roi) / step) + 1


def bench_evaluation(roi: int, channels: int, seconds: float, volume: Sequence[int] | None = None,
                     device: torch.device | None = None) -> EvalResult:
    """Time :func:`~mmdis.inference.predict_subsets` over all 15 subsets against one
    call per subset, on a random ``volume`` (default: one ``roi``^3 window) with 50 % window overlap.

    Args:
        roi: sliding-window side (the training patch).
        channels: ``C`` of the (untrained, float32) RobustSeg.
        seconds: time budget of the independent passes (at least one subset is timed).
        volume: ``(D, H, W)`` of the case.
        device: where the network runs (default: the CPU).
    """
    device = device or torch.device("cpu")
    volume = tuple(volume) if volume is not None else (roi,) * 3
    torch.manual_seed(0)
    model = build_model("robustseg", base_channels=channels).to(device).eval()
    image = torch.randn(NUM_MODALITIES, *volume)  # (M, D, H, W)
    windows = math.prod(count_windows(side, roi, 0.5) for side in volume)

    def run(subsets, with_recon: bool) -> float:
        t0 = time.perf_counter()
        predict_subsets(model, image, subsets=subsets, roi_size=roi, overlap=0.5, with_recon=with_recon,
                        device=device)
        return time.perf_counter() - t0

    run(SUBSETS[:1], True)  # warm-up
    window = image[None, :, :roi, :roi, :roi].to(device)  # (1, M, roi, roi, roi)
    everything = torch.ones(1, NUM_MODALITIES, dtype=torch.bool, device=device)
    with torch.no_grad():
        encoded = model.encode(window)
        t_encode = time_repeated(lambda: model.encode(window), seconds / 4, device)
        t_decode = time_repeated(lambda: model.decode(encoded, everything), seconds / 4, device)
    shared = {recon: run(SUBSETS, recon) for recon in (False, True)}
    single: dict[bool, list[float]] = {False: [], True: []}
    t0 = time.perf_counter()
    for subset in SUBSETS:
        for recon in (False, True):
            single[recon].append(run([subset], recon))
        if time.perf_counter() - t0 >= seconds:
            break
    timed = len(single[True])
    independent = {recon: sum(t) / timed * len(SUBSETS) for recon, t in single.items()}
    return EvalResult(shared, independent, timed, windows, t_encode / (t_encode + t_decode))


def evaluation_rows(patch: int, channels: int, seconds: float, eval_size: int | None,
                    dev: torch.device) -> list[Row]:
    """Rows of part 3, with and without reconstructions."""
    volume = (eval_size or patch,) * 3
    say(f"evaluation of the 15 subsets on a {volume[0]}^3 volume")
    ev = bench_evaluation(patch, channels, seconds, volume, dev)
    where = f"{volume[0]}^3 volume, {ev.windows} x {patch}^3 windows, C={channels}"
    rows = [make_row(f"encoders' share of one forward pass ({patch}^3, C={channels})",
                     100 * ev.encoder_share, "%"),
            make_row("15-subset / independent expected from that share (unbatched decoding)",
                     ev.expected_ratio, "x")]
    for recon in (False, True):
        label = f"with_recon={recon}"
        rows += [make_row(f"15-subset evaluation, {label} ({where})", ev.shared[recon], "s"),
                 make_row(f"15 independent passes, {label} ({ev.timed} of 15 timed, mean x 15)",
                          ev.independent[recon], "s"),
                 make_row(f"15-subset / independent, {label}", ev.shared[recon] / ev.independent[recon],
                          "x", at_most=EVAL_RATIO_TARGET)]
    return rows
