"""What one ``whisper-mb serve`` process serves, and its limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    """The model, the network and the limits of one server process."""

    backend: str = "pt"
    model: str = "tiny.en"  # as given on the command line: a name, a directory or a hub id
    compute_type: str = "float32"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_streams: int = 8  # live streams (WebSocket and TCP) at once; the next is refused
    max_uploads: int = 32  # uploads waiting or running at once; the next gets 503
    max_upload_mb: float = 25.0  # OpenAI's own limit
    tcp_port: int | None = None
    vad: bool = True  # Silero VAD: voice activity control on streams, only speech decoded in uploads
    policy: str = "localagreement"
    min_chunk_size: float = 1.0  # s of new audio before a stream's next pass
    upload_batch_size: int = 8  # long uploads: VAD-cut pieces decoded this many at once

    def __post_init__(self) -> None:
        if self.max_streams < 1 or self.max_uploads < 1:
            raise ValueError("--max-streams and --max-uploads must be at least 1")
        if self.max_upload_mb <= 0:
            raise ValueError(f"--max-upload-mb must be positive, got {self.max_upload_mb}")
        if self.min_chunk_size <= 0:
            raise ValueError(f"--min-chunk-size must be positive, got {self.min_chunk_size}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)
