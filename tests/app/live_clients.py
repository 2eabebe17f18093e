"""Real clients of a live server: audio as a browser or ``arecord`` sends it, over WebSocket or TCP."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from dataclasses import dataclass, field

import av
import numpy as np
import websockets

RATE = 16000


def pcm_bytes(audio: np.ndarray) -> bytes:
    """16 kHz float samples as raw s16le."""
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def webm_opus(audio: np.ndarray) -> bytes:
    """16 kHz float samples encoded as a browser's MediaRecorder does: Opus at 48 kHz in WebM."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)[None], format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        for resampled in av.AudioResampler(format="s16", layout="mono", rate=48000).resample(frame):
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


@dataclass
class WsResult:
    """What a WebSocket stream received: the config, every update, and whether it ended with ready_to_stop."""

    config: dict
    updates: list[dict] = field(default_factory=list)
    ready_to_stop: bool = False
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "".join(line["text"] for line in self.updates[-1]["lines"]) if self.updates else ""


async def stream_websocket(url: str, data: bytes, chunk_bytes: int, pace: float) -> WsResult:
    """Send ``data`` in frames of ``chunk_bytes`` every ``pace`` seconds, then the empty frame; collect replies."""
    started = time.perf_counter()
    async with websockets.connect(url, max_size=None) as websocket:
        result = WsResult(json.loads(await websocket.recv()))

        async def send() -> None:
            for offset in range(0, len(data), chunk_bytes):
                await websocket.send(data[offset : offset + chunk_bytes])
                await asyncio.sleep(pace)
            await websocket.send(b"")

        sender = asyncio.create_task(send())
        async for raw in websocket:
            message = json.loads(raw)
            if message.get("type") == "ready_to_stop":
                result.ready_to_stop = True
                break
            if message.get("type") == "error":
                result.errors.append(message["error"])
            elif "lines" in message:
                result.updates.append(message)
        await sender
    result.seconds = time.perf_counter() - started
    return result


def stream_tcp(port: int, data: bytes, chunk_bytes: int = 32000, pace: float = 0.0) -> list[str]:
    """whisper_streaming's client: raw PCM in, then half-close; the server's lines out (none when it refused
    the stream by closing the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as connection:
        try:
            for offset in range(0, len(data), chunk_bytes):
                connection.sendall(data[offset : offset + chunk_bytes])
                time.sleep(pace)
            connection.shutdown(socket.SHUT_WR)
        except OSError:  # the server closed the connection
            return []
        received = b""
        while chunk := connection.recv(4096):
            received += chunk
    return received.decode().splitlines()
