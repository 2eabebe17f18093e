"""``whisper-mb serve``: the model loaded once and served to many clients.

- ``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``: OpenAI's API (:mod:`.openai_api`);
- ``WS /asr``: live streams in WhisperLiveKit's message shapes, and a TCP port with whisper_streaming's
  protocol (:mod:`.live_routes`), each stream an :class:`~whisper_core.streaming.OnlineProcessor`;
- ``GET /`` a page that records the microphone, ``/health``, ``/metrics`` (Prometheus).

Its dependencies are the ``[server]`` extra (FastAPI, uvicorn, websockets, python-multipart), imported only
when the server starts.
"""

from .settings import ServerSettings

__all__ = ["ServerSettings"]
