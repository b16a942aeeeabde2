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


def check_types(current: Any, overrides: Mapping[str, Any], what: str) -> None:
    """Refuse an override whose type cannot be the field's, judged by the field's current value.

    A number field takes an ``int`` or ``float`` (an ``int`` field only an ``int``), a flag only a
    ``bool``, a text field a ``str``, a tuple field a list or tuple; a field that is ``None`` now, or a
    nested config, takes anything (its own checks apply). ``--set optim.lr=fast`` so fails here, naming
    the field, instead of deep inside the optimiser.

    Raises:
        ValueError: ``<what>.<field> must be <kind>, got <value>``.
    """
    for name, value in overrides.items():
        if not hasattr(current, name):
            continue
        have = getattr(current, name)
        if have is None or value is None:
            continue
        if isinstance(have, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(have, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(have, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(have, str):
            ok, kind = isinstance(value, str), "a string"
        elif isinstance(have, tuple):
            ok, kind = isinstance(value, (list, tuple)), "a list"
        else:
            continue
        if not ok:
            raise ValueError(f"{what}.{name} must be {kind}, got {value!r}")
