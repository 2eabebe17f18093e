"""Traced programs kept on disk as TensorFlow function libraries, so that a second process does not trace them.

XLA's persistent cache (``whisper_mb.compile_cache``) keeps what XLA compiled, but every process first
traced the encoder, prefix and decoding programs again in TensorFlow's Python graph builder: about 2 s of
a second ``whisper-mb transcribe`` of 127 s with base (2026-12-06). With :func:`keep_programs` on, each
program a model compiles (:class:`Program`) is traced once per argument signature with the model's weights
as inputs (``keras.StatelessScope``: the graph captures no variable), and its function library (the
``FunctionDef`` of the program and of every loop body and branch it calls) is written to a file. A later
process registers those functions in its eager context and calls the program by its name, passing the
weights' current values: it traces nothing, and XLA compiles (or reads from its cache) the same program
in every process. A SavedModel would do the same,
but writing one took 6.5 s for base's programs against 0.05 s for the libraries (2026-12-06).

The functions are renamed with the hash of their file before they are written, so they cannot collide
with functions that TensorFlow names later in the reading process. A kept program is only reused by the
same code: its file name hashes the source of ``whisper_tf`` and ``whisper_core``, the TensorFlow, Keras
and NumPy versions, the devices, the Keras dtype policy, the model's class, config and weights (names,
shapes, dtypes), the program's key and its arguments' structure, shapes and dtypes. A file that cannot be
read, takes other arguments or fails to run is traced again and replaced; where nothing can be written,
or a program cannot be kept (it captures a tensor, returns something other than tensors), it is traced in
each process as before. Programs traced inside another ``tf.function`` (a SavedModel export) are never
replaced: their graph must hold its own functions.

What a program may read besides its arguments is the model's Keras variables: TensorFlow copies an eager
tensor of at most 128 elements into the graph as a constant instead of capturing it, so such a tensor read
from outside would be kept with the value it had when traced (no program of ours reads one). Functions
registered in the eager context stay there for the process: one set per program and shape (a few MB for
base), whatever number of models share them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework.attr_value_pb2 import AttrValue
from tensorflow.core.framework.function_pb2 import FunctionDefLibrary
from tensorflow.python.eager import context

from whisper_core.outputs import KVCache
from whisper_core.program_files import AnotherProgram, ProgramFiles, source_hash

logger = logging.getLogger(__name__)

SUFFIX = ".tffunctions"
_files = ProgramFiles("TensorFlow program", SUFFIX, logger)
# Structures a kept program may take and return besides tensors, tuples, lists and None, by name.
_NAMED_TUPLES = {"KVCache": KVCache}


def keep_programs(directory: str | Path | None) -> None:
    """Keep every model's traced programs in ``directory`` from now on (``None``: stop keeping them)."""
    _files.keep(directory)


def kept_programs_directory() -> Path | None:
    """Where traced programs are kept, or ``None`` when they are not."""
    return _files.directory


class NotKept(Exception):
    """A program that cannot be kept as a function library; it runs traced as usual."""


