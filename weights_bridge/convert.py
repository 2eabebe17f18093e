"""The engine that applies :mod:`weights_bridge.rules` in either direction, strictly.

Strict means: every source tensor is used exactly once, every expected tensor is produced, and
every shape is checked against the config before anything is returned; errors name the file
(``source``) and the tensor. Values are only sliced, concatenated and permuted, never cast, so a
conversion between formats of the same dtype is bit-identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .rules import FORMATS, FUSED_LAYOUTS, LAYOUTS, RULES_BY_CANONICAL, Part, Rule, concrete, expand, resolve_shape


@dataclass(frozen=True)
class _Entry:
    """One concrete stored canonical tensor and where it lives in a foreign format."""

    canonical: str
    kind: str
    shape: tuple[int, ...]  # canonical shape
    foreign: str | Part


@dataclass(frozen=True)
class _Plan:
    """A format's concrete layout for one config: plain tensors and fused groups by foreign name."""

    plain: dict[str, _Entry]
    fused: dict[str, list[_Entry]]  # foreign name -> the entries of its claimed slices

    @property
    def foreign_names(self) -> set[str]:
        return set(self.plain) | set(self.fused)


def _foreign_name(rule: Rule, fmt: str, index: int | None) -> str | Part:
    name = rule.names.get(fmt)
    if name is None:
        raise ValueError(f"the {fmt!r} column of the weight table has no entry for {rule.canonical}")
    if isinstance(name, Part):
        return Part(concrete(name.name, index), name.layout, name.index)
    return concrete(name, index)


def _entries(config: Any, fmt: str | None) -> list[_Entry]:
    """Concrete stored tensors (tied ones excluded); ``fmt=None`` names them canonically."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; known: {FORMATS}")
    entries = []
    for rule, index in expand(config):
        if rule.kind != "tied":
            foreign = concrete(rule.canonical, index) if fmt is None else _foreign_name(rule, fmt, index)
            entries.append(_Entry(concrete(rule.canonical, index), rule.kind, resolve_shape(rule, config), foreign))
    return entries


def _plan(config: Any, fmt: str) -> _Plan:
    """Group ``fmt``'s entries, checking the table maps each foreign tensor (or slice) only once."""
    plain: dict[str, _Entry] = {}
    fused: dict[str, list[_Entry]] = {}
    for entry in _entries(config, fmt):
        if isinstance(entry.foreign, Part):
            group = fused.setdefault(entry.foreign.name, [])
            clash = [
                e for e in group if e.foreign.index == entry.foreign.index or e.foreign.layout != entry.foreign.layout
            ]
            # Slices are cut along the foreign axis 0, so fused kinds must not be permuted.
            if clash or entry.kind in LAYOUTS[fmt] or entry.foreign.name in plain:
                raise ValueError(f"weight table error: {fmt} slice {entry.foreign} of {entry.canonical} clashes")
            group.append(entry)
        else:
            if entry.foreign in plain or entry.foreign in fused:
                raise ValueError(f"weight table error: {fmt} tensor {entry.foreign} is claimed twice")
            plain[entry.foreign] = entry
    return _Plan(plain, fused)


