"""What the server has done, for ``GET /metrics`` in Prometheus' text format (written here: a handful of
counters need no client library)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

PREFIX = "whisper_mb"


@dataclass
class Metrics:
    """Counters since the process started, and gauges of now."""

    requests: Counter = field(default_factory=Counter)  # by route
    errors: Counter = field(default_factory=Counter)  # by route
    audio_seconds: Counter = field(default_factory=Counter)  # by kind: upload, stream
    processing_seconds: float = 0.0  # model time, every kind
    open_streams: int = 0
    open_uploads: int = 0
    queued: int = 0  # model calls waiting or running

    def render(self) -> str:
        """The Prometheus exposition text (version 0.0.4)."""
        audio = sum(self.audio_seconds.values())
        lines: list[str] = []

        def family(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {PREFIX}_{name} {text}")
            lines.append(f"# TYPE {PREFIX}_{name} {kind}")
            lines.extend(f"{PREFIX}_{name}{labels} {value:g}" for labels, value in samples)

        family("requests_total", "counter", "Requests and streams by route.", _labelled("route", self.requests))
        family(
            "errors_total", "counter", "Requests and streams that failed, by route.", _labelled("route", self.errors)
        )
        family(
            "audio_seconds_total",
            "counter",
            "Seconds of audio received, by kind.",
            _labelled("kind", self.audio_seconds),
        )
        family("processing_seconds_total", "counter", "Seconds the model spent.", [("", self.processing_seconds)])
        family(
            "real_time_factor",
            "gauge",
            "Model seconds per audio second since the start.",
            [("", self.processing_seconds / audio if audio else 0.0)],
        )
        family("open_streams", "gauge", "Live streams now open.", [("", self.open_streams)])
        family("open_uploads", "gauge", "Uploads waiting or being transcribed.", [("", self.open_uploads)])
        family("queued_calls", "gauge", "Model calls waiting or running.", [("", self.queued)])
        return "\n".join(lines) + "\n"


def _labelled(label: str, counts: Counter) -> list[tuple[str, float]]:
    return [(f'{{{label}="{key}"}}', value) for key, value in sorted(counts.items())]
