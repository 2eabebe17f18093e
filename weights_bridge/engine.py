"""The engine that applies :mod:`weights_bridge.rules` in either direction, strictly.

Strict means: every source tensor is used exactly once, every expected tensor is produced, and
every shape is checked against the config before anything is returned; errors name the file
(``source``) and the tensor. Values are only sliced, concatenated and permuted, never cast, so a
conversion between formats of the same dtype is bit-identical.

The views (:func:`canonical_view`, :func:`foreign_view`) do the same work one tensor at a time, on
access, over :class:`LazyTensors` that load from a file when asked: a converter that reads, converts
and writes through them holds about one tensor at a time instead of whole checkpoints. Names are
checked when a view is made; shapes when each tensor is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from whisper_core.modeling_rules import sinusoids

from .rules import (
    FORMATS,
    FUSED_LAYOUTS,
    LAYOUTS,
    RULES_BY_CANONICAL,
    Computed,
    Part,
    Rule,
    concrete,
    expand,
    resolve_shape,
)

# How close a canonical tensor must be to what a format's runtime computes in its place (a float16 ulp
# near 1; the frameworks' float32 sinusoids differ from NumPy's by up to 2.5e-4).
COMPUTED_TOLERANCE = 1e-3


class LazyTensors(Mapping[str, np.ndarray]):
    """Named tensors produced on access (read from a file or computed), never cached.

    ``shapes``, when the source knows them without loading (file headers), lets strict checks run
    without reading the data. Each access loads afresh, so a caller that keeps an array owns it.
    """

    def __init__(
        self, loaders: Mapping[str, Callable[[], np.ndarray]], shapes: Mapping[str, tuple[int, ...]] | None = None
    ) -> None:
        self._loaders = dict(loaders)
        self._shapes = dict(shapes) if shapes is not None else None

    def __getitem__(self, name: str) -> np.ndarray:
        return self._loaders[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of ``name``, from the header when known, else by loading it."""
        if self._shapes is not None and name in self._shapes:
            return self._shapes[name]
        return tuple(self[name].shape)

    def without(self, names: set[str]) -> LazyTensors:
        keep = {name: loader for name, loader in self._loaders.items() if name not in names}
        return LazyTensors(keep, self._shapes)

    def map(self, function: Callable[[np.ndarray], np.ndarray]) -> LazyTensors:
        """A view applying ``function`` (e.g. a dtype cast) to each tensor as it is loaded."""
        loaders = {name: (lambda load=load: function(load())) for name, load in self._loaders.items()}
        return LazyTensors(loaders, self._shapes)


def shape_of(tensors: Mapping[str, np.ndarray], name: str) -> tuple[int, ...]:
    """The shape of ``tensors[name]``, without loading it when ``tensors`` is lazy and knows its shapes."""
    return tensors.shape(name) if isinstance(tensors, LazyTensors) else tuple(tensors[name].shape)


def lazy(tensors: Mapping[str, np.ndarray]) -> LazyTensors:
    """``tensors`` as :class:`LazyTensors` (in-memory arrays are returned by their loaders as they are)."""
    if isinstance(tensors, LazyTensors):
        return tensors
    return LazyTensors({name: (lambda array=array: array) for name, array in tensors.items()})


@dataclass(frozen=True)
class _Entry:
    """One concrete stored canonical tensor and where it lives in a foreign format."""

    canonical: str
    kind: str
    shape: tuple[int, ...]  # canonical shape
    foreign: str | Part | Computed


@dataclass(frozen=True)
class _Plan:
    """A format's concrete layout for one config: plain tensors and fused groups by foreign name, and
    the canonical tensors the format computes instead of storing."""

    plain: dict[str, _Entry]
    fused: dict[str, list[_Entry]]  # foreign name -> the entries of its claimed slices
    computed: list[_Entry]

    @property
    def foreign_names(self) -> set[str]:
        return set(self.plain) | set(self.fused)


def _foreign_name(rule: Rule, fmt: str, index: int | None) -> str | Part | Computed:
    name = rule.names.get(fmt)
    if name is None:
        raise ValueError(f"the {fmt!r} column of the weight table has no entry for {rule.canonical}")
    if isinstance(name, Computed):
        return name
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
    computed: list[_Entry] = []
    for entry in _entries(config, fmt):
        if isinstance(entry.foreign, Computed):
            computed.append(entry)
        elif isinstance(entry.foreign, Part):
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
    return _Plan(plain, fused, computed)


def computed_names(config: Any, fmt: str) -> list[str]:
    """The canonical tensors format ``fmt`` does not store because its runtime computes them."""
    return [entry.canonical for entry in _plan(config, fmt).computed]


