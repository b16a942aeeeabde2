"""``mmdis bench``: how fast this machine trains and evaluates RobustSeg, printed as a table.

The numbers are read, never asserted (timings depend on the machine and its load). Every row has a
quantity, a value, a unit, the target the issue set for it where it set one, and a verdict: ``meets``,
``misses`` or ``n/a`` (no target, or not measurable on this device).

Rows, in the order printed:

1. **Training steps** (:func:`mmdis.training.loop.train_step`: forward, Eq. (3), backward, Adam) of
   RobustSeg, seconds per step and peak memory, for

   - a named profile's configuration (default ``cpu``), in the precision its ``amp="auto"`` resolves to
     on this device (:func:`~mmdis.training.loop.resolve_amp`), i.e. exactly as ``mmdis train`` runs it;
   - the ``--patch``/``--channels`` configuration (default the paper's: 80^3, C = 16, batch 1) in float32;
   - the same in bf16 autocast at batch 2, on CUDA only (target: at most 12 GiB).

2. **Convolution throughput**: one 3x3x3 ``conv3d`` forward and backward (gradients of the input and the
   weights) at the network's first two widths, C -> C at ``patch``^3 and 2C -> 2C at (``patch``/2)^3,
   in float32. The training step's achieved FLOP/s is then compared with the faster of the two
   (target on the CPU: at least 60 %). FLOPs are counted during the warm-up run by
   :class:`~torch.utils.flop_counter.FlopCounterMode`, through :mod:`mmdis.models.summary`'s counter
   (convolutions and matrix products, 2 FLOPs per multiply-add; normalisation, activations and Adam's
   update are not counted).

3. **Evaluation of the 15 modality subsets** of one volume by
   :func:`~mmdis.inference.predict_subsets` (encoders once per window) against 15
   independent passes (the same function called with one subset, i.e. ``model(x, subset)`` per window),
   with and without reconstructions (target: the shared evaluation costs at most 0.35 x the independent
   passes). Every independent pass runs the same kernels on the same shapes, whichever subset it fuses,
   so when they do not all fit in ``seconds`` the mean of those timed (in Table-2 order, at least one)
   is multiplied by 15; the row says how many were timed. Two more rows time ``model.encode`` and
   ``model.decode`` on one window: with the encoders' share :math:`e` of a forward pass, sharing them
   gives a ratio of :math:`1 - 14 e / 15` when decoding a subset costs what it costs alone (decoding
   several subsets as one batch can do better).

4. **Data loader**: training patches per second from a prepared cache (random crop, flips, intensity
   augmentation) for 0, 1 and 2 workers, against the patches per second the training step at the same
   patch size consumes (target: the loader at least 5 x faster).

Times are the fastest of the repetitions that fit in ``seconds`` after a warm-up, as :mod:`timeit`
advises (the slower ones were slowed by something else, e.g. other processes on a shared machine); the
evaluation passes run once each. On a CPU that other processes also use, ``threads=1`` can be many times
faster than one thread per core.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated before the model
was built. On the CPU, the rise of the process's peak resident set size (``VmHWM`` in
``/proc/self/status``, reset to the current size by writing ``5`` to ``/proc/self/clear_refs`` after
``malloc_trim`` has handed freed heap back to the system) above the resident set before the model was
built; where ``/proc`` cannot be reset, the rise of ``ru_maxrss`` (a lower bound, 0 when an earlier
measurement had already raised the peak higher).
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mmdis.conventions import NUM_CLASSES, NUM_MODALITIES, SUBSETS
from mmdis.data.cache import Cache, PrepareConfig, prepare
from mmdis.data.datasets import PatchConfig, PatchDataset
from mmdis.inference import predict_subsets
from mmdis.losses import LossConfig
from mmdis.models import build_model
from mmdis.models.blocks import conv3d
from mmdis.models.summary import _count_flops
from mmdis.runtime.device import resolve_amp, resolve_device
from mmdis.training.config import PROFILES, make_config
from mmdis.training.loop import train_step

#: Targets of the issue: loader / consumption, shared / independent evaluation, step / conv FLOP/s
#: (on the CPU) and the bf16 batch-2 paper step's peak memory on CUDA.
LOADER_TARGET = 5.0
EVAL_RATIO_TARGET = 0.35
CONV_FRACTION_TARGET = 60.0
BF16_MEMORY_TARGET_GIB = 12.0


@dataclass(frozen=True)
class Row:
    """One line of the table.

    Attributes:
        quantity: what was measured, with its configuration.
        value: the measurement, or ``None`` when it could not be made here (``text`` says why).
        unit: unit of ``value``.
        target: the issue's target (``"-"``: none).
        verdict: ``meets``, ``misses`` or ``n/a``.
        text: ``value`` as printed.
    """

    quantity: str
    value: float | None
    unit: str
    target: str = "-"
    verdict: str = "n/a"
    text: str = ""


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _row(quantity: str, value: float | None, unit: str, at_least: float | None = None,
         at_most: float | None = None, missing: str = "n/a") -> Row:
    """A row, judged against ``at_least`` or ``at_most`` when one is given; ``missing`` is printed for a
    ``value`` of ``None``."""
    if at_least is None and at_most is None:
        target, meets = "-", None
    elif at_least is not None:
        target, meets = f">= {at_least:g}", value is not None and value >= at_least
    else:
        target, meets = f"<= {at_most:g}", value is not None and value <= at_most
    if value is None:
        return Row(quantity, None, unit, target, "n/a", missing)
    verdict = "n/a" if meets is None else "meets" if meets else "misses"
    return Row(quantity, value, unit, target, verdict, _fmt(value))


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table."""
    head = ("quantity", "value", "unit", "target", "verdict")
    cells = [head] + [(r.quantity, r.text, r.unit, r.target, r.verdict) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = []
    for k, cell in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i == 1 else c.ljust(w) for i, (c, w) in
                               enumerate(zip(cell, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ memory
def _malloc_trim() -> None:
    # glibc keeps freed heap for reuse; without handing it back, a baseline taken after an earlier
    # measurement would already contain memory the next one reuses, and its peak would read low.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _proc_status_mib(field: str) -> float:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {field}")
    return int(match.group(1)) / 1024


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _proc_status_mib("VmHWM")
    except OSError:
        return False
    return True


def _maxrss_mib() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def memory_method(device: torch.device) -> str:
    """How :class:`PeakMemory` measures on ``device``, in words (printed above the table)."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated above the memory allocated before the model was built"
    if _reset_peak_rss():
        return ("rise of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs "
                "after malloc_trim) above the resident set before the model was built")
    return "rise of getrusage ru_maxrss (a lower bound: 0 if an earlier measurement peaked higher)"


class PeakMemory:
    """Context manager: ``mib`` is the peak memory in MiB used by the block above what was in use when it
    began (see :func:`memory_method`); ``None`` where it cannot be measured."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib: float | None = None
        self._base: float | None = None
        self._proc = False  # whether VmHWM could be reset (CPU)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        _malloc_trim()
        self._proc = _reset_peak_rss()
        try:
            self._base = _proc_status_mib("VmRSS") if self._proc else _maxrss_mib()
        except (OSError, ImportError):
            self._base = None
        return self

    def __exit__(self, *exc) -> None:
        if self._base is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            peak = _proc_status_mib("VmHWM") if self._proc else _maxrss_mib()
        self.mib = max(peak - self._base, 0.0)


# ------------------------------------------------------------------------------------ timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_repeated(fn: Callable[[], None], seconds: float, device: torch.device) -> float:
    """Seconds of the fastest call of ``fn`` (already warmed up), calling it at least once and until
    ``seconds`` have passed. The fastest, as :mod:`timeit` advises: the slower calls were slowed by
    something else (on a shared machine, other processes taking the cores)."""
    best, start = math.inf, time.perf_counter()
    while best == math.inf or time.perf_counter() - start < seconds:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


@dataclass(frozen=True)
class StepResult:
    """One configuration's training step: ``seconds`` per step, ``peak_mib`` (``None``: not measurable),
    ``flops`` counted in one step and ``batch`` patches per step."""

    seconds: float
    peak_mib: float | None
    flops: int
    batch: int

    @property
    def flops_per_second(self) -> float:
        return self.flops / self.seconds


def bench_train_step(patch: int, channels: int, seconds: float, batch: int = 1,
                     amp_dtype: torch.dtype | None = None, device: torch.device | None = None,
                     **model_overrides) -> StepResult:
    """Time :func:`mmdis.training.loop.train_step` of RobustSeg on random ``patch``^3 batches.

    The first step (kernel selection, Adam's moments allocated) runs under a FLOP counter and is not
    timed; the peak memory covers the model, its gradients, Adam's state and every step.

    Args:
        patch: cube side of a patch (a multiple of 8).
        channels: ``C``, the base width.
        seconds: time spent on timed steps (at least one).
        batch: patches per step.
        amp_dtype: autocast dtype (``None``: float32).
        device: where to train (default: the CPU).
        model_overrides: further :class:`~mmdis.models.config.ModelConfig` fields.
    """
    device = device or torch.device("cpu")
    with PeakMemory(device) as memory:
        torch.manual_seed(0)
        model = build_model("robustseg", base_channels=channels, **model_overrides).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        size = (batch, patch, patch, patch)
        data = {"image": torch.randn(batch, NUM_MODALITIES, *size[1:]),  # (B, M, D, H, W)
                "label": torch.randint(0, NUM_CLASSES, size),  # (B, D, H, W)
                "mask": torch.ones(size, dtype=torch.bool),  # (B, D, H, W)
                "available": torch.ones(batch, NUM_MODALITIES, dtype=torch.bool)}  # (B, M)
        loss_config = LossConfig()

        def step() -> None:
            train_step(model, data, optimizer, loss_config, device, amp_dtype)

        flops = _count_flops(step)
        per_step = _time_repeated(step, seconds, device)
    return StepResult(per_step, memory.mib, flops, batch)


def bench_conv3d(channels: int, size: int, seconds: float, device: torch.device | None = None) -> float:
    """FLOP/s of one float32 3x3x3 ``conv3d`` (``channels`` -> ``channels``, bias, "same" padding) forward
    and backward (input and weight gradients) on a ``(1, channels, size, size, size)`` input."""
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    conv = conv3d(channels, channels).to(device)
    x = torch.randn(1, channels, size, size, size, device=device, requires_grad=True)
    grad = torch.randn(1, channels, size, size, size, device=device)

    def run() -> None:
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(grad)

    flops = _count_flops(run)  # doubles as the warm-up
    return flops / _time_repeated(run, seconds, device)


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
        t_encode = _time_repeated(lambda: model.encode(window), seconds / 4, device)
        t_decode = _time_repeated(lambda: model.decode(encoded, everything), seconds / 4, device)
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


def _phantom_cache(root: Path, cases: int = 4) -> Path:
    from mmdis.data.phantom import PhantomConfig, write_phantom

    write_phantom(root / "phantom", PhantomConfig(cases=cases, seed=0, spacing=2.0), progress=False)
    prepare(root / "phantom", root / "cache", PrepareConfig(), progress=False)
    return root / "cache"


def bench_loader(cache_dir: Path, patch: int, workers: int, seconds: float) -> float:
    """Patches per second delivered by a :class:`DataLoader` (batch 1), after one warm-up batch."""
    cache = Cache.open(cache_dir)
    ids = cache.case_ids("train") or cache.case_ids()
    ds = PatchDataset(cache_dir, ids, samples_per_epoch=100000, config=PatchConfig(patch_size=(patch,) * 3))
    loader = DataLoader(ds, batch_size=1, num_workers=workers, persistent_workers=False)
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    while n < 1 or time.perf_counter() - t0 < seconds:
        next(it)
        n += 1
    rate = n / (time.perf_counter() - t0)
    del it
    return rate


# ------------------------------------------------------------------------------------ the table
def environment_line(device: torch.device) -> str:
    """Device, torch version, threads and load average, printed above the table."""
    if device.type == "cuda":
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        model = platform.processor() or platform.machine()
        try:
            found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
            model = found.group(1).strip() if found else model
        except OSError:
            pass
        name = f"cpu ({model}, {os.cpu_count()} logical cores)"
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"device {name}; torch {torch.__version__}; intra-op threads {torch.get_num_threads()}; "
            f"load average {load}")


def _say(message: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)


def _config(patch: int, channels: int, batch: int, dtype: torch.dtype | None) -> str:
    precision = "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
    return f"{patch}^3, C={channels}, batch {batch}, {precision}"


def _training_rows(patch: int, channels: int, seconds: float, profile: str | None, tag: str,
                   dev: torch.device) -> tuple[list[Row], list[StepResult]]:
    """Rows of part 1, and the steps at ``patch`` (for the loader's comparison)."""
    rows: list[Row] = []
    if profile is not None:
        config = make_config(profile, "robustseg")
        amp_dtype = resolve_amp(config.amp, dev)[0]
        side, width, batch = config.patch_size[0], config.base_channels, config.batch_size
        _say(f"training step, {profile} profile")
        res = bench_train_step(side, width, seconds, batch, amp_dtype, dev, **config.model)
        rows += [_row(f"train step, {profile} profile ({_config(side, width, batch, amp_dtype)})",
                      res.seconds, "s/step"),
                 _row(f"peak memory, {profile} profile", res.peak_mib, "MiB"),
                 _row(f"achieved, {profile} profile", res.flops_per_second / 1e9, "GFLOP/s")]
    _say(f"training step, {tag} configuration")
    step = bench_train_step(patch, channels, seconds, device=dev)
    rows += [_row(f"train step, {tag} ({_config(patch, channels, 1, None)})", step.seconds, "s/step"),
             _row(f"peak memory, {tag} float32 batch 1", step.peak_mib, "MiB"),
             _row(f"FLOPs per train step, {tag} float32 batch 1 (counted)", step.flops / 1e9, "GFLOP"),
             _row(f"achieved, {tag} float32 batch 1", step.flops_per_second / 1e9, "GFLOP/s")]
    steps = [step]
    name = f"train step, {tag} ({_config(patch, channels, 2, torch.bfloat16)})"
    if dev.type == "cuda":
        _say(f"training step, {tag} configuration, bf16 batch 2")
        bf16 = bench_train_step(patch, channels, seconds, batch=2, amp_dtype=torch.bfloat16, device=dev)
        steps.append(bf16)
        memory = None if bf16.peak_mib is None else bf16.peak_mib / 1024
        rows += [_row(name, bf16.seconds, "s/step"),
                 _row(f"peak memory, {tag} bf16 batch 2", memory, "GiB", at_most=BF16_MEMORY_TARGET_GIB)]
    else:
        rows += [_row(name, None, "s/step", missing="n/a on CPU"),
                 _row(f"peak memory, {tag} bf16 batch 2", None, "GiB", at_most=BF16_MEMORY_TARGET_GIB,
                      missing="n/a on CPU")]
    return rows, steps


def _conv_rows(patch: int, channels: int, seconds: float, step: StepResult, tag: str,
               dev: torch.device) -> list[Row]:
    """Rows of part 2: the two convolutions and the step's share of the faster one."""
    rows, rates = [], []
    for width, side in ((channels, patch), (2 * channels, patch // 2)):
        _say(f"conv3d {width}->{width} at {side}^3")
        rates.append(bench_conv3d(width, side, seconds, dev))
        rows.append(_row(f"conv3d 3x3x3 fwd+bwd, {width}->{width} ch at {side}^3, float32",
                         rates[-1] / 1e9, "GFLOP/s"))
    fraction = 100 * step.flops_per_second / max(rates)
    target = None if dev.type == "cuda" else CONV_FRACTION_TARGET  # the target is for the CPU
    rows.append(_row(f"train step ({tag} float32 batch 1) / best conv3d", fraction, "%", at_least=target))
    return rows


def _evaluation_rows(patch: int, channels: int, seconds: float, eval_size: int | None,
                     dev: torch.device) -> list[Row]:
    """Rows of part 3, with and without reconstructions."""
    volume = (eval_size or patch,) * 3
    _say(f"evaluation of the 15 subsets on a {volume[0]}^3 volume")
    ev = bench_evaluation(patch, channels, seconds, volume, dev)
    where = f"{volume[0]}^3 volume, {ev.windows} x {patch}^3 windows, C={channels}"
    rows = [_row(f"encoders' share of one forward pass ({patch}^3, C={channels})", 100 * ev.encoder_share,
                 "%"),
            _row("15-subset / independent expected from that share (unbatched decoding)", ev.expected_ratio,
                 "x")]
    for recon in (False, True):
        label = f"with_recon={recon}"
        rows += [_row(f"15-subset evaluation, {label} ({where})", ev.shared[recon], "s"),
                 _row(f"15 independent passes, {label} ({ev.timed} of 15 timed, mean x 15)",
                      ev.independent[recon], "s"),
                 _row(f"15-subset / independent, {label}", ev.shared[recon] / ev.independent[recon], "x",
                      at_most=EVAL_RATIO_TARGET)]
    return rows


def _loader_rows(patch: int, cache_dir: str | None, seconds: float, steps: list[StepResult]) -> list[Row]:
    """Rows of part 4: the loader at 0, 1 and 2 workers against the fastest training step."""
    rows, rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if cache_dir:
            cache = Path(cache_dir)
        else:
            _say("writing a 4-case phantom cache")
            cache = _phantom_cache(Path(tmp))
        for workers in (0, 1, 2):
            plural = "" if workers == 1 else "s"
            _say(f"data loader, {workers} worker{plural}")
            rates.append(bench_loader(cache, patch, workers, seconds))
            rows.append(_row(f"loader, {workers} worker{plural} ({patch}^3 patches)", rates[-1], "patches/s"))
    consume = max(s.batch / s.seconds for s in steps)
    rows += [_row(f"training consumes ({patch}^3, fastest step above)", consume, "patches/s"),
             _row("best loader / consumption", max(rates) / consume, "x", at_least=LOADER_TARGET)]
    return rows


def bench_native(case_dir: str | Path, patch: int, channels: int, dev: torch.device) -> list[Row]:
    """Segment the first case of a dataset folder on its own grid (no resampling), every subset it can
    form, with ``patch``-sided windows at 50 % overlap: the seconds and the peak memory above the loaded
    volumes (untrained weights; the cost does not depend on them)."""
    from mmdis.data.layouts import discover_cases, read_case
    from mmdis.data.preprocess import preprocess_case, restore_prediction
    from mmdis.inference import predict_subsets
    from mmdis.models import build_model

    raw = read_case(discover_cases(case_dir)[0], allow_missing=True)
    model = build_model("robustseg", base_channels=channels).to(dev).eval()
    with PeakMemory(dev) as mem:
        tick = time.perf_counter()
        case = preprocess_case(raw)
        pred = predict_subsets(model, case.image, case.available, roi_size=patch, overlap=0.5,
                               with_recon=False, device=dev)
        restore_prediction(pred.labels[-1], case.crop)
        _sync(dev)
        seconds = time.perf_counter() - tick
    what = (f"native {'x'.join(map(str, raw.shape))} case, {len(pred.subsets)} subsets, {patch}^3 windows, "
            f"C={channels}")
    return [_row(f"{what}: time", seconds, "s"), _row(f"{what}: peak memory", mem.mib, "MiB")]


def run_benchmarks(patch: int = 80, cache_dir: str | None = None, seconds: float = 10.0,
                   channels: int = 16, *, profile: str | None = "cpu", eval_size: int | None = None,
                   device: str = "auto", threads: int | None = None,
                   native: str | None = None) -> list[Row]:
    """Measure, print the table (with the environment above it) and return its rows.

    Args:
        patch: training patch and evaluation window side, a multiple of 8 (paper: 80).
        cache_dir: a prepared cache for the loader (default: a 4-case phantom made in a temporary folder).
        seconds: time spent per measurement (each runs at least once after a warm-up).
        channels: ``C`` of the network (paper: 16).
        profile: the :data:`~mmdis.training.config.PROFILES` entry whose configuration gets its own
            training-step rows (``None``: none).
        eval_size: cube side of the evaluated volume (default: ``patch``, one window).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``.
        native: a dataset folder whose first case is also segmented on its own grid (e.g. the BraTS 2015
            sample at 240 x 240 x 155): its time and peak memory (``None``: skipped).
        threads: torch's intra-op threads during the run (default: as torch set them). On a machine
            whose cores other processes also use, fewer threads than cores can be many times faster:
            every parallel region waits for its slowest thread.

    Raises:
        ValueError: for a patch that is not a multiple of 8, an unknown profile, ``threads`` < 1 or an
            ``eval_size`` smaller than ``patch``.
    """
    if patch < 8 or patch % 8:
        raise ValueError(f"patch {patch} must be a positive multiple of 8")
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known profiles: {list(PROFILES)}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if eval_size is not None and eval_size < patch:
        raise ValueError(f"eval_size {eval_size} must be at least the window side (patch {patch})")
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(patch, cache_dir, seconds, channels, profile, eval_size, resolve_device(device), native)
    finally:
        torch.set_num_threads(saved)


def _run(patch: int, cache_dir: str | None, seconds: float, channels: int, profile: str | None,
         eval_size: int | None, dev: torch.device, native: str | None = None) -> list[Row]:
    print(environment_line(dev))
    print(f"peak memory: {memory_method(dev)}", flush=True)
    paper = PROFILES["paper"]
    is_paper = (patch,) * 3 == tuple(paper["patch_size"]) and channels == paper["base_channels"]
    tag = "paper" if is_paper else "custom"

    rows, steps = _training_rows(patch, channels, seconds, profile, tag, dev)
    rows += _conv_rows(patch, channels, seconds, steps[0], tag, dev)
    rows += _evaluation_rows(patch, channels, seconds, eval_size, dev)
    rows += _loader_rows(patch, cache_dir, seconds, steps)
    if native is not None:
        _say(f"segmenting the first case of {native} on its own grid ...")
        rows += bench_native(native, patch, channels, dev)
    print(format_table(rows), flush=True)
    return rows
