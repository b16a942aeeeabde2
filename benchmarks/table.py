"""The benchmark table: one :class:`Row` per measurement, judged against the issue's targets, and the
table as aligned plain text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def make_row(quantity: str, value: float | None, unit: str, at_least: float | None = None,
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
