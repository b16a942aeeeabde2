"""The preprocessed-case cache, its manifest and the seeded train/val/test split.

Layout of a cache folder::

    CACHE/
      manifest.json        # one entry per case: id, modalities present, shape, spacing, checksum,
                           # and the fingerprint of the source files it was made from
      splits.json          # seeded train / val / test case ids (+ unlabelled ones for inference)
      cases/<case_id>/     # written to a temporary folder, then renamed: never half-written
        image.npy          # float32 (M, D, H, W), z-scored; missing modalities are zero
        mask.npy           # bool (D, H, W) brain mask
        label.npy          # uint8 (D, H, W) canonical labels (absent for unlabelled cases)
        meta.json          # available modalities, crop info, preprocessing parameters

The arrays are plain ``.npy`` files so that training reads patches through memory maps.

Nothing stale is reused: a cached case is kept only when both its preprocessing parameters and the
fingerprint of its source files (path, size and modification time of every volume) are those of the
current ``prepare``; anything else rebuilds that case. A case is checked against its manifest checksum when
it is loaded, so an edited or truncated array is named instead of being trained on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mmdis.data.case_store import (
    load_cached_case,
    manifest_entry,
    source_files,
    source_fingerprint,
    write_cached_case,
)
from mmdis.data.preprocess import PreprocessedCase, preprocess_case
from mmdis.runtime.files import save_json, sweep_temporaries
from mmdis.runtime.locks import folder_lock

CACHE_VERSION = 1
SPLITS = ("train", "val", "test")
#: A training split smaller than this is worth a warning (the default split of 4 cases trains on 2).
TINY_TRAIN_SPLIT = 5


@dataclass(frozen=True)
class PrepareConfig:
    """Parameters of :func:`prepare`; saved in the manifest so a cache says how it was made.

    Attributes:
        spacing: isotropic target spacing in mm, or ``None`` to keep the source grid.
        margin: background voxels kept around the brain bounding box.
        allow_missing: accept cases that lack some modality (they are flagged, never zero-filled
            silently).
        seed: seed of the train/val/test split.
        fractions: train, val and test fractions (normalised).
        layout: force a layout instead of detecting it.
    """

    spacing: float | None = None
    margin: int = 0
    allow_missing: bool = False
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    layout: str | None = None

    def __post_init__(self):
        if self.spacing is not None and not (0.2 <= self.spacing <= 10):
            raise ValueError(f"spacing must lie in [0.2, 10] mm or be None, got {self.spacing}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if len(self.fractions) != 3 or min(self.fractions) < 0 or sum(self.fractions) <= 0:
            raise ValueError(f"fractions must be three non-negative numbers, got {self.fractions}")

    def preprocessing_key(self) -> dict:
        """The parameters that change a preprocessed case (a cached case is reused only if equal)."""
        return {"spacing": self.spacing, "margin": self.margin, "version": CACHE_VERSION}


def make_splits(case_ids: list[str], labelled: list[bool], seed: int, fractions) -> dict:
    """Seeded split of the labelled cases into train/val/test; unlabelled ones go to ``unlabelled``.

    With at least three labelled cases, val and test each get at least one case.
    """
    ids = sorted(c for c, lab in zip(case_ids, labelled) if lab)
    order = np.random.default_rng(seed).permutation(len(ids))
    ids = [ids[i] for i in order]
    f = np.asarray(fractions, dtype=float) / float(sum(fractions))
    n = len(ids)
    n_val = int(round(f[1] * n))
    n_test = int(round(f[2] * n))
    if n >= 3:
        n_val = max(n_val, 1) if f[1] > 0 else 0
        n_test = max(n_test, 1) if f[2] > 0 else 0
    n_train = max(n - n_val - n_test, 0)
    return {
        "seed": seed,
        "fractions": [float(x) for x in f],
        "train": sorted(ids[:n_train]),
        "val": sorted(ids[n_train : n_train + n_val]),
        "test": sorted(ids[n_train + n_val :]),
        "unlabelled": sorted(c for c, lab in zip(case_ids, labelled) if not lab),
    }


def prepare(
    data_dir: str | Path | Sequence[str | Path],
    cache_dir: str | Path,
    config: PrepareConfig | None = None,
    progress: bool = True,
) -> dict:
    """Preprocess every case of one or several raw dataset folders into a cache (see the module docstring).

    Several folders make one mixed collection, e.g. the phantom (four modalities) with real cases that
    have two: each folder's layout is detected on its own, and case ids must be unique across them.
    Cases already cached with the same preprocessing parameters are reused; the manifest and the split
    file are rewritten atomically at the end.

    Args:
        data_dir: a folder in one of the layouts of :mod:`mmdis.data.layouts`, or a list of them.
        cache_dir: output folder.
        config: preprocessing parameters (``config.layout`` forces the layout of every folder).
        progress: show a progress bar.

    Returns:
        The manifest (also written to ``cache_dir/manifest.json``). ``source`` and ``layout`` are a
        string for one folder and lists for several; every case entry names its own ``layout``.

    Raises:
        ValueError: if a folder holds no case or two folders hold the same case id.
    """
    config = config or PrepareConfig()
    sources = [Path(data_dir)] if isinstance(data_dir, (str, Path)) else [Path(d) for d in data_dir]
    if not sources:
        raise ValueError("give at least one data folder to prepare")
    cache_dir = Path(cache_dir)
    for source in sources:
        _refuse_inside(cache_dir, source)
    with folder_lock(cache_dir, "cache folder"):
        sweep_temporaries(cache_dir)
        sweep_temporaries(cache_dir / "cases")
        return _prepare(sources, cache_dir, config, progress)


def _refuse_inside(cache_dir: Path, source: Path) -> None:
    """Refuse a cache folder that is, or lies inside, a raw data folder (or holds one): ``prepare`` would
    write ``cases/`` among the data, and the next walk of that folder would meet them."""
    cache, src = cache_dir.resolve(), source.resolve()
    if cache == src or src in cache.parents or cache in src.parents:
        raise ValueError(f"the cache folder {cache_dir} must lie outside the data folder {source} (and not "
                         "contain it); choose another CACHE_DIR")


def _prepare(sources: list[Path], cache_dir: Path, config: PrepareConfig, progress: bool) -> dict:
    """The body of :func:`prepare`, inside the cache folder's lock."""
    from mmdis.data.layouts import detect_layout, discover_cases, read_case

    jobs, layouts, seen = [], [], {}
    for source in sources:
        layout = config.layout or detect_layout(source)
        files = discover_cases(source, layout)
        if not files:
            raise ValueError(f"no cases found in {source} (layout {layout})")
        for f in files:
            if f.case_id in seen:
                raise ValueError(f"case id {f.case_id!r} occurs in both {seen[f.case_id]} and {source}")
            seen[f.case_id] = source
            jobs.append((source, layout, f))
        layouts.append(layout)
    cases_dir = cache_dir / "cases"
    key = config.preprocessing_key()
    entries = []
    desc = f"prepare {'+'.join(dict.fromkeys(layouts))}"
    for source, layout, f in tqdm(jobs, desc=desc, unit="case", disable=not progress):
        fingerprint = source_fingerprint(source_files(f), f.case_id)
        meta = _cached_meta(cases_dir / f.case_id / "meta.json")
        if meta and meta.get("preprocessing") == key and meta.get("source_fingerprint") == fingerprint:
            entries.append({**manifest_entry(meta), "layout": layout})
            continue
        raw = read_case(f, allow_missing=config.allow_missing)
        case = preprocess_case(raw, target_spacing=config.spacing, margin=config.margin)
        folder = next(iter(f.images.values())).parent if f.channels is None else source
        entry = write_cached_case(case, cases_dir, key, source=str(folder), fingerprint=fingerprint)
        entries.append({**entry, "layout": layout})
    single = len(sources) == 1
    manifest = {
        "version": CACHE_VERSION,
        "source": str(sources[0]) if single else [str(s) for s in sources],
        "layout": layouts[0] if single else layouts,
        "preprocessing": key,
        "cases": entries,
    }
    save_json(manifest, cache_dir / "manifest.json")
    splits = make_splits(
        [e["case_id"] for e in entries], [e["labelled"] for e in entries], config.seed, config.fractions
    )
    save_json(splits, cache_dir / "splits.json")
    if 0 < len(splits["train"]) < TINY_TRAIN_SPLIT:
        warnings.warn(f"the training split of {cache_dir} holds only {len(splits['train'])} case(s) "
                      f"({split_sizes(splits)}); change the fractions (--split) or add cases", stacklevel=3)
    return manifest


