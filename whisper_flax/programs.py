"""Traced programs kept on disk (``jax.export``), so that a second process neither traces nor lowers them.

JAX's persistent compilation cache (``whisper_mb.compile_cache``) keeps what XLA compiled, but it is
keyed by the lowered program: every process first traces the Python code again and lowers it to
StableHLO before it can look the compilation up. A second ``whisper-mb transcribe`` of 127 s with base
spent 1.1-1.2 s tracing and about 0.4 s lowering its programs (2026-12-06, JAX's compile log). With
:func:`keep_programs` on, each program a model compiles (:class:`Program`) is exported once per
argument signature, written beside the compilations, and read back by later processes, which then run
``jax.jit(exported.call)``: the program calls the exported StableHLO, so both processes lower the same
module and XLA's cache still finds the compilation.

Each program XLA compiled in this process is kept too, as its executable (``.jaxexec``, written by
``jax.experimental.serialize_executable``): a later process loads it and runs it without reading the
exported program, lowering it or looking it up in XLA's cache (a second ``transcribe`` of the benchmarks'
127 s file with base: the five programs' lowering took 0.53 s and the cache's reads 0.81 s, against 0.09-0.20 s
per executable loaded, 2026-12-07). Only an executable XLA compiled here is written: one that XLA's
persistent cache handed back does not serialize whole (it fails when run, "Function ... not found").
Since our code changes more often than what it lowers to, the cache would answer for most programs after
every upgrade; so on the CPU a kept program is compiled under a key of its own in XLA's cache (an option
only XLA's GPU compiler reads, set to the program's file name): it compiles once per version of the code,
and a cache answer is left unkept (its executable file was lost, while the cache still has it). An
executable is machine code for this CPU: its file name also hashes the CPU's features and ``XLA_FLAGS``.

A kept program is only reused by the same code: its file name hashes the source of ``whisper_flax``
and ``whisper_core``, the versions of JAX, jaxlib, Flax and NumPy, the platform, the JAX settings that
change the arithmetic, the model's config and dtypes, the program's key and its argument shapes and
dtypes. A file that cannot be read, takes other arguments or fails to run is traced again and replaced;
where nothing can be written, or a program cannot be exported, it is traced in each process as before.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import platform
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax
import jax
import numpy as np
from jax import export
from jax.experimental import serialize_executable

from whisper_core.decoding import beam
from whisper_core.outputs import OUTPUT_CLASSES, KVCache
from whisper_core.program_files import AnotherProgram, ProgramFiles, source_hash

logger = logging.getLogger(__name__)

SUFFIX = ".jaxexport"
EXECUTABLE_SUFFIX = ".jaxexec"
_files = ProgramFiles("JAX program", SUFFIX, logger)
_executables = ProgramFiles("JAX executable", EXECUTABLE_SUFFIX, logger)
CACHE_HIT = "/jax/compilation_cache/cache_hits"  # the event JAX records when its persistent cache answers
CPU_INERT_OPTION = "xla_gpu_algorithm_denylist_path"  # read by XLA's GPU compiler alone; JAX keys by it


def keep_programs(directory: str | Path | None) -> None:
    """Keep every model's traced programs, and what XLA compiled of them, in ``directory`` from now on
    (``None``: stop keeping them)."""
    _files.keep(directory)
    _executables.keep(directory)


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
        key = self._key(signature)
        executable_key, executable_path = _executable_place(directory, key)
        loaded = _load_executable(executable_path, executable_key)
        if loaded is not None:
            self._runs[signature], result = _executables.first_run(loaded, executable_path, self.jitted, args)
            return result
        exported, path = self._exported(directory, key, args)
        run = self.jitted
        if exported is not None:
            run = _compiled_and_kept(jax.jit(exported.call), args, executable_path, executable_key)
        self._runs[signature], result = _files.first_run(run, path, self.jitted, args)
        return result

    def output_shapes(self, *args: Any) -> Any:
        """What ``jax.eval_shape`` gives for ``args`` (arrays or ``jax.ShapeDtypeStruct``), read from the kept
        program where there is one instead of tracing the function."""
        exported, directory = None, _files.directory
        if directory is not None and not jax.config.jax_disable_jit:
            exported, _ = self._exported(directory, self._key(_signature(args)), args)
        if exported is None:
            return jax.eval_shape(self.jitted, *args)
        outputs = [jax.ShapeDtypeStruct(aval.shape, aval.dtype) for aval in exported.out_avals]
        return jax.tree_util.tree_unflatten(exported.out_tree, outputs)

    def _key(self, signature: str) -> str:
        """What the program for arguments of ``signature`` depends on: code, software, settings, model."""
        return f"{_environment()}\n{self.describe()}\n{signature}"

    def _exported(self, directory: Path, key: str, args: tuple) -> tuple[export.Exported | None, Path | None]:
        """The program for ``args`` and the file it was read from; else exported (and written to
        ``directory``: path ``None`` when that failed); ``(None, None)`` when it cannot be exported (it then
        runs traced as usual)."""
        _register_trees()
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


def _executable_place(directory: Path, key: str) -> tuple[str, Path]:
    """The key of the executable of the program ``key`` on this machine, and its file."""
    executable_key = f"{key}\n{_machine()}"
    return executable_key, _executables.path(directory, executable_key)


def _load_executable(path: Path, key: str) -> Any:
    """The executable kept at ``path``, loaded, or ``None`` where there is none or it cannot be loaded (a
    damaged or swapped file is deleted: the program is then read as exported and compiled again). Like the
    exported programs, the file is trusted: it is machine code this package wrote."""
    try:
        data = _executables.read(path, key)
        if data is None:
            return None
        payload, in_tree, out_tree = pickle.loads(data)
        return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception as error:
        logger.warning("kept JAX executable %s unusable (%s): compiling it again", path, error)
        path.unlink(missing_ok=True)
        return None


_compiling = threading.local()  # per thread: the persistent cache's answers while a kept program compiles


def _count_cache_hits(event: str, **_: Any) -> None:
    if event == CACHE_HIT and getattr(_compiling, "hits", None) is not None:
        _compiling.hits += 1


def _compiled_and_kept(run: Callable[..., Any], args: tuple, path: Path, key: str) -> Callable[..., Any]:
    """``run`` compiled for ``args``; its executable written to ``path`` where XLA compiled it here (see the
    module's docstring). Where it cannot be compiled ahead (or written), ``run`` itself, as before."""
    _register_trees()  # and the listener that counts them
    own_key = {CPU_INERT_OPTION: path.stem} if jax.default_backend() == "cpu" else {}
    _compiling.hits = 0
    try:
        compiled = run.lower(*args).compile(own_key)
        hits = _compiling.hits
    except Exception as error:  # the first call traces it as before and raises if the arguments are at fault
        logger.warning("JAX program not compiled ahead (%s: %s)", type(error).__name__, error)
        return run
    finally:
        _compiling.hits = None
    if hits == 0:
        try:
            data = pickle.dumps(serialize_executable.serialize(compiled))
        except Exception as error:  # the executable runs all the same
            logger.warning("JAX executable not kept (%s: %s)", type(error).__name__, error)
        else:
            _executables.write(path, key, data)
    return compiled


@functools.cache
def _machine() -> str:
    """What an executable's machine code depends on besides the program: the CPU's features (Linux's
    ``/proc/cpuinfo`` flags, else the processor's name) and the XLA flags."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return json.dumps({"cpu": flags.strip() or platform.processor(), "xla_flags": os.environ.get("XLA_FLAGS", "")})


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
    the beam state (dataclasses whose fields are all children); and count the persistent cache's answers
    (:func:`_compiled_and_kept`). Once per process, whichever thread asks."""
    global _registered
    with _registering:
        if _registered:
            return
        jax.monitoring.register_event_listener(_count_cache_hits)
        export.register_namedtuple_serialization(KVCache, serialized_name="whisper_core.outputs.KVCache")
        for tree_class in (*OUTPUT_CLASSES, beam.BeamState):
            export.register_pytree_node_serialization(
                tree_class,
                serialized_name=f"{tree_class.__module__}.{tree_class.__qualname__}",
                serialize_auxdata=lambda _: b"",
                deserialize_auxdata=lambda _: (),
            )
        _registered = True
