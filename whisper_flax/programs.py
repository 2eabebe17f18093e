"""Traced programs kept on disk (``jax.export``), so that a second process neither traces nor lowers them.

JAX's persistent compilation cache (``whisper_mb.compile_cache``) keeps what XLA compiled, but it is
keyed by the lowered program: every process first traces the Python code again and lowers it to
StableHLO before it can look the compilation up. A second ``whisper-mb transcribe`` of 127 s with base
spent 1.1-1.2 s tracing and about 0.4 s lowering its programs (2026-12-06, JAX's compile log). With
:func:`keep_programs` on, each program a model compiles (:class:`Program`) is exported once per
argument signature, written beside the compilations, and read back by later processes, which then run
``jax.jit(exported.call)``: the program calls the exported StableHLO, so both processes lower the same
module and XLA's cache still finds the compilation.

A kept program is only reused by the same code: its file name hashes the source of ``whisper_flax``
and ``whisper_core``, the versions of JAX, jaxlib, Flax and NumPy, the platform, the JAX settings that
change tracing, the model's config and dtypes, the program's key and its argument shapes and dtypes.
A file that cannot be read is exported again and replaced.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax
import jax
import numpy as np
from jax import export

import whisper_core
from whisper_core.decoding import beam
from whisper_core.fileio import atomic_path
from whisper_core.outputs import OUTPUT_CLASSES, KVCache

logger = logging.getLogger(__name__)

SUFFIX = ".jaxexport"
_directory: Path | None = None


def keep_programs(directory: str | Path | None) -> None:
    """Keep every model's traced programs in ``directory`` from now on (``None``: stop keeping them)."""
    global _directory
    _directory = Path(directory) if directory is not None else None


def kept_programs_directory() -> Path | None:
    """Where traced programs are kept, or ``None`` when they are not."""
    return _directory


class Program:
    """A jitted function that, while :func:`keep_programs` is on, runs exported programs read from disk
    (or exported and written there the first time), one per argument signature.

    ``describe()`` names everything the traced program depends on besides the code and the arguments'
    shapes: the model and the program's key (see :meth:`FlaxWhisperPreTrainedModel._compiled`).
    """

    def __init__(self, jitted: Callable[..., Any], describe: Callable[[], str]) -> None:
        self.jitted = jitted
        self.describe = describe
        self._runs: dict[str, Callable[..., Any]] = {}

    def __call__(self, *args: Any) -> Any:
        if _directory is None:
            return self.jitted(*args)
        signature = _signature(args)
        run = self._runs.get(signature)
        if run is None:
            exported = self._exported(_directory, signature, args)
            run = self._runs[signature] = jax.jit(exported.call) if exported is not None else self.jitted
        return run(*args)

    def output_shapes(self, *args: Any) -> Any:
        """What ``jax.eval_shape`` gives for ``args`` (arrays or ``jax.ShapeDtypeStruct``), read from the kept
        program where there is one instead of tracing the function."""
        exported = self._exported(_directory, _signature(args), args) if _directory is not None else None
        if exported is None:
            return jax.eval_shape(self.jitted, *args)
        outputs = [jax.ShapeDtypeStruct(aval.shape, aval.dtype) for aval in exported.out_avals]
        return jax.tree_util.tree_unflatten(exported.out_tree, outputs)

    def _exported(self, directory: Path, signature: str, args: tuple) -> export.Exported | None:
        """The program for ``args`` read from ``directory``, else exported and written there; ``None`` when
        it cannot be exported (it then runs traced as usual)."""
        _register_trees()
        key = f"{_environment()}\n{self.describe()}\n{signature}"
        path = directory / (hashlib.sha256(key.encode()).hexdigest() + SUFFIX)
        if path.exists():
            try:
                return export.deserialize(bytearray(path.read_bytes()))
            except Exception as error:  # a damaged file is exported again
                logger.warning("kept JAX program %s unreadable (%s): exporting it again", path, error)
        try:
            exported = export.export(self.jitted)(*args)
            serialized = exported.serialize()
        except Exception as error:  # what cannot be exported still runs, traced as usual
            logger.debug("JAX program not kept (%s): %s", type(error).__name__, error)
            return None
        with atomic_path(path) as temp_path:
            temp_path.write_bytes(serialized)
        return exported


def _signature(args: tuple) -> str:
    """The arguments' tree and each leaf's shape, dtype, weak type and placement."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    avals = []
    for leaf in leaves:
        aval = leaf if isinstance(leaf, jax.ShapeDtypeStruct) else jax.typeof(leaf)
        weak = "~" if getattr(aval, "weak_type", False) else ""
        avals.append(f"{aval.dtype}{list(aval.shape)}{weak}@{getattr(leaf, 'sharding', None)}")
    return f"{tree}\n{' '.join(avals)}"


@functools.cache
def _environment() -> str:
    """The code and the software a traced program comes from (computed once per process)."""
    sources = hashlib.sha256()
    for package in (Path(__file__).parent, Path(whisper_core.__file__).parent):
        for path in sorted(package.rglob("*.py")):
            sources.update(path.relative_to(package.parent).as_posix().encode() + b"\0" + path.read_bytes())
    versions = {
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
    }
    settings = {
        name: str(getattr(jax.config, name))
        for name in (
            "jax_enable_x64",
            "jax_default_matmul_precision",
            "jax_default_prng_impl",
            "jax_numpy_rank_promotion",
        )
    }
    device = jax.devices()[0]
    platform = {"backend": jax.default_backend(), "device": device.device_kind, "devices": jax.device_count()}
    return json.dumps({"sources": sources.hexdigest(), **versions, **settings, **platform}, sort_keys=True)


@functools.cache
def _register_trees() -> None:
    """Let exported programs take and return our pytrees: the cache (a NamedTuple), the model outputs and
    the beam state (dataclasses whose fields are all children)."""
    export.register_namedtuple_serialization(KVCache, serialized_name="whisper_core.outputs.KVCache")
    for tree_class in (*OUTPUT_CLASSES, beam.BeamState):
        export.register_pytree_node_serialization(
            tree_class,
            serialized_name=f"{tree_class.__module__}.{tree_class.__qualname__}",
            serialize_auxdata=lambda _: b"",
            deserialize_auxdata=lambda _: (),
        )
