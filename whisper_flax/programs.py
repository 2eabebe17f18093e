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
change the arithmetic, the model's config and dtypes, the program's key and its argument shapes and
dtypes. A file that cannot be read, takes other arguments or fails to run is traced again and replaced;
where nothing can be written, or a program cannot be exported, it is traced in each process as before.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax
import jax
import numpy as np
from jax import export

from whisper_core.decoding import beam
from whisper_core.outputs import OUTPUT_CLASSES, KVCache
from whisper_core.program_files import AnotherProgram, ProgramFiles, source_hash

logger = logging.getLogger(__name__)

SUFFIX = ".jaxexport"
_files = ProgramFiles("JAX program", SUFFIX, logger)


def keep_programs(directory: str | Path | None) -> None:
    """Keep every model's traced programs in ``directory`` from now on (``None``: stop keeping them)."""
    _files.keep(directory)


def kept_programs_directory() -> Path | None:
    """Where traced programs are kept, or ``None`` when they are not."""
    return _files.directory


class Program:
    """A jitted function that, while :func:`keep_programs` is on, runs exported programs read from disk
    (or exported and written there the first time), one per argument signature.

    ``describe()`` names everything the traced program depends on besides the code and the arguments'
    shapes: the model and the program's key (see :meth:`FlaxWhisperPreTrainedModel._compiled`). It is
    called when a program is exported or looked up, so it sees the model as it is then.
    """

    def __init__(self, jitted: Callable[..., Any], describe: Callable[[], str]) -> None:
        self.jitted = jitted
        self.describe = describe
        self._runs: dict[str, Callable[..., Any]] = {}
        self._said_not_kept = False

    def __call__(self, *args: Any) -> Any:
        directory = _files.directory
        if directory is None or jax.config.jax_disable_jit:
            return self.jitted(*args)
        signature = _signature(args)
        run = self._runs.get(signature)
        if run is not None:
            return run(*args)
        exported, path = self._exported(directory, signature, args)
        run = self.jitted if exported is None else jax.jit(exported.call)
        self._runs[signature], result = _files.first_run(run, path, self.jitted, args)
        return result

    def output_shapes(self, *args: Any) -> Any:
        """What ``jax.eval_shape`` gives for ``args`` (arrays or ``jax.ShapeDtypeStruct``), read from the kept
        program where there is one instead of tracing the function."""
        exported, directory = None, _files.directory
        if directory is not None and not jax.config.jax_disable_jit:
            exported, _ = self._exported(directory, _signature(args), args)
        if exported is None:
            return jax.eval_shape(self.jitted, *args)
        outputs = [jax.ShapeDtypeStruct(aval.shape, aval.dtype) for aval in exported.out_avals]
        return jax.tree_util.tree_unflatten(exported.out_tree, outputs)

    def _exported(self, directory: Path, signature: str, args: tuple) -> tuple[export.Exported | None, Path | None]:
        """The program for ``args`` and the file it was read from; else exported (and written to
        ``directory``: path ``None`` when that failed); ``(None, None)`` when it cannot be exported (it then
        runs traced as usual)."""
        _register_trees()
        key = f"{_environment()}\n{self.describe()}\n{signature}"
        path = _files.path(directory, key)
        try:
            data = _files.read(path, key)
            if data is not None:
                exported = export.deserialize(bytearray(data))
                if _takes(exported, args):
                    return exported, path
                logger.warning("kept JAX program %s takes other arguments: exporting it again", path)
        except AnotherProgram as error:
            logger.warning("%s: exporting it again", error)
        except Exception as error:  # a damaged file is exported again
            logger.warning("kept JAX program %s unreadable (%s): exporting it again", path, error)
        try:
            exported = export.export(self.jitted)(*args)
            serialized = exported.serialize()
        except Exception as error:  # what cannot be exported still runs, traced as usual
            if not self._said_not_kept:
                self._said_not_kept = True
                logger.warning("JAX program not kept, traced in every process (%s: %s)", type(error).__name__, error)
            return None, None
        return exported, path if _files.write(path, key, serialized) else None


def _takes(exported: export.Exported, args: tuple) -> bool:
    """Whether ``exported`` takes ``args``: the same tree (of positional and keyword arguments), shapes and
    dtypes."""
    leaves, tree = jax.tree_util.tree_flatten((args, {}))
    given = [(tuple(np.shape(leaf)), np.dtype(leaf.dtype)) for leaf in leaves]
    return exported.in_tree == tree and given == [(tuple(a.shape), np.dtype(a.dtype)) for a in exported.in_avals]


def _signature(args: tuple) -> str:
    """The arguments' tree and each leaf's shape, dtype, weak type and placement."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    avals = []
    for leaf in leaves:
        aval = leaf if isinstance(leaf, jax.ShapeDtypeStruct) else jax.typeof(leaf)
        weak = "~" if getattr(aval, "weak_type", False) else ""
        avals.append(f"{aval.dtype}{list(aval.shape)}{weak}@{getattr(leaf, 'sharding', None)}")
    return f"{tree}\n{' '.join(avals)}"


# The JAX settings that change what a traced program computes (its dtypes, precision, random bits, checks).
TRACING_SETTINGS = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
    "jax_numpy_rank_promotion",
    "jax_numpy_dtype_promotion",
    "jax_default_device",
    "jax_debug_nans",
    "jax_debug_infs",
)


def _environment() -> str:
    """The code, software and settings a traced program comes from. Settings are read at each export or
    lookup (a context manager such as ``jax.default_matmul_precision`` may set them for a while)."""
    versions = {
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
    }
    settings = {name: str(getattr(jax.config, name)) for name in TRACING_SETTINGS}
    device = jax.devices()[0]
    platform = {"backend": jax.default_backend(), "device": device.device_kind, "devices": jax.device_count()}
    sources = source_hash(Path(__file__).parent)
    return json.dumps({"sources": sources, **versions, **settings, **platform}, sort_keys=True)


_registering = threading.Lock()
_registered = False


def _register_trees() -> None:
    """Let exported programs take and return our pytrees: the cache (a NamedTuple), the model outputs and
    the beam state (dataclasses whose fields are all children). Once per process, whichever thread asks."""
    global _registered
    with _registering:
        if _registered:
            return
        export.register_namedtuple_serialization(KVCache, serialized_name="whisper_core.outputs.KVCache")
        for tree_class in (*OUTPUT_CLASSES, beam.BeamState):
            export.register_pytree_node_serialization(
                tree_class,
                serialized_name=f"{tree_class.__module__}.{tree_class.__qualname__}",
                serialize_auxdata=lambda _: b"",
                deserialize_auxdata=lambda _: (),
            )
        _registered = True
