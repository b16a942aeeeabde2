"""The package's conventions as tables to read: each dataset's label values, and the 15 subsets."""

from __future__ import annotations

import pandas as pd

from mmdis.conventions import (
    CANONICAL_LABELS,
    LABEL_CONVENTIONS,
    MODALITIES,
    MODALITY_NAMES,
    SUBSETS,
    subset_name,
)

NAMES = [MODALITY_NAMES[m] for m in MODALITIES]


def label_convention_table() -> pd.DataFrame:
    """Canonical labels (rows) against each dataset's label values (columns), from the conventions."""
    table = {}
    for name, conv in LABEL_CONVENTIONS.items():
        table[name] = [", ".join(str(v) for v, c in sorted(conv.to_canonical.items()) if c == k)
                       for k in CANONICAL_LABELS]
    df = pd.DataFrame(table, index=pd.Index(list(CANONICAL_LABELS), name="canonical"))
    df.insert(0, "tissue", list(CANONICAL_LABELS.values()))
    return df[["tissue", *sorted(LABEL_CONVENTIONS)]]


def subset_table() -> pd.DataFrame:
    """The 15 modality subsets in the paper's Table-2 order: a dot column per modality, name and size."""
    rows = [{**{n: "●" if a else "○" for n, a in zip(NAMES, s)}, "subset": subset_name(s), "n": sum(s)}
            for s in SUBSETS]
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(SUBSETS) + 1, name="row"))
