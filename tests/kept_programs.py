"""What TF and JAX must both do with kept programs (``whisper_tf.programs``, ``whisper_flax.programs``): each
check takes the backend's ``decode(directory, features) -> (arrays, traces)``, which loads a new model and
decodes, and returns how many times the checked decoding traced, for the backend's own assertions. The
fixtures ``checkpoint`` and ``features`` are registered for every test (``tests/conftest.py``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

Decode = Callable[[Path, np.ndarray], tuple[list[np.ndarray], int]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Whisper-like checkpoint (``tests.helpers.whisper_like_pt_model``) saved by PyTorch."""
    from tests.helpers import whisper_like_pt_model

    return whisper_like_pt_model().save_pretrained(tmp_path_factory.mktemp("random"))


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(2).standard_normal((2, 80, 60)).astype(np.float32)


def keeping(keep_programs: Callable[[Path | None], None], tmp_path: Path) -> Iterator[Path]:
    """For a backend's ``kept`` fixture: programs kept in ``tmp_path/programs`` for the test, not afterwards."""
    directory = tmp_path / "programs"
    keep_programs(directory)
    try:
        yield directory
    finally:
        keep_programs(None)


def programs(directory: Path, suffix: str) -> list[str]:
    return sorted(path.name for path in directory.glob(f"*{suffix}"))


def assert_same(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def warnings_with(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return len([record for record in caplog.records if text in record.getMessage()])


def assert_damaged_programs_are_replaced(
    decode: Decode, checkpoint: Path, features: np.ndarray, kept: Path, suffix: str, caplog: Any, logger: str
) -> int:
    """Truncated files are said to be unreadable, traced again and rewritten whole; the tokens do not change."""
    expected, _ = decode(checkpoint, features)
    written = programs(kept, suffix)
    for name in written:
        path = kept / name
        path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 3])
    with caplog.at_level(logging.WARNING, logger=logger):
        again, traced = decode(checkpoint, features)
    assert programs(kept, suffix) == written
    assert warnings_with(caplog, "unreadable") == len(written)
    assert_same(again, expected)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=logger):
        assert decode(checkpoint, features)[1] == 0  # the rewritten files are whole
    assert caplog.records == []
    return traced


def assert_swapped_programs_are_not_run(
    decode: Decode, checkpoint: Path, features: np.ndarray, kept: Path, suffix: str, caplog: Any, logger: str
) -> int:
    """Files swapped between programs (as a file copied in from elsewhere might be; the greedy and sampling loops
    take the same arguments): each is refused and traced again; the tokens do not change."""
    expected, _ = decode(checkpoint, features)
    paths = [kept / name for name in programs(kept, suffix)]
    contents = [path.read_bytes() for path in paths]
    for path, content in zip(paths, contents[1:] + contents[:1], strict=True):
        path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger=logger):
        again, traced = decode(checkpoint, features)
    assert warnings_with(caplog, "written for another program") == len(paths)
    assert_same(again, expected)
    return traced


def assert_another_config_keeps_its_own(
    decode: Decode, checkpoint: Path, features: np.ndarray, kept: Path, suffix: str, scratch: Path
) -> int:
    """A config that differs in no shape (``layer_norm_eps``) reuses none of the first config's programs."""
    decode(checkpoint, features)
    written = programs(kept, suffix)
    other = scratch / "other"
    other.mkdir()
    for name in os.listdir(checkpoint):
        (other / name).write_bytes((checkpoint / name).read_bytes())
    config = json.loads((checkpoint / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"layer_norm_eps": 1e-3}))
    _, traced = decode(other, features)
    assert len(programs(kept, suffix)) == 2 * len(written)
    return traced


def assert_unwritable_directory_is_said_once(
    decode: Decode,
    checkpoint: Path,
    features: np.ndarray,
    keep_programs: Callable[[Path | None], None],
    scratch: Path,
    caplog: Any,
    logger: str,
    what: str,
) -> int:
    """Programs kept below a file: said once (``cannot keep <what>s``), and the tokens do not change."""
    expected, _ = decode(checkpoint, features)
    blocked = scratch / "a-file"
    blocked.write_text("not a directory")
    keep_programs(blocked / "programs")
    try:
        with caplog.at_level(logging.WARNING, logger=logger):
            got, traced = decode(checkpoint, features)
    finally:
        keep_programs(None)
    assert warnings_with(caplog, f"cannot keep {what}s") == 1 and warnings_with(caplog, "unreadable") == 0
    assert_same(got, expected)
    return traced