class Program:
    """An XLA ``tf.function`` of ``model`` that, while :func:`keep_programs` is on and it is called eagerly, runs
    the function library read from disk (or traced and written there the first time), one per argument
    signature.

    ``describe()`` names everything the traced program depends on besides the code, the weights and the
    arguments: the model and the program's key (see ``TFWhisperGenerationMixin._compiled``). It is called
    when a program is traced or looked up, so it sees the model as it is then.
    """

    def __init__(self, function: Any, model: Any, describe: Callable[[], str]) -> None:
        self.function = function
        self.model = model
        self.describe = describe
        self._runs: dict[str, Callable[..., Any]] = {}
        self._said_not_kept = False

    def __call__(self, *args: Any) -> Any:
        directory = _files.directory
        if directory is None or not tf.executing_eagerly():
            return self.function(*args)
        weights = self.model.weights
        try:
            signature = _signature(weights, args)
        except NotKept:
            return self.function(*args)
        run = self._runs.get(signature)
        if run is not None:
            return run(*args)
        run, path = self._kept(directory, signature, weights, args)
        self._runs[signature], result = _files.first_run(run, path, self.function, args)
        return result

    def _kept(self, directory: Path, signature: str, weights: list, args: tuple) -> tuple[Callable, Path | None]:
        """The program for ``args`` read from its file; else traced (and written to ``directory``: path
        ``None`` when that failed); ``self.function`` when it cannot be kept."""
        key = f"{_environment()}\n{self.describe()}\n{signature}"
        path = _files.path(directory, key)
        try:
            data = _files.read(path, key)
            if data is not None:
                return KeptFunctions.read(data).runner(self.model), path
        except AnotherProgram as error:
            logger.warning("%s: tracing it again", error)
        except Exception as error:  # a damaged file is traced again
            logger.warning("kept TensorFlow program %s unreadable (%s): tracing it again", path, error)
        try:
            kept = KeptFunctions.trace(self.function.python_function, weights, args, path.stem[:16])
            runner = kept.runner(self.model)
        except Exception as error:  # what cannot be kept still runs, traced as usual
            if not self._said_not_kept:
                self._said_not_kept = True
                logger.warning(
                    "TensorFlow program not kept, traced in every process (%s: %s)", type(error).__name__, error
                )
            return self.function, None
        return runner, path if _files.write(path, key, kept.serialize()) else None


class KeptFunctions:
    """A traced program as a function library: ``name`` is the program's function, taking the model's weights
    then the arguments' tensors (in ``tf.nest`` order) and returning ``outputs`` flattened."""

    def __init__(self, library: FunctionDefLibrary, name: str, outputs: Any) -> None:
        self.library = library
        self.name = name
        self.outputs = outputs  # the outputs' structure, as :func:`_structure` writes it

    @classmethod
    def trace(cls, function: Callable, weights: list, args: tuple, tag: str) -> KeptFunctions:
        """Trace ``function(*args)`` with ``weights`` as inputs; its functions renamed with ``tag``."""

        def with_weights(values: list, *arguments: Any) -> Any:
            with keras.StatelessScope(state_mapping=list(zip(weights, values, strict=True))):
                return function(*arguments)

        specs = tf.nest.map_structure(lambda tensor: tf.TensorSpec(tensor.shape, tensor.dtype), args)
        weight_specs = [tf.TensorSpec(weight.shape, weight.dtype) for weight in weights]
        traced = tf.function(with_weights, jit_compile=True, autograph=False)
        concrete = traced.get_concrete_function(weight_specs, *specs)
        if concrete.captured_inputs:
            raise NotKept(f"the program captures {len(concrete.captured_inputs)} tensors")
        library = FunctionDefLibrary()
        library.function.extend(concrete.graph.as_graph_def().library.function)
        library.function.append(concrete.function_def)
        name = _rename(library, tag)[concrete.function_def.signature.name]
        return cls(library, name, _structure(concrete.structured_outputs))

    def serialize(self) -> bytes:
        """One JSON line (the program's name, its outputs' structure), then the library's protocol buffer."""
        head = {"name": self.name, "outputs": self.outputs}
        return json.dumps(head).encode() + b"\n" + self.library.SerializeToString()

    @classmethod
    def read(cls, data: bytes) -> KeptFunctions:
        head, _, body = data.partition(b"\n")
        fields = json.loads(head)
        library = FunctionDefLibrary()
        library.ParseFromString(body)
        if fields["name"] not in {function.signature.name for function in library.function}:
            raise ValueError(f"the library has no function {fields['name']}")
        return cls(library, fields["name"], fields["outputs"])

    def runner(self, model: Any) -> Callable[..., Any]:
        """Register the library in the eager context; return ``run(*args)`` calling the program with ``model``'s
        weights. The program was traced with ``jit_compile``, so the eager runtime compiles it with XLA, under
        its kept name: the key of XLA's persistent cache is then the same in every process."""
        eager = context.context()
        for function in self.library.function:
            # the same definition again is a no-op; another one under a registered name raises (traced again)
            eager.add_function_def(function)
        (program,) = [function for function in self.library.function if function.signature.name == self.name]
        name, count, outputs = self.name.encode(), len(program.signature.output_arg), self.outputs

        def run(*args: Any) -> Any:
            flat = [_current_value(weight) for weight in model.weights] + tf.nest.flatten(args)
            return _rebuild(outputs, iter(eager.call_function(name, flat, count)))

        return run


