"""The preprocessed-case cache, its manifest and the seeded train/val/test split.

Layout of a cache folder::

    CACHE/
      manifest.json        # one entry per case: id, modalities present, shape, spacing, checksum
      splits.json          # seeded train / val / test case ids (+ unlabelled ones for inference)
      cases/<case_id>/     # written to a temporary folder, then renamed: never half-written
        image.npy          # float32 (M, D, H, W), z-scored; missing modalities are zero
        mask.npy           # bool (D, H, W) brain mask
        label.npy          # uint8 (D, H, W) canonical labels (absent for unlabelled cases)
        meta.json          # available modalities, crop info, preprocessing parameters

The arrays are plain ``.npy`` files so that training reads patches through memory maps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mmdis.conventions import MODALITIES
from mmdis.data.preprocess import CropInfo, PreprocessedCase, preprocess_case
from mmdis.runtime.files import atomic_path, save_json

CACHE_VERSION = 1
SPLITS = ("train", "val", "test")


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


def _checksum(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def write_cached_case(case: PreprocessedCase, cases_dir: Path, key: dict, source: str = "") -> dict:
    """Write one case into ``cases_dir/<case_id>/`` atomically and return its manifest entry."""
    final = Path(cases_dir) / case.case_id
    with atomic_path(final) as tmp:
        tmp.mkdir()
        np.save(tmp / "image.npy", case.image.astype(np.float32))
        np.save(tmp / "mask.npy", case.mask.astype(bool))
        if case.label is not None:
            np.save(tmp / "label.npy", case.label.astype(np.uint8))
        arrays = [tmp / "image.npy"] + ([tmp / "label.npy"] if case.label is not None else [])
        meta = {
            "case_id": case.case_id,
            "available": [bool(a) for a in case.available],
            "modalities": [m for m, a in zip(MODALITIES, case.available) if a],
            "labelled": case.label is not None,
            "label_convention": case.label_convention,
            "crop": case.crop.to_dict(),
            "preprocessing": key,
            "source": source,
            "checksum": _checksum(*arrays),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return manifest_entry(meta)


def manifest_entry(meta: dict) -> dict:
    crop = meta["crop"]
    return {
        "case_id": meta["case_id"],
        "modalities": meta["modalities"],
        "available": meta["available"],
        "labelled": meta["labelled"],
        "shape": list(crop["shape"]),
        "spacing": list(crop["spacing"]),
        "checksum": meta["checksum"],
        "source": meta.get("source", ""),
    }


def load_cached_case(cache_dir: str | Path, case_id: str, mmap: bool = True) -> PreprocessedCase:
    """Read one cached case; arrays are memory-mapped unless ``mmap=False``."""
    d = Path(cache_dir) / "cases" / case_id
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"case {case_id}: {meta_path} does not exist (was the cache prepared?)")
    meta = json.loads(meta_path.read_text())
    mode = "r" if mmap else None
    label = np.load(d / "label.npy", mmap_mode=mode) if meta["labelled"] else None
    return PreprocessedCase(
        case_id=case_id,
        image=np.load(d / "image.npy", mmap_mode=mode),
        available=np.array(meta["available"], dtype=bool),
        label=label,
        mask=np.load(d / "mask.npy", mmap_mode=mode),
        crop=CropInfo.from_dict(meta["crop"]),
        label_convention=meta["label_convention"],
    )


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
    from mmdis.data.layouts import detect_layout, discover_cases, read_case

    config = config or PrepareConfig()
    sources = [Path(data_dir)] if isinstance(data_dir, (str, Path)) else [Path(d) for d in data_dir]
    if not sources:
        raise ValueError("give at least one data folder to prepare")
    cache_dir = Path(cache_dir)
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
        meta_path = cases_dir / f.case_id / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("preprocessing") == key:
                entries.append({**manifest_entry(meta), "layout": layout})
                continue
        raw = read_case(f, allow_missing=config.allow_missing)
        case = preprocess_case(raw, target_spacing=config.spacing, margin=config.margin)
        folder = next(iter(f.images.values())).parent if f.channels is None else source
        entries.append({**write_cached_case(case, cases_dir, key, source=str(folder)), "layout": layout})
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
    return manifest


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

    def load(self, case_id: str, mmap: bool = True) -> PreprocessedCase:
        return load_cached_case(self.root, case_id, mmap=mmap)