def foreign_kinds(config: Any, fmt: str) -> dict[str, str]:
    """Each stored tensor of format ``fmt`` -> its layout kind (a fused tensor has its parts' kind), for
    writers whose container records a per-kind fact (whisper.cpp's storage types)."""
    plan = _plan(config, fmt)
    kinds = {name: entry.kind for name, entry in plan.plain.items()}
    kinds.update({name: entries[0].kind for name, entries in plan.fused.items()})
    return kinds


def _compute(entry: _Entry) -> np.ndarray:
    """The float32 value of a tensor a format computes instead of storing."""
    if entry.foreign.function == "sinusoids":
        return sinusoids(*entry.shape)
    raise ValueError(f"no computation for {entry.foreign}")


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


def _check_shape(shape: tuple[int, ...], expected: tuple[int, ...], source: str, name: str, canonical: str) -> None:
    if tuple(shape) != expected:
        detail = "" if name == canonical else f" (canonical {canonical})"
        raise ValueError(f"{source}: tensor {name} has shape {tuple(shape)}, the config expects {expected}{detail}")


def _permutation(fmt: str, kind: str) -> tuple[int, ...] | None:
    return LAYOUTS[fmt].get(kind)


def check_canonical(tensors: Mapping[str, np.ndarray], config: Any, *, source: str = "weights") -> None:
    """Raise ``ValueError`` naming ``source`` unless ``tensors`` are exactly the stored canonical set."""
    shapes = canonical_shapes(config)
    _check_names(set(tensors), set(shapes), source, "the canonical weights")
    for name, shape in shapes.items():
        _check_shape(shape_of(tensors, name), shape, source, name, name)


def drop_tied(tensors: Mapping[str, np.ndarray], config: Any, *, source: str = "weights") -> dict[str, np.ndarray]:
    """Remove tied tensors (``proj_out.weight``) after checking they equal their target bit for bit.

    State dicts saved with ``torch.save`` hold both names; the canonical set stores the target only.
    Lazy tensors stay lazy (only a tied pair is loaded, to compare it).
    """
    dropped = set()
    for tied, target in tied_names(config).items():
        if tied in tensors:
            dropped.add(tied)
            if target in tensors and not _bit_equal(tensors[tied], tensors[target]):
                raise ValueError(
                    f"{source}: {tied} differs from {target}, but Whisper ties them; untied heads are not supported"
                )
    if isinstance(tensors, LazyTensors):
        return tensors.without(dropped)
    return {name: array for name, array in tensors.items() if name not in dropped}