def split_sizes(splits: dict) -> str:
    """``"2 train, 1 val, 1 test"`` (and the unlabelled cases, if any) of a split file."""
    parts = [f"{len(splits.get(name, []))} {name}" for name in SPLITS]
    if splits.get("unlabelled"):
        parts.append(f"{len(splits['unlabelled'])} unlabelled")
    return ", ".join(parts)


def _cached_meta(path: Path) -> dict | None:
    """A cached case's ``meta.json``, or ``None`` when it is missing or unreadable (then rebuilt)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Cache:
    """A prepared cache folder: its manifest, its splits and case loading."""

    root: Path
    manifest: dict
    splits: dict

    @classmethod
    def open(cls, root: str | Path) -> Cache:
        root = Path(root)
        for name in ("manifest.json", "splits.json"):
            if not (root / name).is_file():
                raise FileNotFoundError(
                    f"{root} is not a prepared cache: {name} is missing (run `mmdis prepare DATA {root}`)"
                )
        return cls(root, json.loads((root / "manifest.json").read_text()),
                   json.loads((root / "splits.json").read_text()))

    def case_ids(self, split: str | None = None) -> list[str]:
        """Case ids of a split (``train``, ``val``, ``test``, ``unlabelled``) or all cases."""
        if split is None:
            return [e["case_id"] for e in self.manifest["cases"]]
        if split not in self.splits or split in ("seed", "fractions"):
            raise ValueError(f"unknown split {split!r}; expected one of {[*SPLITS, 'unlabelled']}")
        return list(self.splits[split])

    def entry(self, case_id: str) -> dict:
        """The manifest entry of a case.

        Raises:
            ValueError: if the manifest has no such case.
        """
        if case_id not in self._entries:
            raise ValueError(f"case {case_id!r} is not in {self.root / 'manifest.json'}")
        return self._entries[case_id]

    @functools.cached_property
    def _entries(self) -> dict[str, dict]:
        return {e["case_id"]: e for e in self.manifest["cases"]}

    def fingerprint(self, case_ids: Sequence[str] | None = None) -> str:
        """A hash of the preprocessing and of the checksum and source fingerprint of every case (or of
        ``case_ids``): it changes whenever any array a run or an evaluation reads could have changed."""
        ids = self.case_ids() if case_ids is None else list(case_ids)
        entries = [self.entry(i) for i in ids]
        items = [[i, e["checksum"], e.get("source_fingerprint", "")] for i, e in zip(ids, entries)]
        blob = json.dumps({"preprocessing": self.manifest.get("preprocessing"), "cases": items})
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def load(self, case_id: str, mmap: bool = True, verify: bool = True) -> PreprocessedCase:
        """A case of the cache; with ``verify``, its arrays are checked against the manifest's checksum
        (one read of the files, so a patch loader that opens each case once pays it once)."""
        checksum = self.entry(case_id)["checksum"] if verify else None
        return load_cached_case(self.root, case_id, mmap=mmap, checksum=checksum)
