"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations`` as OpenAI's API defines them, so the
official ``openai`` client (and code written for it) works against this server unchanged.

The upload is read into memory (:mod:`.uploads`), decoded with PyAV, and transcribed on the shared model
thread: with the VAD on, only its speech is decoded, and an upload longer than one 30 s window goes
through the VAD-batched pipeline (pieces decoded ``upload_batch_size`` at a time).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, replace

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from whisper_core.audio import load_audio
from whisper_core.languages import LANGUAGES, language_code
from whisper_core.transcribe import WRITERS, TranscribeOptions, Transcription
from whisper_core.transcribe.batched import BATCHED_VAD_OPTIONS
from whisper_core.transcribe.fallback import DEFAULT_TEMPERATURES

from .state import ServerState
from .uploads import UploadError, read_form
from .worker import BATCH

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
TEMPERATURE_STEP = 0.2  # openai-whisper's increment on fallback


def error_response(message: str, status: int, param: str | None = None, code: str | None = None) -> JSONResponse:
    """OpenAI's error body, which its client turns into ``BadRequestError`` and friends."""
    kind = {401: "invalid_api_key", 413: "invalid_request_error", 503: "server_error"}.get(status)
    body = {"message": message, "type": kind or "invalid_request_error", "param": param, "code": code}
    return JSONResponse({"error": body}, status_code=status)


@dataclass(frozen=True)
class AudioRequest:
    """The form fields of one request, checked."""

    audio_bytes: bytes
    response_format: str
    granularities: tuple[str, ...]
    options: TranscribeOptions


async def handle_upload(request: Request, state: ServerState, task: str) -> Response:
    """One transcription or translation request, start to finish; any failure is an OpenAI-style error."""
    route = request.url.path
    state.metrics.requests[route] += 1
    if not state.open_upload():
        state.metrics.errors[route] += 1
        return error_response(f"server busy: {state.settings.max_uploads} uploads in progress", 503)
    try:
        return await _transcribe_upload(request, state, task)
    except UploadError as error:
        state.metrics.errors[route] += 1
        return error_response(str(error), error.status, error.param)
    finally:
        state.close_upload()


async def _transcribe_upload(request: Request, state: ServerState, task: str) -> Response:
    declared = request.headers.get("content-length")
    form = await read_form(
        request.headers.get("content-type", ""),
        request.stream(),
        state.settings.max_upload_bytes,
        int(declared) if declared and declared.isdigit() else None,
    )
    parsed = _parse(form, state, task)
    try:
        audio = await asyncio.to_thread(load_audio, parsed.audio_bytes)
    except ValueError as error:
        raise UploadError(f"the file is not audio this server can decode: {error}", param="file") from error
    seconds = len(audio) / state.transcriber.feature_extractor.sampling_rate
    state.metrics.audio_seconds["upload"] += seconds
    window = state.transcriber.window_frames / state.transcriber.frames_per_second
    options, batch_size = parsed.options, 1
    if state.vad_available and seconds > window:  # faster-whisper's batched pipeline cuts at shorter pauses
        options, batch_size = replace(options, vad_options=BATCHED_VAD_OPTIONS), state.settings.upload_batch_size
    (result,) = await state.worker.run(
        state.transcriber.transcribe, [audio], options, batch_size=batch_size, priority=BATCH
    )
    return _respond(result, parsed, task, seconds)


def _parse(form, state: ServerState, task: str) -> AudioRequest:
    upload = form.file("file")
    if upload is None or upload.filename is None:
        raise UploadError("a 'file' part with the audio is required", param="file")
    if not upload.data:
        raise UploadError("the uploaded file is empty", param="file")
    model = form.value("model")
    if model is None:
        raise UploadError("'model' is required", param="model")
    if model not in state.model_names:
        served = sorted(state.model_names)
        raise UploadError(f"model {model!r} is not served here: ask for one of {served}", param="model")
    response_format = form.value("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise UploadError(f"response_format must be one of {RESPONSE_FORMATS}", param="response_format")
    granularities = tuple(form.values("timestamp_granularities[]") + form.values("timestamp_granularities"))
    if unknown := [g for g in granularities if g not in GRANULARITIES]:
        raise UploadError(
            f"unknown timestamp granularity {unknown[0]!r}: {GRANULARITIES}", param="timestamp_granularities"
        )
    language = form.value("language") if task == "transcribe" else None
    try:
        language = language_code(language) if language else None
    except ValueError as error:
        raise UploadError(str(error), param="language") from error
    if not state.transcriber.ids.is_multilingual and (task == "translate" or language not in (None, "en")):
        raise UploadError(
            f"the served model {state.settings.model!r} is English-only: it cannot "
            + ("translate" if task == "translate" else f"transcribe language {language!r}"),
            param="language" if task == "transcribe" else "model",
        )
    temperature = _temperatures(form.value("temperature"))
    options = TranscribeOptions(
        language=language,
        task="translate" if task == "translate" else None,  # English-only models take no task token
        temperature=temperature,
        initial_prompt=form.value("prompt") or None,
        word_timestamps="word" in granularities,
        vad_filter=state.vad_available,
    )
    return AudioRequest(bytes(upload.data), response_format, granularities, options)


def _temperatures(value: str | None) -> tuple[float, ...]:
    """OpenAI's ``temperature``: 0 (the default) raises the temperature on failure as openai-whisper does;
    above 0, decoding starts there and falls back upwards."""
    try:
        start = float(value) if value not in (None, "") else 0.0
    except ValueError as error:
        raise UploadError(f"temperature must be a number, got {value!r}", param="temperature") from error
    if not 0.0 <= start <= 1.0:
        raise UploadError(f"temperature must be between 0 and 1, got {start}", param="temperature")
    if start == 0.0:
        return DEFAULT_TEMPERATURES
    steps = round((1.0 - start) / TEMPERATURE_STEP)
    return tuple(round(start + TEMPERATURE_STEP * i, 2) for i in range(steps + 1))


def _respond(result: Transcription, request: AudioRequest, task: str, seconds: float) -> Response:
    text = result.text.strip()
    if request.response_format == "json":
        return JSONResponse({"text": text})
    if request.response_format == "text":
        return PlainTextResponse(text + "\n")
    if request.response_format in ("srt", "vtt"):
        buffer = io.StringIO()
        WRITERS[request.response_format](result, buffer)
        return PlainTextResponse(buffer.getvalue())
    body: dict = {
        "task": "translate" if task == "translate" else "transcribe",
        "language": LANGUAGES.get(result.language or "en", result.language),
        "duration": round(seconds, 3),
        "text": text,
    }
    if "segment" in request.granularities or not request.granularities:
        body["segments"] = [
            {
                "id": index,
                "seek": segment.seek,
                "start": segment.start,
                "end": segment.end,
                "text": segment.text,
                "tokens": segment.tokens,
                "temperature": segment.temperature,
                "avg_logprob": segment.avg_logprob,
                "compression_ratio": segment.compression_ratio,
                "no_speech_prob": segment.no_speech_prob,
            }
            for index, segment in enumerate(result.segments)
        ]
    if "word" in request.granularities:
        body["words"] = [
            {"word": word.word.strip(), "start": word.start, "end": word.end}
            for segment in result.segments
            for word in segment.words
        ]
    return JSONResponse(body)
