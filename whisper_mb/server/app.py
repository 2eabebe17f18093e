"""The FastAPI application: routes, the API key, errors that never take the server down, and the TCP
server started alongside when asked for."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from .auth import is_authorized
from .live_routes import asr_websocket, tcp_client
from .openai_api import error_response, handle_upload
from .state import ServerState

log = logging.getLogger("whisper_mb.server")
PAGE = resources.files(__package__).joinpath("static/index.html")


def create_app(state: ServerState) -> FastAPI:
    """The application serving ``state``'s model (loaded already: a request never waits for it)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tcp = None
        if state.settings.tcp_port is not None:
            tcp = await asyncio.start_server(
                lambda reader, writer: tcp_client(reader, writer, state), state.settings.host, state.settings.tcp_port
            )
            log.info("TCP streaming on %s:%d (no authentication)", state.settings.host, state.settings.tcp_port)
        try:
            yield
        finally:
            if tcp is not None:
                tcp.close()
                await tcp.wait_closed()
            state.worker.close()

    app = FastAPI(title="whisper-mb", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next) -> Response:
        """The API key on every HTTP route, and a JSON error (never a dead server) for whatever goes wrong."""
        if not is_authorized(state.settings.api_key, request.headers, request.query_params):
            state.metrics.errors[request.url.path] += 1
            return error_response("a valid API key is required (Authorization: Bearer KEY)", 401)
        try:
            return await call_next(request)
        except Exception:
            state.metrics.errors[request.url.path] += 1
            log.exception("request %s %s failed", request.method, request.url.path)
            return error_response("internal server error", 500)

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> JSONResponse:
        settings = state.settings
        return JSONResponse(
            {
                "status": "ok",
                "backend": settings.backend,
                "model": settings.model,
                "compute_type": settings.compute_type,
                "vad": state.vad_available,
                "open_streams": state.metrics.open_streams,
                "max_streams": settings.max_streams,
            }
        )

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        return await handle_upload(request, state, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request) -> Response:
        return await handle_upload(request, state, "translate")

    @app.websocket("/asr")
    async def asr(websocket: WebSocket) -> None:
        await asr_websocket(websocket, state)

    return app
