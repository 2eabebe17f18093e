"""The files in which a backend keeps its traced programs, so that a later process neither traces nor lowers them.

TensorFlow and JAX keep what XLA compiled in their own persistent caches, keyed by the lowered program:
every process would still trace the Python code again (1-2 s a process for base's programs) before it can
look a compilation up. Each backend therefore writes the traced program itself (JAX: ``jax.export``;
TensorFlow: the function library of a concrete function) to a file named by a hash of everything it
depends on, and later processes read it instead of tracing. This module holds what the two backends share:
where the files are, their names, atomic writes, and saying once that a directory cannot be written.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

from .fileio import atomic_path

CORE = Path(__file__).parent


class ProgramFiles:
    """A directory of kept programs (``None``: programs are not kept), each file named by the SHA-256 of its
    key and ``suffix``."""

    def __init__(self, what: str, suffix: str, logger: logging.Logger) -> None:
        self.what = what  # "JAX programs", named in warnings
        self.suffix = suffix
        self.directory: Path | None = None
        self._logger = logger
        self._unwritable: set[Path] = set()  # directories already said to be unwritable

    def keep(self, directory: str | Path | None) -> None:
        """Keep programs in ``directory`` from now on (``None``: stop keeping them)."""
        self.directory = Path(directory) if directory is not None else None

    def path(self, directory: Path, key: str) -> Path:
        """The file of the program whose key is ``key``."""
        return directory / (hashlib.sha256(key.encode()).hexdigest() + self.suffix)

    def write(self, path: Path, data: bytes) -> bool:
        """Write ``data`` to ``path`` atomically; where that fails, say so once per directory (the program then
        runs traced in each process) and return ``False``."""
        try:
            with atomic_path(path) as temp_path:
                temp_path.write_bytes(data)
        except OSError as error:
            if path.parent not in self._unwritable:
                self._unwritable.add(path.parent)
                self._logger.warning(
                    "cannot keep %s in %s (%s): each process traces them", self.what, path.parent, error
                )
            return False
        return True


@functools.cache
def source_hash(package: Path) -> str:
    """A hash of the code a backend's traced programs come from: every module of ``package`` (the backend) and
    of ``whisper_core`` (read once per process)."""
    sources = hashlib.sha256()
    for root in (package, CORE):
        for path in sorted(root.rglob("*.py")):
            sources.update(path.relative_to(root.parent).as_posix().encode() + b"\0" + path.read_bytes())
    return sources.hexdigest()
