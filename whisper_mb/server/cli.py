"""``whisper-mb serve``: load the model once, then serve it over HTTP, WebSocket and (optionally) TCP."""

from __future__ import annotations

import argparse
import logging

from weights_bridge import quantization
from weights_bridge.fetching import resolve_model
from whisper_core.streaming import POLICIES
from whisper_core.transcribe import Transcriber

from ..compile_cache import keep_compilations
from ..registry import BACKENDS, load_backend
from .settings import ServerSettings

INSTALL_HINT = "the server needs the [server] extra: pip install 'whisper-multibackend[server]'"


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .app import create_app
        from .state import ServerState
    except ImportError as error:
        raise SystemExit(f"whisper-mb serve: {INSTALL_HINT} ({error})") from error
    settings = ServerSettings(
        backend=args.backend,
        model=args.model,
        compute_type=args.compute_type,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        max_streams=args.max_streams,
        max_uploads=args.max_uploads,
        max_upload_mb=args.max_upload_mb,
        tcp_port=args.tcp_port,
        vad=not args.no_vad,
        policy=args.policy,
        min_chunk_size=args.min_chunk_size,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    directory = resolve_model(settings.model)
    keep_compilations(settings.backend)
    transcriber = Transcriber.from_pretrained(
        load_backend(settings.backend, directory, settings.compute_type), directory
    )
    uvicorn.run(
        create_app(ServerState(settings, transcriber)), host=settings.host, port=settings.port, log_level="info"
    )
    return 0


def add_serve(subparsers: argparse._SubParsersAction) -> None:
    """Register ``whisper-mb serve``."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a model: OpenAI-compatible uploads, live WebSocket and TCP streams, a web page",
        description="One process, the model loaded once and shared by every request and stream. "
        "--api-key guards every HTTP and WebSocket route; the TCP protocol (--tcp-port) has no authentication "
        "and listens on --host only, so keep --host on a trusted interface when you use it.",
    )
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="pt")
    parser.add_argument("--model", default="tiny.en", help="tiny.en, base, a checkpoint directory or a hub id")
    parser.add_argument("--compute-type", choices=quantization.COMPUTE_TYPES, default="float32")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (HTTP, WebSocket and TCP)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", help="require this key (Authorization: Bearer KEY, or ?token=KEY); not on TCP")
    parser.add_argument("--max-streams", type=int, default=8, help="live streams at once; more are refused")
    parser.add_argument("--max-uploads", type=int, default=32, help="uploads waiting or running at once")
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="larger uploads get 413")
    parser.add_argument(
        "--tcp-port", type=int, help="also serve whisper_streaming's TCP protocol here (no authentication)"
    )
    parser.add_argument("--policy", choices=POLICIES, default="localagreement", help="streaming commit policy")
    parser.add_argument("--min-chunk-size", type=float, default=1.0, help="seconds of new audio per stream pass")
    parser.add_argument(
        "--no-vad", action="store_true", help="decode silence too (no Silero VAD on streams or uploads)"
    )
    parser.set_defaults(handler=_serve)
