"""Streams played through an online processor: a file in simulated real time, or live input.

In the simulation, as in whisper_streaming's, a clock starts with playback and advances both with the
audio (a pass waits until ``min_chunk_size`` seconds of new audio have arrived) and with the time each
pass takes (audio that arrived meanwhile goes into the next pass). The clock is virtual, so a file
plays in the time its passes take, yet every commit is stamped when a real-time run would emit it;
a word's latency is that stamp less the word's end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .agreement import StreamWord
from .online import OnlineProcessor


@dataclass(frozen=True)
class Commit:
    """A committed word and when it was emitted (seconds from the start of playback)."""

    emitted: float
    word: StreamWord

    def as_dict(self) -> dict:
        return {
            "emitted": round(self.emitted, 3),
            "start": round(self.word.start, 3),
            "end": round(self.word.end, 3),
            "text": self.word.text,
        }


@dataclass
class StreamStats:
    """What a played stream cost: processing seconds against audio seconds, and its commits."""

    processing: float = 0.0
    audio: float = 0.0
    commits: list[Commit] | None = None

    def summary(self) -> dict:
        """Latency mean and 90th percentile (emitted - end), real-time factor, words."""
        latencies = np.array([c.emitted - c.word.end for c in self.commits or []])
        return {
            "latency_mean": round(float(latencies.mean()), 3) if latencies.size else None,
            "latency_p90": round(float(np.percentile(latencies, 90)), 3) if latencies.size else None,
            "rtf": round(self.processing / self.audio, 3) if self.audio else None,
            "words": int(latencies.size),
        }


def simulate(
    processor: OnlineProcessor,
    audio: np.ndarray,
    min_chunk_size: float = 1.0,
    stats: StreamStats | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[Commit]:
    """Play 16 kHz ``audio`` into ``processor`` in simulated real time; yield each commit as it happens."""
    if min_chunk_size <= 0:
        raise ValueError(f"min_chunk_size must be positive, got {min_chunk_size}")
    stats = stats if stats is not None else StreamStats()
    stats.commits = []
    rate = processor.sampling_rate
    duration = len(audio) / rate
    stats.audio = duration
    now, fed = 0.0, 0
    while fed < len(audio):
        now = max(now, min(fed / rate + min_chunk_size, duration))  # wait for the next chunk
        arrived = min(len(audio), int(now * rate))
        processor.insert_audio_chunk(audio[fed:arrived])
        fed = arrived
        started = clock()
        words = processor.process_iter()
        spent = clock() - started
        now += spent
        stats.processing += spent
        yield from _record(stats, now, words)
    started = clock()
    words = processor.finish()
    spent = clock() - started
    stats.processing += spent
    yield from _record(stats, now + spent, words)


def live(
    processor: OnlineProcessor,
    chunks: Iterable[np.ndarray],
    stats: StreamStats | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[Commit]:
    """Feed chunks as they come (microphone, pipe, socket); commits are stamped by the wall clock."""
    stats = stats if stats is not None else StreamStats()
    stats.commits = []
    begin = clock()
    for chunk in chunks:
        processor.insert_audio_chunk(chunk)
        stats.audio += len(chunk) / processor.sampling_rate
        started = clock()
        words = processor.process_iter()
        stats.processing += clock() - started
        yield from _record(stats, clock() - begin, words)
    started = clock()
    words = processor.finish()
    stats.processing += clock() - started
    yield from _record(stats, clock() - begin, words)


def _record(stats: StreamStats, emitted: float, words: list[StreamWord]) -> Iterator[Commit]:
    for word in words:
        commit = Commit(emitted, word)
        assert stats.commits is not None
        stats.commits.append(commit)
        yield commit
