"""Checks shared by the typed configs (:class:`~mmdis.models.config.ModelConfig`,
:class:`~mmdis.training.config.TrainConfig` and its parts): one wording for an unknown field or name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any


def check_fields(cls: type, data: Mapping[str, Any], what: str, exclude: Iterable[str] = ()) -> None:
    """Refuse keys of ``data`` that are not fields of the dataclass ``cls`` (less ``exclude``).

    Raises:
        ValueError: ``unknown <what> field(s) [...]; known fields: [...]``.
    """
    known = {f.name for f in fields(cls)} - set(exclude)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} field(s) {unknown}; known fields: {sorted(known)}")


def check_name(name: Any, known: Iterable[str], what: str) -> str:
    """Return ``name`` if it is one of ``known``.

    Raises:
        ValueError: ``unknown <what> 'name'; known <what>s: [...]``.
    """
    known = list(known)
    if name not in known:
        raise ValueError(f"unknown {what} {name!r}; known {what}s: {known}")
    return name
