"""Load test of ``whisper-mb serve`` (issue 18): live WebSocket streams at real-time pace and OpenAI-client
uploads at once, against one real server process on 127.0.0.1 (loopback only, bounded in requests and time).

Not a comparison with a peer, so it does not alternate (DESIGN §8): it reports how one server copes.
``--streams`` clients (8) each send ``--stream-audio`` (jfk twice with a pause, 27 s) as raw s16le in 0.25 s
frames at real-time pace, then the empty frame; meanwhile ``--uploads`` (20) transcriptions of jfk go
through the official ``openai`` client, ``--upload-concurrency`` (4) at a time. Reported:

- uploads: request latency p50 / p95 (s), errors, transcripts right (WER <= 0.15 against jfk's text);
- streams: commit latency p50 / p95 (s): for every update that commits new audio, when it arrived less
  when the end of that audio was sent (the client sends at real-time pace, so this is what a listener
  waits); the final latency (last frame sent -> ready_to_stop), errors, transcripts right;
- the server's /metrics afterwards: real-time factor and errors.

    .venv/bin/python benchmarks/load_server.py [--backend pt] [--model tiny.en] [--streams 8] [--uploads 20]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openai
import requests
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.app.live_clients import RATE, pcm_bytes
from tests.app.server_process import ServerProcess
from tests.conftest import JFK_FLAC, JFK_TEXT
from tests.helpers import english_wer
from weights_bridge import fetch
from whisper_core.audio import load_audio

FRAME_SECONDS = 0.25
RIGHT_WER = 0.15
TIME_LIMIT = 600.0  # s for the whole load


def seconds_of(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


async def one_stream(url: str, audio: np.ndarray) -> dict:
    """Send at real-time pace; time every update that commits audio further."""
    data, frame = pcm_bytes(audio), round(FRAME_SECONDS * RATE) * 2
    latencies: list[float] = []
    async with websockets.connect(url, max_size=None, open_timeout=60) as websocket:
        await websocket.recv()  # config
        started = time.perf_counter()

        async def send() -> float:
            for index, offset in enumerate(range(0, len(data), frame)):
                await asyncio.sleep(max(0.0, started + index * FRAME_SECONDS - time.perf_counter()))
                await websocket.send(data[offset : offset + frame])
            await websocket.send(b"")
            return time.perf_counter()

        sender = asyncio.create_task(send())
        committed_to, last, errors = 0.0, None, []
        async for raw in websocket:
            message = json.loads(raw)
            if message.get("type") == "ready_to_stop":
                break
            if message.get("type") == "error":
                errors.append(message["error"])
            elif message.get("lines"):
                last = message
                end = seconds_of(message["lines"][-1]["end"])
                if end > committed_to:
                    arrived = time.perf_counter() - started
                    latencies.append(arrived - min(end, len(audio) / RATE))
                    committed_to = end
        finished = time.perf_counter()
        last_sent = await sender
    text = "".join(line["text"] for line in last["lines"]) if last else ""
    return {"latencies": latencies, "final": finished - last_sent, "text": text, "errors": errors}


def one_upload(client: openai.OpenAI, path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    with path.open("rb") as file:
        text = client.audio.transcriptions.create(model="whisper-1", file=file).text
    return time.perf_counter() - started, text


async def load(server: ServerProcess, args: argparse.Namespace, stream_audio: np.ndarray, reference: str) -> dict:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=TIME_LIMIT)
    pool = concurrent.futures.ThreadPoolExecutor(args.upload_concurrency)
    loop = asyncio.get_running_loop()
    uploads = [loop.run_in_executor(pool, one_upload, client, JFK_FLAC) for _ in range(args.uploads)]
    streams = [one_stream(f"{server.ws_url}/asr", stream_audio) for _ in range(args.streams)]
    results = await asyncio.wait_for(
        asyncio.gather(
            asyncio.gather(*streams, return_exceptions=True), asyncio.gather(*uploads, return_exceptions=True)
        ),
        TIME_LIMIT,
    )
    pool.shutdown()
    stream_results, upload_results = results
    report: dict = {}
    good_uploads = [r for r in upload_results if not isinstance(r, BaseException)]
    upload_latency = np.array([seconds for seconds, _ in good_uploads])
    report["uploads"] = {
        "count": args.uploads,
        "errors": args.uploads - len(good_uploads),
        "right": sum(english_wer(JFK_TEXT, text) <= RIGHT_WER for _, text in good_uploads),
        "p50_s": round(float(np.percentile(upload_latency, 50)), 2) if len(good_uploads) else None,
        "p95_s": round(float(np.percentile(upload_latency, 95)), 2) if len(good_uploads) else None,
    }
    good_streams = [r for r in stream_results if not isinstance(r, BaseException) and not r["errors"]]
    commit = np.array([value for r in good_streams for value in r["latencies"]])
    final = np.array([r["final"] for r in good_streams])
    report["streams"] = {
        "count": args.streams,
        "audio_s": round(len(stream_audio) / RATE, 1),
        "errors": args.streams - len(good_streams),
        "right": sum(english_wer(reference, r["text"]) <= RIGHT_WER for r in good_streams),
        "commit_p50_s": round(float(np.percentile(commit, 50)), 2) if commit.size else None,
        "commit_p95_s": round(float(np.percentile(commit, 95)), 2) if commit.size else None,
        "final_p50_s": round(float(np.percentile(final, 50)), 2) if final.size else None,
        "final_p95_s": round(float(np.percentile(final, 95)), 2) if final.size else None,
    }
    failures = [repr(r) for r in [*stream_results, *upload_results] if isinstance(r, BaseException)]
    if failures:
        report["exceptions"] = failures[:5]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="pt")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--upload-concurrency", type=int, default=4)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds of silence between the two jfk in a stream")
    args = parser.parse_args()
    jfk = load_audio(JFK_FLAC)
    stream_audio = np.concatenate([jfk, np.zeros(round(args.pause * RATE), np.float32), jfk])
    reference = f"{JFK_TEXT} {JFK_TEXT}"
    directory = str(fetch(args.model)) if re.fullmatch(r"[\w.]+", args.model) else args.model
    with tempfile.TemporaryDirectory() as scratch:
        command = ["--backend", args.backend, "--model", directory, "--max-streams", str(args.streams)]
        with ServerProcess(command, Path(scratch) / "server.log") as server:
            asyncio.run(one_stream(f"{server.ws_url}/asr", jfk[: 3 * RATE]))  # warm: first pass, compilations
            started = time.perf_counter()
            report = asyncio.run(load(server, args, stream_audio, reference))
            report["wall_s"] = round(time.perf_counter() - started, 1)
            metrics = requests.get(f"{server.url}/metrics", timeout=10).text
            report["server"] = {
                line.split()[0]: float(line.split()[1])
                for line in metrics.splitlines()
                if line.startswith(("whisper_mb_real_time_factor", "whisper_mb_errors_total"))
            }
            report["server_alive"] = server.alive()
    report.update(backend=args.backend, model=args.model)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
