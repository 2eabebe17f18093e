"""The files in which a backend keeps its traced programs, so that a later process neither traces nor lowers them.

TensorFlow and JAX keep what XLA compiled in their own persistent caches, keyed by the lowered program:
every process would still trace the Python code again (1-2 s a process for base's programs) before it can
look a compilation up. Each backend therefore writes the traced program itself (JAX: ``jax.export``;
TensorFlow: the function library of a concrete function) to a file named by a hash of everything it
depends on, and later processes read it instead of tracing. This module holds what the two backends share:
where the files are, their names, atomic writes, and saying once that a directory cannot be written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fileio import atomic_path

CORE = Path(__file__).parent
UNUSED_DAYS = 30  # a kept program not read or written for this long is deleted (it belonged to older code)
STALE_TEMP_DAYS = 1  # a half-written file this old was left by a process that was killed


class AnotherProgram(ValueError):
    """A kept program's file that holds the program of another key."""


class ProgramFiles:
    """A directory of kept programs (``None``: programs are not kept), each file named by the SHA-256 of its
    key and ``suffix``."""

    def __init__(self, what: str, suffix: str, logger: logging.Logger) -> None:
        self.what = what  # "JAX program", named in warnings
        self.suffix = suffix
        self.directory: Path | None = None
        self._logger = logger
        self._unwritable: set[Path] = set()  # directories already said to be unwritable
        self._pruned: set[Path] = set()  # directories already pruned by this process

    def keep(self, directory: str | Path | None) -> None:
        """Keep programs in ``directory`` from now on (``None``: stop keeping them)."""
        self.directory = Path(directory) if directory is not None else None

    def path(self, directory: Path, key: str) -> Path:
        """The file of the program whose key is ``key``."""
        return directory / (_digest(key) + self.suffix)

    def read(self, path: Path, key: str) -> bytes | None:
        """The program kept at ``path`` for ``key``, or ``None`` where there is none; raises
        :class:`AnotherProgram` where the file was written for another key (copied or swapped in: two programs
        may take the same arguments). A file read is marked as used now (its modification time), so that
        :meth:`prune` keeps it."""
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # no such file (below a file: writing says so, once)
            return None
        stamp, _, program = data.partition(b"\n")
        if stamp != _stamp(key):
            raise AnotherProgram(f"{path} was written for another program")
        with contextlib.suppress(OSError):  # where the file cannot be marked it is used all the same
            os.utime(path)
        return program

    def write(self, path: Path, key: str, program: bytes) -> bool:
        """Write ``program`` to ``path`` atomically, stamped with ``key``'s hash, after pruning the directory
        (once a process); where writing fails, say so once per directory (the program then runs traced in each
        process) and return ``False``."""
        if path.parent not in self._pruned:
            self._pruned.add(path.parent)
            self.prune(path.parent)
        try:
            with atomic_path(path) as temp_path:
                temp_path.write_bytes(_stamp(key) + b"\n" + program)
        except OSError as error:
            if path.parent not in self._unwritable:
                self._unwritable.add(path.parent)
                self._logger.warning(
                    "cannot keep %ss in %s (%s): each process traces them", self.what, path.parent, error
                )
            return False
        return True

    def first_run(
        self, kept: Callable[..., Any], path: Path | None, traced: Callable[..., Any], args: tuple
    ) -> tuple[Callable[..., Any], Any]:
        """Run a program read from (or just written to) ``path`` the first time: ``(what runs it from now on,
        its result)``. Where it fails (a file written elsewhere, or a fault of ours) the ``traced`` function runs
        instead and raises if the arguments are at fault; once that has run, the failed file is deleted, not read
        again."""
        try:
            return kept, kept(*args)
        except Exception as error:
            if kept is traced:
                raise
            self._logger.warning("kept %s %s did not run (%s): tracing it instead", self.what, path, error)
            result = traced(*args)
            if path is not None:
                path.unlink(missing_ok=True)
            return traced, result

    def prune(self, directory: Path) -> None:
        """Delete the programs of ``directory`` not used for :data:`UNUSED_DAYS` (every change of our code, of
        a framework or of a model's config leaves files nothing reads again) and half-written files older than
        :data:`STALE_TEMP_DAYS`. A file another process deletes first, or cannot delete, is left."""
        now = time.time()
        limits = {f"*{self.suffix}": UNUSED_DAYS, f".*{self.suffix}.*.tmp": STALE_TEMP_DAYS}
        for pattern, days in limits.items():
            for path in directory.glob(pattern):
                try:
                    if now - path.stat().st_mtime > days * 86400:
                        path.unlink()
                except OSError:
                    continue


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _stamp(key: str) -> bytes:
    """The first line of a kept program's file: what it was written for."""
    return f"whisper-mb program {_digest(key)}".encode()


@functools.cache
def source_hash(package: Path) -> str:
    """A hash of the code a backend's traced programs come from: every module of ``package`` (the backend) and
    of ``whisper_core`` (read once per process)."""
    sources = hashlib.sha256()
    for root in (package, CORE):
        for path in sorted(root.rglob("*.py")):
            sources.update(path.relative_to(root.parent).as_posix().encode() + b"\0" + path.read_bytes())
    return sources.hexdigest()
