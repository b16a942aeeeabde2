"""Score a fixed set of volumes with the official BraTS evaluation and keep its numbers as a test fixture::

    python data_scripts/brats_eval_fixture.py [--venv /tmp/brats-eval-venv] [--out tests/fixtures/...json]

The ``brats-evaluation`` package (the BraTS 2023-2025 evaluation, a wrapper around Panoptica) pins
``numpy<2.3`` and ``pandas<3``, so it cannot live in the project's environment. This script makes its own
virtual environment (``python3 -m venv``, then ``pip install brats-evaluation==0.0.10``), writes the
volumes of :func:`build_volumes` as NIfTI files into a temporary folder, scores every pair there with the
package's own ``evaluate_single_exam`` and glioma configuration, runs the package's ``parse_seg_results``
on the result as its command line does, and writes per volume and region the raw Panoptica values
(``global_bin_dsc``, ``global_bin_hd95``) and the parsed ones (``global_dsc``, ``global_hd95``), with
the package versions, to :data:`FIXTURE`. The fixture holds numbers only (NaN and infinity as the strings
``"nan"`` and ``"inf"``); the volumes are rebuilt from the shared samples, which stay where they are.

:func:`build_volumes` needs only numpy and nibabel, so ``tests/test_official_metrics.py`` imports it to
rebuild exactly the volumes the package scored.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from mmdis.conventions import CORE, EDEMA, ENHANCING, from_canonical, to_canonical

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "brats_evaluation_0.0.10.json"
PACKAGE, VERSION = "brats-evaluation", "0.0.10"
#: Where the shared samples lie: beside the repository, or at the usual place of a clone elsewhere.
SHARED = [ROOT.parent / "shared" / "data", Path("/work/shared/data")]
GLI_CASE = "BraTS-GLI-00000-000"
B15_CASE = "brats_2013_pat0003_1"
#: The regions written to the fixture: the package's names -> mmdis's.
REGIONS = {"wt": "WT", "tc": "TC", "et": "ET"}

Volume = tuple[np.ndarray, np.ndarray, tuple[float, float, float]]  # (pred, truth, spacing), canonical


def shared_data() -> Path | None:
    """The folder holding ``brats2023-sample`` (``MMDIS_SHARED_DATA`` overrides), or ``None``."""
    env = os.environ.get("MMDIS_SHARED_DATA")
    for folder in ([Path(env)] if env else SHARED):
        if (folder / "brats2023-sample" / GLI_CASE).is_dir():
            return folder
    return None


def _labels(path: Path, convention: str) -> np.ndarray:
    return to_canonical(np.asarray(nib.load(path).dataobj), convention, str(path))  # (X, Y, Z) uint8


def shift(label: np.ndarray, offset: tuple[int, int, int]) -> np.ndarray:
    """``label`` moved by ``offset`` voxels, zero-filled (no wrap-around)."""
    out = np.zeros_like(label)
    src = tuple(slice(max(-o, 0), n - max(o, 0)) for o, n in zip(offset, label.shape))
    dst = tuple(slice(max(o, 0), n - max(-o, 0)) for o, n in zip(offset, label.shape))
    out[dst] = label[src]
    return out


def _grow_shrink(truth: np.ndarray) -> np.ndarray:
    # WT grown by two voxels (as edema), ET shrunk by one (as core): a plausible over/under-segmentation.
    from scipy import ndimage

    out = truth.copy()
    out[ndimage.binary_dilation(truth > 0, iterations=2) & (truth == 0)] = EDEMA
    et = truth == ENHANCING
    out[et & ~ndimage.binary_erosion(et)] = CORE
    return out


def _disjoint(truth: np.ndarray) -> np.ndarray:
    # The tumour moved by its own extent plus 4 voxels along the axis with the most room: no overlap.
    idx = np.argwhere(truth > 0)
    lo, hi = idx.min(0), idx.max(0)
    room = np.array(truth.shape) - 1 - hi
    axis = int(np.argmax(np.maximum(room, lo)))
    step = int(hi[axis] - lo[axis] + 5)
    offset = [0, 0, 0]
    offset[axis] = step if room[axis] >= lo[axis] else -step
    return shift(truth, tuple(offset))


def _distant_fp(truth: np.ndarray) -> np.ndarray:
    # A 12-voxel ET cube in the corner of the volume farthest from the tumour: its surface is 6-11 % of
    # the prediction's surface in each region, enough to move one directed 95th percentile, not always
    # the pooled one.
    centre = np.argwhere(truth > 0).mean(0)
    corner = [8 if c > n / 2 else n - 20 for c, n in zip(centre, truth.shape)]
    out = truth.copy()
    out[tuple(slice(c, c + 12) for c in corner)] = ENHANCING
    return out


def build_volumes(shared: Path) -> dict[str, Volume]:
    """The fixed (prediction, truth, spacing) triples, canonical labels, rebuilt identically every time.

    From the real BraTS 2023 label (``brats2023-sample``): itself, two shifts, a grown/shrunk copy, a
    distant false positive, a disjoint copy, an empty prediction, an empty truth, both empty, and a truth
    without ET; from a BraTS 2015 label (``brats2015-sample``, if present): a shift at 1 mm and the same
    arrays at an anisotropic 1 x 1.2 x 2 mm spacing.
    """
    gli = _labels(shared / "brats2023-sample" / GLI_CASE / f"{GLI_CASE}-seg.nii.gz", "brats2023")
    empty = np.zeros_like(gli)
    no_et = np.where(gli == ENHANCING, CORE, gli).astype(gli.dtype)
    iso = (1.0, 1.0, 1.0)
    volumes: dict[str, Volume] = {
        "gli-identity": (gli, gli, iso),
        "gli-shift-2-0-0": (shift(gli, (2, 0, 0)), gli, iso),
        "gli-shift-0-m3-4": (shift(gli, (0, -3, 4)), gli, iso),
        "gli-grow-wt-shrink-et": (_grow_shrink(gli), gli, iso),
        "gli-distant-false-positive": (_distant_fp(gli), gli, iso),
        "gli-disjoint": (_disjoint(gli), gli, iso),
        "gli-empty-prediction": (empty, gli, iso),
        "gli-empty-truth": (gli, empty, iso),
        "both-empty": (empty, empty, iso),
        "gli-truth-without-et": (gli, no_et, iso),
    }
    b15 = shared / "brats2015-sample" / B15_CASE / "OTMultiClass.nii.gz"
    if b15.is_file():
        label = _labels(b15, "brats2015")
        moved = shift(label, (1, 2, -1))
        volumes["b15-shift-1-2-m1"] = (moved, label, iso)
        volumes["b15-shift-anisotropic"] = (moved, label, (1.0, 1.2, 2.0))
    return volumes


# ------------------------------------------------------------------------------ the official package
_RUNNER = r"""
import json, sys
from pathlib import Path
from importlib.metadata import version
from panoptica import Panoptica_Evaluator
from brats_evaluation import config_path, evaluate_single_exam, parse_seg_results
import pandas as pd

