"""The files of kept programs (``whisper_core.program_files``): named by their key, written whole, marked when
read, pruned when unused, and a directory that cannot be written said once."""

from __future__ import annotations

import logging
import os
import time

import pytest

from whisper_core.program_files import STALE_TEMP_DAYS, UNUSED_DAYS, AnotherProgram, ProgramFiles, source_hash

DAY = 86400
logger = logging.getLogger("tests.program_files")


def aged(path, days):
    stamp = time.time() - days * DAY
    os.utime(path, (stamp, stamp))
    return path


def made(path, days):
    path.write_bytes(b"contents")
    return aged(path, days)


def test_a_program_is_written_whole_under_its_key_and_read_back_marked_as_used(tmp_path):
    files = ProgramFiles("test program", ".prog", logger)
    path = files.path(tmp_path, "a key")
    assert path.parent == tmp_path and path.suffix == ".prog" and path != files.path(tmp_path, "another key")
    assert files.read(path, "a key") is None
    assert files.write(path, "a key", b"program\nwith lines")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left beside it
    aged(path, UNUSED_DAYS - 1)
    assert files.read(path, "a key") == b"program\nwith lines"
    assert time.time() - path.stat().st_mtime < DAY  # read: used now


def test_a_file_of_another_key_is_refused(tmp_path):
    """A file copied over another's name (two programs may take the same arguments) is not run."""
    files = ProgramFiles("test program", ".prog", logger)
    files.write(files.path(tmp_path, "greedy"), "greedy", b"greedy program")
    sampling = files.path(tmp_path, "sampling")
    sampling.write_bytes(files.path(tmp_path, "greedy").read_bytes())
    with pytest.raises(AnotherProgram, match="written for another program"):
        files.read(sampling, "sampling")


def test_programs_unused_for_a_month_and_stale_half_written_files_are_pruned_once_a_process(tmp_path):
    files = ProgramFiles("test program", ".prog", logger)
    recent = made(files.path(tmp_path, "recent"), UNUSED_DAYS - 1)
    made(files.path(tmp_path, "old"), UNUSED_DAYS + 1)
    made(tmp_path / f".{recent.name}.abc.tmp", STALE_TEMP_DAYS + 1)  # left by a killed process
    young = made(tmp_path / f".{recent.name}.def.tmp", 0)  # being written
    other = made(tmp_path / "notes.txt", 1000)  # not ours
    new = files.path(tmp_path, "new")
    assert files.write(new, "new", b"new")
    assert {p.name for p in tmp_path.iterdir()} == {recent.name, young.name, other.name, new.name}
    aged(recent, UNUSED_DAYS + 1)
    assert files.write(files.path(tmp_path, "newer"), "newer", b"newer")
    assert recent.exists()  # pruned once a process, not at every write


def test_an_unwritable_directory_is_said_once(tmp_path, caplog):
    files = ProgramFiles("test program", ".prog", logger)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert not files.write(files.path(blocked, "one"), "one", b"1")
        assert not files.write(files.path(blocked, "two"), "two", b"2")
    assert [r.getMessage().startswith("cannot keep test programs in") for r in caplog.records] == [True]


def test_the_source_hash_follows_the_backend_code(tmp_path):
    first, second = tmp_path / "first" / "backend", tmp_path / "second" / "backend"
    for package, body in ((first, "x = 1\n"), (second, "x = 2\n")):
        package.mkdir(parents=True)
        (package / "module.py").write_text(body)
    assert source_hash(first) != source_hash(second)
    (second / "module.py").write_text("x = 1\n")
    assert source_hash.__wrapped__(first) == source_hash.__wrapped__(second)  # the same code, the same hash


def test_a_kept_program_that_fails_gives_way_to_the_traced_function_and_its_file_goes(tmp_path, caplog):
    files = ProgramFiles("test program", ".prog", logger)
    path = files.path(tmp_path, "key")
    files.write(path, "key", b"broken")

    def broken(x):
        raise RuntimeError("a file written elsewhere")

    def traced(x):
        if x < 0:
            raise ValueError("arguments at fault")
        return x + 1

    with caplog.at_level(logging.WARNING, logger=logger.name):
        run, result = files.first_run(broken, path, traced, (1,))
    assert run is traced and result == 2 and not path.exists()
    assert [r.getMessage().startswith("kept test program") for r in caplog.records] == [True]
    with pytest.raises(ValueError, match="arguments at fault"):  # the traced function's own error is raised
        files.first_run(traced, None, traced, (-1,))
    files.write(path, "key", b"a good program")
    with pytest.raises(ValueError, match="arguments at fault"):
        files.first_run(broken, path, traced, (-1,))
    assert path.exists()  # the arguments were at fault, not the file


def test_a_directory_below_a_file_has_no_programs_to_read(tmp_path):
    files = ProgramFiles("test program", ".prog", logger)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    assert files.read(files.path(blocked, "key"), "key") is None  # writing says it, once
