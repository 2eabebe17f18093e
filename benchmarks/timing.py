"""Alternating timings shared by the benchmarks (DESIGN §8).

This machine's speed drifts by 15-40% within minutes, so timing ours and then the peer puts a slow
minute on one side only. Here the two run alternately, A B A B ..., each pair in the same state (both
warm, or both cold), and the result is the median of the per-pair ratios with their range: a pair's
two runs are seconds apart, so each ratio sees one machine speed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

MIN_PAIRS = 3


@dataclass(frozen=True)
class Alternation:
    """Seconds per run of each side, pair by pair, and the first (warm-up) call of each when there was one."""

    ours: tuple[float, ...]
    peer: tuple[float, ...]
    first: tuple[float, float] | None = None

    @property
    def ratios(self) -> list[float]:
        """Peer time / our time per pair: the speed-up (>1: we are faster)."""
        return [peer / ours for ours, peer in zip(self.ours, self.peer, strict=True)]

    @property
    def speed_up(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> tuple[float, float]:
        """The lowest and highest speed-up over pairs: how much the machine moved the ratio."""
        return min(self.ratios), max(self.ratios)

    @property
    def time_ratio(self) -> float:
        """Our time / peer time, the median over pairs (the figure a target like "<= 1.5x the peer" reads)."""
        return statistics.median(1 / ratio for ratio in self.ratios)

    @property
    def ours_s(self) -> float:
        return statistics.median(self.ours)

    @property
    def peer_s(self) -> float:
        return statistics.median(self.peer)

    def cell(self, ratios: Sequence[float] | None = None, unit: str = "x") -> str:
        """ "1.53x (1.40-1.61)": the median ratio and the range over pairs (the speed-up unless given).
        report.py charts the first cell of a row that reads "<number>x"; other ratios go without unit."""
        ratios = self.ratios if ratios is None else ratios
        return f"{statistics.median(ratios):.2f}{unit} ({min(ratios):.2f}-{max(ratios):.2f})"


def alternate_measurements(
    ours: Callable[[], float], peer: Callable[[], float], pairs: int = MIN_PAIRS, *, warm: bool = True
) -> Alternation:
    """Like :func:`alternate`, for calls that time themselves and return their seconds: where a run
    has an untimed set-up, or times one part apart from another."""
    if pairs < MIN_PAIRS:
        raise ValueError(f"alternate at least {MIN_PAIRS} pairs (DESIGN §8), got {pairs}")
    first = (ours(), peer()) if warm else None
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(pairs):
        times[0].append(ours())
        times[1].append(peer())
    return Alternation(tuple(times[0]), tuple(times[1]), first)


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call, for a figure with no peer beside it
    (bench_features.py still times its sides one after the other with it)."""
    function()
    return min(_timed(function)() for _ in range(repeats))


def _timed(function: Callable[[], object]) -> Callable[[], float]:
    def measure() -> float:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    return measure


def alternate(
    ours: Callable[[], object], peer: Callable[[], object], pairs: int = MIN_PAIRS, *, warm: bool = True
) -> Alternation:
    """Time ``ours`` and ``peer`` alternately for ``pairs`` pairs, after one warm-up call each unless
    ``warm`` is false (then every call is a first call, as cold as the callables make it). The warm-up
    calls' times are kept in ``first`` (a compiled backend's first call is its compile)."""
    return alternate_measurements(_timed(ours), _timed(peer), pairs, warm=warm)


@dataclass
class Command:
    """A process to time: its arguments and, called before each run and not timed, its environment
    (so a cold state can hand every process fresh, empty caches). ``output`` is the last run's stdout."""

    arguments: Sequence[str]
    environment: Callable[[], Mapping[str, str]] = lambda: os.environ
    output: str = ""

    def measure(self) -> float:
        environment = dict(self.environment())
        start = time.perf_counter()
        result = subprocess.run(self.arguments, capture_output=True, text=True, env=environment)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(self.arguments)} failed ({result.returncode}): {result.stderr[-2000:]}")
        self.output = result.stdout
        return elapsed


def alternate_commands(ours: Command, peer: Command, pairs: int = MIN_PAIRS, *, warm: bool = False) -> Alternation:
    """Time two processes alternately, whole (start-up, loading and work, as a user waits for them).
    ``warm``: one run of each first, so caches the processes keep on disk are filled."""
    return alternate_measurements(ours.measure, peer.measure, pairs, warm=warm)