folder, names = Path(sys.argv[1]), json.loads(sys.argv[2])
evaluator = Panoptica_Evaluator.load_from_config(str(config_path("gli")))
results = {"metrics": [evaluate_single_exam(str(folder / f"pred-{n}.nii.gz"), str(folder / f"ref-{n}.nii.gz"),
                                            n, evaluator) for n in names], "missings": []}
(folder / "summary.json").write_text(json.dumps(results, default=float))
parse_seg_results(str(folder / "summary.json"), str(folder / "parsed.csv"))
parsed = pd.read_csv(folder / "parsed.csv").set_index("subject_id")
out = {"versions": {"brats-evaluation": version("brats-evaluation"), "panoptica": version("panoptica")},
       "raw": {}, "parsed": {}}
for r in results["metrics"]:
    n = r["subject_name"]
    if "error" in r:
        raise SystemExit(f"{n}: {r['error']}")
    out["raw"][n] = {g: {k: r[g][k] for k in ("global_bin_dsc", "global_bin_hd95")}
                     for g in ("wt", "tc", "et")}
    out["parsed"][n] = {g: {k: float(parsed.loc[n, f"{k}_{g}"]) for k in ("global_dsc", "global_hd95")}
                        for g in ("wt", "tc", "et")}
print(json.dumps(out, default=float))
"""


def ensure_venv(venv: Path) -> Path:
    """The Python of a virtual environment holding ``brats-evaluation`` (created and installed if needed)."""
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable if Path(sys.executable).name.startswith("python3") else "python3",
                        "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import brats_evaluation"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"{PACKAGE}=={VERSION}"], check=True)
    return python


def _number(value) -> float | str:
    value = float(value)
    return "nan" if np.isnan(value) else "inf" if np.isinf(value) else value


def official_scores(volumes: dict[str, Volume], python: Path) -> dict:
    """Run the package (in the interpreter ``python``) on ``volumes``; its parsed JSON output."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, (pred, truth, spacing) in volumes.items():
            affine = np.diag([*spacing, 1.0])
            for kind, arr in (("pred", pred), ("ref", truth)):
                img = nib.Nifti1Image(from_canonical(arr, "brats2023").astype(np.uint8), affine)
                nib.save(img, str(folder / f"{kind}-{name}.nii.gz"))
        done = subprocess.run([str(python), "-c", _RUNNER, tmp, json.dumps(list(volumes))],
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])


def fixture(volumes: dict[str, Volume], scores: dict) -> dict:
    """The fixture's content: versions, and per volume its spacing, region voxel counts and scores."""
    out = {"package": PACKAGE, **scores["versions"], "config": "gli",
           "generated_by": "data_scripts/brats_eval_fixture.py", "volumes": {}}
    for name, (pred, truth, spacing) in volumes.items():
        regions = {}
        for key, region in REGIONS.items():
            classes = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}[region]
            regions[region] = {
                "pred_voxels": int(np.isin(pred, classes).sum()),
                "truth_voxels": int(np.isin(truth, classes).sum()),
                **{k: _number(v) for k, v in scores["raw"][name][key].items()},
                **{k: _number(v) for k, v in scores["parsed"][name][key].items()},
            }
        out["volumes"][name] = {"spacing": list(spacing), "regions": regions}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "brats-eval-venv")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args(argv)
    shared = shared_data()
    if shared is None:
        print("the shared BraTS samples are absent (set MMDIS_SHARED_DATA)", file=sys.stderr)
        return 1
    volumes = build_volumes(shared)
    content = fixture(volumes, official_scores(volumes, ensure_venv(args.venv)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(content, indent=1) + "\n")
    print(f"wrote {args.out}: {len(volumes)} volumes scored by {PACKAGE} {content['brats-evaluation']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