def _bit_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def canonical_view(foreign: Mapping[str, np.ndarray], fmt: str, config: Any, *, source: str = "weights") -> LazyTensors:
    """Foreign tensors of format ``fmt`` -> a lazy view of the stored canonical tensors, in table order.

    Names are checked now; each tensor's shape (and a fused tensor's zero slices) when it is loaded.
    """
    plan = _plan(config, fmt)
    _check_names(set(foreign), plan.foreign_names, source, f"the {fmt} weights")
    loaders: dict[str, Callable[[], np.ndarray]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in plan.plain.items():
        loaders[entry.canonical] = lambda name=name, entry=entry: _load_plain(foreign, fmt, name, entry, source)
        shapes[entry.canonical] = entry.shape
    for name, entries in plan.fused.items():
        for entry in entries:
            loaders[entry.canonical] = lambda name=name, entries=entries, entry=entry: _load_slice(
                foreign, name, entries, entry.foreign.index, source
            )
            shapes[entry.canonical] = entry.shape
    # A computed tensor takes the dtype of the stored ones (of the first, which is small: a convolution).
    reference = next(iter(plan.plain), None)
    for entry in plan.computed:
        loaders[entry.canonical] = lambda entry=entry: _compute(entry).astype(
            foreign[reference].dtype if reference is not None else np.float32
        )
        shapes[entry.canonical] = entry.shape
    order = list(canonical_shapes(config))
    return LazyTensors({name: loaders[name] for name in order}, shapes)


def _load_plain(foreign: Mapping[str, np.ndarray], fmt: str, name: str, entry: _Entry, source: str) -> np.ndarray:
    array = foreign[name]
    permutation = _permutation(fmt, entry.kind)
    if permutation is not None:
        _check_shape(array.shape, tuple(entry.shape[i] for i in permutation), source, name, entry.canonical)
        array = np.ascontiguousarray(np.transpose(array, np.argsort(permutation)))
    _check_shape(array.shape, entry.shape, source, name, entry.canonical)
    return array


def _load_slice(
    foreign: Mapping[str, np.ndarray], name: str, entries: list[_Entry], index: int, source: str
) -> np.ndarray:
    """Slice ``index`` of the fused tensor ``name``, after checking that unclaimed slices are zero."""
    array = foreign[name]
    count = FUSED_LAYOUTS[entries[0].foreign.layout]
    slot = entries[0].shape  # every slice has the canonical shape of its tensor
    _check_shape(array.shape, (count * slot[0], *slot[1:]), source, name, entries[0].canonical)
    slices = np.split(array, count, axis=0)  # count x [rows, ...]
    claimed = {entry.foreign.index for entry in entries}
    for unclaimed in set(range(count)) - claimed:
        if np.any(slices[unclaimed] != 0):
            raise ValueError(
                f"{source}: slice {unclaimed} of {name} ({entries[0].foreign.layout}) must be zero: "
                "Whisper's k projections have no bias, so a non-zero value would be lost"
            )
    return np.ascontiguousarray(slices[index])


def to_canonical(
    foreign: Mapping[str, np.ndarray], fmt: str, config: Any, *, source: str = "weights"
) -> dict[str, np.ndarray]:
    """Foreign tensors of format ``fmt`` -> stored canonical tensors (HF PyTorch names and layouts)."""
    return dict(canonical_view(foreign, fmt, config, source=source))


def foreign_view(tensors: Mapping[str, np.ndarray], fmt: str, config: Any, *, source: str = "weights") -> LazyTensors:
    """Stored canonical tensors -> a lazy view of format ``fmt``'s tensors, in table order.

    The canonical set is checked (names and, from headers where known, shapes) before the view is made.
    """
    tensors = drop_tied(tensors, config, source=source)
    check_canonical(tensors, config, source=source)
    plan = _plan(config, fmt)
    for entry in plan.computed:
        _check_computed(tensors[entry.canonical], entry, fmt, source)
    loaders: dict[str, Callable[[], np.ndarray]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for entry in _entries(config, fmt):
        if isinstance(entry.foreign, Computed):
            continue
        if isinstance(entry.foreign, Part):
            name = entry.foreign.name
            if name not in loaders:
                entries = plan.fused[name]
                loaders[name] = lambda name=name, entries=entries: _fuse(tensors, name, entries, source)
                shapes[name] = (FUSED_LAYOUTS[entry.foreign.layout] * entry.shape[0], *entry.shape[1:])
        else:
            permutation = _permutation(fmt, entry.kind)
            loaders[entry.foreign] = lambda entry=entry, permutation=permutation: _permute(
                tensors[entry.canonical], permutation
            )
            shapes[entry.foreign] = entry.shape if permutation is None else tuple(entry.shape[i] for i in permutation)
    return LazyTensors(loaders, shapes)


def _check_computed(array: np.ndarray, entry: _Entry, fmt: str, source: str) -> None:
    """Refuse to drop a tensor the format's runtime would compute differently (a trained one, say)."""
    error = float(np.max(np.abs(array.astype(np.float32) - _compute(entry)), initial=0.0))
    if not error <= COMPUTED_TOLERANCE:
        raise ValueError(
            f"{source}: {fmt} does not store {entry.canonical}, its runtime computes it ({entry.foreign.function}), "
            f"but this checkpoint's differs from that by up to {error:.3g}: it cannot be written as {fmt}"
        )


def _permute(array: np.ndarray, permutation: tuple[int, ...] | None) -> np.ndarray:
    return array if permutation is None else np.ascontiguousarray(np.transpose(array, permutation))


def _fuse(tensors: Mapping[str, np.ndarray], name: str, entries: list[_Entry], source: str) -> np.ndarray:
    claimed = {entry.foreign.index: tensors[entry.canonical] for entry in entries}
    dtypes = {array.dtype for array in claimed.values()}
    if len(dtypes) != 1:
        raise ValueError(f"{source}: the parts of {name} have different dtypes {sorted(map(str, dtypes))}")
    template = next(iter(claimed.values()))
    count = FUSED_LAYOUTS[entries[0].foreign.layout]
    pieces = [claimed.get(index, np.zeros_like(template)) for index in range(count)]
    return np.concatenate(pieces, axis=0)  # [count * rows, ...]


def from_canonical(
    tensors: Mapping[str, np.ndarray], fmt: str, config: Any, *, source: str = "weights"
) -> dict[str, np.ndarray]:
    """Stored canonical tensors -> format ``fmt``'s tensors, in table order."""
    return dict(foreign_view(tensors, fmt, config, source=source))
