"""HF TensorFlow ``tf_model.h5``: read into, and write from, canonical weights, one tensor at a time.

Layout, as Keras 2 (``tf-keras``) ``save_weights`` writes it for transformers' ``TFWhisperForConditionalGeneration``::

    /                      attrs: layer_names = ["model"], backend, keras_version
    /model                 attrs: weight_names = ["tf_whisper_for_conditional_generation/model/encoder/conv1/kernel:0", ...]
    /model/tf_whisper_for_conditional_generation/model/encoder/conv1/kernel:0    dataset [k, in, out]
    /top_level_model_weights  attrs: weight_names = []

A variable name's first component is the Keras model's name, which transformers drops when it loads
(the table's ``hf_tf`` names start after it). HDF5 caps an attribute at 64 KiB, so Keras splits long
name lists into ``weight_names0``, ``weight_names1``, ...; both spellings are read and the split
is written when needed. Names and layouts come from the ``hf_tf`` column of :mod:`weights_bridge.rules`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from whisper_core.fileio import atomic_path

from . import engine
from .rules import TF_LAYER_NAME, TF_MODEL_NAME

TF_WEIGHTS_NAME = "tf_model.h5"
FORMAT = "hf_tf"
# What tf-keras 2.21 records; transformers reads neither, Keras checks ``backend`` when it loads.
FILE_ATTRIBUTES = {"backend": "tensorflow", "keras_version": "2.21.0"}
TOP_LEVEL_GROUP = "top_level_model_weights"  # weights set on the Keras model itself: none for Whisper
HDF5_OBJECT_HEADER_LIMIT = 64512  # bytes per attribute, as Keras splits them


def _read_names(group: h5py.Group, name: str, path: Path) -> list[str]:
    """A Keras name-list attribute, whole or split into ``name0``, ``name1``, ..."""
    if name in group.attrs:
        values = list(group.attrs[name])
    elif f"{name}0" in group.attrs:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    else:
        raise ValueError(f"{path}: group {group.name!r} has no {name!r} attribute: not a Keras weights file")
    return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in values]


def _write_names(group: h5py.Group, name: str, values: list[str]) -> None:
    data = np.asarray([value.encode("utf-8") for value in values], dtype=bytes if values else np.float64)
    chunks = 1
    while data.nbytes / chunks > HDF5_OBJECT_HEADER_LIMIT:
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for index, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{index}"] = part


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 file: {error}") from error


def read_weights(path: str | os.PathLike) -> engine.LazyTensors:
    """The variables of a ``tf_model.h5`` under their ``hf_tf`` names, loaded lazily (shapes from the header)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no TensorFlow weights file at {path}")
    locations: dict[str, tuple[str, str]] = {}  # table name -> (layer group, dataset name)
    shapes: dict[str, tuple[int, ...]] = {}
    with _open(path) as file:
        for layer in _read_names(file, "layer_names", path):
            if layer not in file:
                raise ValueError(f"{path}: layer {layer!r} is listed in layer_names but has no group")
            group = file[layer]
            for weight in _read_names(group, "weight_names", path):
                name = weight.split("/", 1)[1] if "/" in weight else weight  # drop the Keras model's name
                if weight not in group or not isinstance(group[weight], h5py.Dataset):
                    raise ValueError(f"{path}: tensor {weight} is listed in weight_names but not stored")
                if name in locations:
                    raise ValueError(f"{path}: tensor {name} appears twice")
                locations[name] = (layer, weight)
                shapes[name] = tuple(group[weight].shape)

    def load(name: str) -> np.ndarray:
        layer, weight = locations[name]
        with _open(path) as file:
            try:
                return np.asarray(file[layer][weight][()])
            except (OSError, KeyError) as error:
                raise ValueError(f"{path}: cannot read tensor {weight}: {error} (truncated or corrupt file)") from error

    return engine.LazyTensors({name: (lambda name=name: load(name)) for name in locations}, shapes)


def to_canonical(path: str | os.PathLike, config: Any) -> engine.LazyTensors:
    """A lazy canonical view of a ``tf_model.h5`` (names checked now, each shape when loaded)."""
    return engine.canonical_view(read_weights(path), FORMAT, config, source=str(path))


def write_weights(path: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> Path:
    """Write ``hf_tf``-named tensors as a Keras h5 weights file, tensor by tensor and atomically."""
    path = Path(path)
    names = [f"{TF_MODEL_NAME}/{name}" for name in tensors]
    with atomic_path(path) as temp_path, h5py.File(temp_path, "w") as file:
        for key, value in FILE_ATTRIBUTES.items():
            file.attrs[key] = value
        _write_names(file, "layer_names", [TF_LAYER_NAME])
        group = file.create_group(TF_LAYER_NAME)
        _write_names(group, "weight_names", names)
        for weight, (name, array) in zip(names, tensors.items(), strict=True):
            array = np.asarray(array)
            if array.dtype.kind != "f":
                raise ValueError(f"{path}: tensor {name} has dtype {array.dtype}; TF weights are floating point")
            group.create_dataset(weight, data=array)
        _write_names(file.create_group(TOP_LEVEL_GROUP), "weight_names", [])
    return path


def from_canonical(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], config: Any) -> Path:
    """Write stored canonical tensors (lazy or not) as ``tf_model.h5``; checked against ``config`` first."""
    return write_weights(path, engine.foreign_view(tensors, FORMAT, config, source="the weights to save"))