def canonical_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Stored canonical tensor name -> shape for ``config`` (``proj_out.weight`` is tied, not stored)."""
    return {entry.canonical: entry.shape for entry in _entries(config, None)}


def tied_names(config: Any, fmt: str | None = None) -> dict[str, str]:
    """Tied tensors that ``fmt`` names (canonically when None): tied name -> the name of the tensor it is."""
    tied = {}
    for rule, index in expand(config):
        if rule.kind != "tied" or (fmt is not None and rule.names.get(fmt) is None):
            continue
        target = RULES_BY_CANONICAL[rule.tied_to]
        if fmt is None:
            tied[concrete(rule.canonical, index)] = concrete(target.canonical, index)
        else:
            tied[str(_foreign_name(rule, fmt, index))] = str(_foreign_name(target, fmt, index))
    return tied


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return f"{shown} (+{len(names) - 5} more)" if len(names) > 5 else shown


def _check_names(present: set[str], expected: set[str], source: str, what: str) -> None:
    missing, unexpected = sorted(expected - present), sorted(present - expected)
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} tensor(s): {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)} tensor(s): {_listing(unexpected)}")
        raise ValueError(f"{source}: {what} does not match the config; {'; '.join(problems)}")


def _check_shape(array: np.ndarray, expected: tuple[int, ...], source: str, name: str, canonical: str) -> None:
    if tuple(array.shape) != expected:
        detail = "" if name == canonical else f" (canonical {canonical})"
        raise ValueError(
            f"{source}: tensor {name} has shape {tuple(array.shape)}, the config expects {expected}{detail}"
        )


def _permutation(fmt: str, kind: str) -> tuple[int, ...] | None:
    return LAYOUTS[fmt].get(kind)


def check_canonical(tensors: Mapping[str, np.ndarray], config: Any, *, source: str = "weights") -> None:
    """Raise ``ValueError`` naming ``source`` unless ``tensors`` are exactly the stored canonical set."""
    shapes = canonical_shapes(config)
    _check_names(set(tensors), set(shapes), source, "the canonical weights")
    for name, shape in shapes.items():
        _check_shape(tensors[name], shape, source, name, name)


def drop_tied(tensors: Mapping[str, np.ndarray], config: Any, *, source: str = "weights") -> dict[str, np.ndarray]:
    """Remove tied tensors (``proj_out.weight``) after checking they equal their target bit for bit.

    State dicts saved with ``torch.save`` hold both names; the canonical set stores the target only.
    """
    tensors = dict(tensors)
    for tied, target in tied_names(config).items():
        if tied in tensors:
            array = tensors.pop(tied)
            if target in tensors and not _bit_equal(array, tensors[target]):
                raise ValueError(
                    f"{source}: {tied} differs from {target}, but Whisper ties them; untied heads are not supported"
                )
    return tensors


def _bit_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def to_canonical(
    foreign: Mapping[str, np.ndarray], fmt: str, config: Any, *, source: str = "weights"
) -> dict[str, np.ndarray]:
    """Foreign tensors of format ``fmt`` -> stored canonical tensors (HF PyTorch names and layouts)."""
    plan = _plan(config, fmt)
    _check_names(set(foreign), plan.foreign_names, source, f"the {fmt} weights")
    canonical: dict[str, np.ndarray] = {}
    for name, entry in plan.plain.items():
        array = foreign[name]
        permutation = _permutation(fmt, entry.kind)
        if permutation is not None:
            array = np.ascontiguousarray(np.transpose(array, np.argsort(permutation)))
        _check_shape(array, entry.shape, source, name, entry.canonical)
        canonical[entry.canonical] = array
    for name, entries in plan.fused.items():
        array = foreign[name]
        count = FUSED_LAYOUTS[entries[0].foreign.layout]
        slot = entries[0].shape  # every slice has the canonical shape of its tensor
        _check_shape(array, (count * slot[0], *slot[1:]), source, name, entries[0].canonical)
        slices = np.split(array, count, axis=0)  # count x [rows, ...]
        claimed = {entry.foreign.index: entry for entry in entries}
        for index, piece in enumerate(slices):
            if index in claimed:
                canonical[claimed[index].canonical] = np.ascontiguousarray(piece)
            elif np.any(piece != 0):
                raise ValueError(
                    f"{source}: slice {index} of {name} ({entries[0].foreign.layout}) must be zero: "
                    "Whisper's k projections have no bias, so a non-zero value would be lost"
                )
    return canonical


def from_canonical(
    tensors: Mapping[str, np.ndarray], fmt: str, config: Any, *, source: str = "weights"
) -> dict[str, np.ndarray]:
    """Stored canonical tensors -> format ``fmt``'s tensors, in table order."""
    tensors = drop_tied(tensors, config, source=source)
    check_canonical(tensors, config, source=source)
    plan = _plan(config, fmt)
    foreign: dict[str, np.ndarray] = {}
    for name, entry in plan.plain.items():
        array = tensors[entry.canonical]
        permutation = _permutation(fmt, entry.kind)
        foreign[name] = array if permutation is None else np.ascontiguousarray(np.transpose(array, permutation))
    for name, entries in plan.fused.items():
        claimed = {entry.foreign.index: tensors[entry.canonical] for entry in entries}
        dtypes = {array.dtype for array in claimed.values()}
        if len(dtypes) != 1:
            raise ValueError(f"{source}: the parts of {name} have different dtypes {sorted(map(str, dtypes))}")
        template = next(iter(claimed.values()))
        count = FUSED_LAYOUTS[entries[0].foreign.layout]
        pieces = [claimed.get(index, np.zeros_like(template)) for index in range(count)]
        foreign[name] = np.concatenate(pieces, axis=0)  # [count * rows, ...]
    return foreign