def _current_value(weight: Any) -> tf.Tensor:
    """A Keras weight's value now, as the tensor a kept program takes: its variable read by TensorFlow's
    ``ReadVariableOp`` directly, which skips ``tf.convert_to_tensor``'s dispatch (base's 245 variables, read
    at every call of a program, 21 calls on the benchmarks' 127 s file: 13 ms against 22-24 ms, 2026-12-07).
    A value that is not a variable (a weight inside a stateless scope) is converted as before."""
    value = weight.value
    if isinstance(value, tf.Variable):
        return tf.raw_ops.ReadVariableOp(resource=value.handle, dtype=value.dtype)
    return tf.convert_to_tensor(value)


def _signature(weights: list, args: tuple) -> str:
    """The weights' names (below the model's own, which Keras numbers per instance), shapes and dtypes, the
    arguments' structure and each tensor's shape and dtype."""
    described = _structure(args, tensor=lambda tensor: f"{tensor.dtype.name}{tensor.shape.as_list()}")
    kept = [f"{weight.path.partition('/')[2]}:{weight.dtype}{list(weight.shape)}" for weight in weights]
    return json.dumps({"weights": kept, "args": described})


def _structure(value: Any, tensor: Callable[[tf.Tensor], Any] = lambda _: "tensor") -> Any:
    """``value`` (tensors in tuples, lists and :data:`_NAMED_TUPLES`, or ``None``) as JSON-ready lists; raises
    :class:`NotKept` for anything else (a Python number, another class)."""
    if isinstance(value, tf.Tensor):
        return tensor(value)
    if value is None:
        return None
    for name, named in _NAMED_TUPLES.items():
        if type(value) is named:
            return {name: [_structure(item, tensor) for item in value]}
    if type(value) in (tuple, list):
        return {type(value).__name__: [_structure(item, tensor) for item in value]}
    raise NotKept(f"a program's inputs and outputs must be tensors, not {type(value).__name__}")


def _rebuild(structure: Any, tensors: Iterator[tf.Tensor]) -> Any:
    """The outputs of :func:`_structure`'s ``structure``, its tensors taken in order from ``tensors``."""
    if structure == "tensor":
        return next(tensors)
    if structure is None:
        return None
    ((kind, items),) = structure.items()
    rebuilt = [_rebuild(item, tensors) for item in items]
    if kind in _NAMED_TUPLES:
        return _NAMED_TUPLES[kind](*rebuilt)
    return tuple(rebuilt) if kind == "tuple" else rebuilt


def _rename(library: FunctionDefLibrary, tag: str) -> dict[str, str]:
    """Rename every function of ``library`` with ``tag``, and every reference to one (attributes naming a
    function: loop bodies, branches, calls; nodes calling one directly); returns old name -> new name."""
    names = {function.signature.name: f"{function.signature.name}_{tag}" for function in library.function}

    def rename_attr(value: AttrValue) -> None:
        functions = [value.func] if value.HasField("func") else list(value.list.func)
        for function in functions:
            function.name = names.get(function.name, function.name)
            for nested in function.attr.values():
                rename_attr(nested)

    for function in library.function:
        function.signature.name = names[function.signature.name]
        for value in function.attr.values():
            rename_attr(value)
        for node in function.node_def:
            node.op = names.get(node.op, node.op)
            for value in node.attr.values():
                rename_attr(value)
    return names


def _environment() -> str:
    """The code, software and settings a traced program comes from (the dtype policy is read at each lookup:
    a model may be made under another)."""
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}
    devices = [device.device_type for device in tf.config.list_logical_devices()]
    settings = {"dtype_policy": keras.config.dtype_policy().name, "devices": devices}
    sources = source_hash(Path(__file__).parent)
    return json.dumps({"sources": sources, **versions, **settings}, sort_keys=True)
