"""``WS /asr`` and the TCP server: live audio in, committed words out, one :class:`StreamSession` each."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from .audio_input import PcmDecoder, decoder_for
from .auth import is_authorized
from .messages import tcp_line, update
from .sessions import StreamSession
from .state import ServerState

log = logging.getLogger("whisper_mb.server")
WS_TRY_AGAIN_LATER = 1013  # RFC 6455: the server is overloaded
TCP_READ = 32000  # bytes: one second of s16le 16 kHz mono


async def asr_websocket(websocket: WebSocket, state: ServerState) -> None:
    """One live client; see :mod:`.messages` for what it is told. The config asks WhisperLiveKit's clients for
    PCM (``useAudioWorklet``), the simplest to send; a browser's WebM or a file's bytes are decoded too."""
    settings = state.settings
    if not is_authorized(settings.api_key, websocket.headers, websocket.query_params):
        state.metrics.errors["/asr"] += 1
        await websocket.send_denial_response(
            JSONResponse(
                {"error": {"message": "a valid API key is required (?token=KEY)", "type": "invalid_api_key"}},
                status_code=401,
            )
        )
        return
    state.metrics.requests["/asr"] += 1
    await websocket.accept()
    if not state.open_stream():
        state.metrics.errors["/asr"] += 1
        await websocket.close(WS_TRY_AGAIN_LATER, f"server busy: {settings.max_streams} streams open")
        return
    try:
        session = state.new_session(websocket.query_params.get("language"))
    except ValueError as error:  # an unknown language
        state.close_stream()
        await websocket.send_json({"type": "error", "error": str(error)})
        await websocket.close(1008, "invalid session parameters")
        return
    await websocket.send_json(
        {"type": "config", "useAudioWorklet": True, "backend": settings.backend, "model": settings.model}
    )
    receiver = asyncio.create_task(_receive(websocket, session))
    try:
        async for _ in session.passes():
            lag = session.received_seconds - session.processor.buffer_end
            await websocket.send_json(update(session.committed, session.pending(), lag))
        if session.cancelled:
            log.info("a WebSocket client left mid-stream; its state is freed")
            return
        if error := receiver.result():
            await websocket.send_json({"type": "error", "error": error})
        await websocket.send_json({"type": "ready_to_stop"})
        await websocket.close()
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        log.info("a WebSocket client left mid-stream; its state is freed")
    except Exception:
        state.metrics.errors["/asr"] += 1
        log.exception("a WebSocket stream failed")
        with contextlib.suppress(Exception):
            await websocket.close(1011, "internal error")
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver
        state.close_stream()


async def _receive(websocket: WebSocket, session: StreamSession) -> str | None:
    """Read frames until the empty one (the session ends) or until the client leaves (it is cancelled).
    Returns the decoding error of a bad stream, if any."""
    loop = asyncio.get_running_loop()
    decoder = None
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                session.cancel()
                break
            data = message.get("bytes")
            if data is None:
                continue  # text frames carry nothing this server needs
            if not data:
                break  # the client's end of stream
            if decoder is None:
                decoder = decoder_for(data, session.feed, loop)
            decoder.feed(data)
    finally:
        if decoder is not None:
            await decoder.finish()
        session.end()
    return getattr(decoder, "error", None)


async def tcp_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: ServerState) -> None:
    """whisper_streaming's protocol: raw s16le 16 kHz mono in until EOF, ``"beg_ms end_ms text"`` lines out."""
    state.metrics.requests["tcp"] += 1
    if not state.open_stream():
        state.metrics.errors["tcp"] += 1
        writer.close()
        return
    session = state.new_session(None)
    decoder = PcmDecoder(session.feed)

    async def receive() -> None:
        try:
            while data := await reader.read(TCP_READ):
                decoder.feed(data)
        except ConnectionError:
            session.cancel()
        finally:
            session.end()

    receiver = asyncio.create_task(receive())
    try:
        async for words in session.passes():
            if words:
                writer.write(tcp_line(words).encode())
                await writer.drain()
    except ConnectionError:
        log.info("a TCP client left mid-stream; its state is freed")
    except Exception:
        state.metrics.errors["tcp"] += 1
        log.exception("a TCP stream failed")
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        state.close_stream()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
