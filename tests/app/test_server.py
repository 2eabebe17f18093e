"""``whisper-mb serve`` as a real process on 127.0.0.1 with the real tiny.en (and base) weights, driven by
real clients: the official ``openai`` client, ``websockets``, raw TCP, ``requests`` and a headless Chromium."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
import requests
import websockets

from tests.app.live_clients import RATE, pcm_bytes, stream_tcp, stream_websocket, webm_opus
from tests.app.server_process import ServerProcess
from tests.conftest import JFK_TEXT, synthesize
from tests.helpers import english_wer

pytestmark = pytest.mark.slow
KEY = "test-key-123"
MAX_UPLOAD_MB = 2
TIME = re.compile(r"^\d+:\d\d:\d\d\.\d\d$")


def wer(hypothesis: str, reference: str = JFK_TEXT) -> float:
    return english_wer(reference, hypothesis)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_en_dir: Path) -> Iterator[ServerProcess]:
    """tiny.en on PyTorch with TCP, two streams at most, 2 MB uploads; its temporary directory is watched."""
    root = tmp_path_factory.mktemp("server")
    (root / "tmp").mkdir()
    args = ["--backend", "pt", "--model", str(tiny_en_dir), "--max-streams", "2", "--max-upload-mb", str(MAX_UPLOAD_MB)]
    with ServerProcess(args, root / "log.txt", tcp=True, env={"TMPDIR": str(root / "tmp")}) as process:
        process.tmp = root / "tmp"
        yield process
        assert process.alive(), f"the server died: {process.log()}"


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_openai_client_gets_every_response_format(client: openai.OpenAI, jfk_path: Path) -> None:
    with jfk_path.open("rb") as file:
        assert wer(client.audio.transcriptions.create(model="whisper-1", file=file).text) <= 0.1
    with jfk_path.open("rb") as file:
        text = client.audio.transcriptions.create(model="tiny.en", file=file, response_format="text")
    assert isinstance(text, str) and wer(text) <= 0.1
    for response_format, header in (("srt", "1\n00:00:00,000 --> "), ("vtt", "WEBVTT\n\n00:00.000 --> ")):
        with jfk_path.open("rb") as file:
            subtitles = client.audio.transcriptions.create(model="tiny.en", file=file, response_format=response_format)
        assert subtitles.startswith(header), subtitles
        assert "ask what you can do for your country" in subtitles.lower()


def test_verbose_json_with_word_and_segment_timestamps(client: openai.OpenAI, jfk_path: Path) -> None:
    with jfk_path.open("rb") as file:
        result = client.audio.transcriptions.create(
            model="tiny.en",
            file=file,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
            temperature=0.0,
        )
    assert result.language == "english" and result.duration == pytest.approx(11.0, abs=0.01)
    assert wer(result.text) <= 0.1
    assert result.segments and result.words
    assert wer(" ".join(word.word for word in result.words)) <= 0.1
    starts = [word.start for word in result.words]
    assert starts == sorted(starts) and all(0 <= w.start <= w.end <= result.duration for w in result.words)
    assert all(0 <= s.start < s.end <= result.duration for s in result.segments)
    with jfk_path.open("rb") as file:  # words only: no segments, as OpenAI answers
        words_only = client.audio.transcriptions.create(
            model="tiny.en", file=file, response_format="verbose_json", timestamp_granularities=["word"]
        )
    assert words_only.words and not words_only.segments


def test_prompt_steers_the_spelling(client: openai.OpenAI, jfk_path: Path) -> None:
    with jfk_path.open("rb") as file:
        text = client.audio.transcriptions.create(
            model="tiny.en", file=file, prompt="My Fellow-Americans, ASK NOT.", response_format="text"
        )
    with jfk_path.open("rb") as file:
        plain = client.audio.transcriptions.create(model="tiny.en", file=file, response_format="text")
    assert text != plain and wer(text) <= 0.2


def test_bad_requests_get_openai_errors_and_the_server_lives(
    client: openai.OpenAI, server: ServerProcess, jfk_path: Path
) -> None:
    audio = jfk_path.read_bytes()
    cases = {
        "not audio": dict(model="tiny.en", file=("x.wav", b"RIFF this is not audio at all")),
        "empty file": dict(model="tiny.en", file=("x.wav", b"")),
        "unknown model": dict(model="gpt-4o-transcribe", file=("jfk.flac", audio)),
        "unknown format": dict(model="tiny.en", file=("jfk.flac", audio), response_format="xml"),
        "unknown language": dict(model="tiny.en", file=("jfk.flac", audio), language="klingon"),
        "English-only model, French": dict(model="tiny.en", file=("jfk.flac", audio), language="fr"),
        "temperature out of range": dict(model="tiny.en", file=("jfk.flac", audio), temperature=3.0),
    }
    for name, arguments in cases.items():
        with pytest.raises(openai.BadRequestError) as raised:
            client.audio.transcriptions.create(**arguments)
        error = raised.value.body
        assert error["type"] == "invalid_request_error" and error["message"], (name, error)
    with pytest.raises(openai.BadRequestError, match="English-only"):
        client.audio.translations.create(model="tiny.en", file=("jfk.flac", audio))
    for body, headers in (
        (b"plain body", {"Content-Type": "text/plain"}),
        (b"--xx\r\nbroken", {"Content-Type": "multipart/form-data; boundary=xx"}),
    ):
        response = requests.post(f"{server.url}/v1/audio/transcriptions", data=body, headers=headers, timeout=30)
        assert response.status_code == 400 and response.json()["error"]["message"]
    assert requests.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"


def test_an_upload_over_the_limit_gets_413_and_nothing_touches_the_disk(
    server: ServerProcess, jfk_audio: np.ndarray
) -> None:
    big = b"\0" * (MAX_UPLOAD_MB * 2**20 + 200_000)
    response = requests.post(
        f"{server.url}/v1/audio/transcriptions", files={"file": ("big.wav", big)}, data={"model": "tiny.en"}, timeout=60
    )
    assert response.status_code == 413 and "limit" in response.json()["error"]["message"]

    # A 1.5 MB WAV sent slowly: while the server reads it, its temporary directory stays empty (Starlette's
    # own form parser would spool it there).
    wav = _wav_bytes(np.tile(jfk_audio, 4)[: 45 * RATE])
    boundary = "bOuNdArY"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ntiny.en\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="long.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    before = sorted(p.name for p in server.tmp.iterdir())  # what the process made at start-up
    seen_in_tmp: list[list[str]] = []

    def body() -> Iterator[bytes]:
        yield head
        for offset in range(0, len(wav), 256 * 1024):
            yield wav[offset : offset + 256 * 1024]
            time.sleep(0.2)
            seen_in_tmp.append(sorted(p.name for p in server.tmp.iterdir()))
        yield tail

    response = requests.post(
        f"{server.url}/v1/audio/transcriptions",
        data=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    assert response.json()["text"].lower().count("your country") >= 6  # four times jfk (batched VAD path)
    assert len(seen_in_tmp) >= 5 and all(seen == before for seen in seen_in_tmp), (before, seen_in_tmp)
    assert sorted(p.name for p in server.tmp.iterdir()) == before


@pytest.mark.parametrize("encoding", ["pcm", "webm", "flac file"])
def test_websocket_stream_in_whisperlivekit_messages(
    server: ServerProcess, jfk_audio: np.ndarray, jfk_path: Path, encoding: str
) -> None:
    data = (
        {"pcm": pcm_bytes, "webm": webm_opus}[encoding](jfk_audio) if encoding != "flac file" else jfk_path.read_bytes()
    )
    chunk = len(data) // 20  # 0.55 s of audio per frame, sent twice as fast as real time
    result = asyncio.run(stream_websocket(f"{server.ws_url}/asr", data, chunk, 0.27))
    assert result.config == {"type": "config", "useAudioWorklet": True, "backend": "pt", "model": server.args[3]}
    assert result.ready_to_stop and not result.errors
    assert len(result.updates) >= 3  # updates while it streams, not one answer at the end
    final = result.updates[-1]
    assert set(final) >= {"status", "lines", "buffer_transcription", "remaining_time_transcription"}
    assert final["status"] == "active_transcription" and final["buffer_transcription"] == ""
    for line in final["lines"]:
        assert set(line) == {"speaker", "text", "start", "end"} and line["speaker"] == 1
        assert TIME.match(line["start"]) and TIME.match(line["end"]) and line["start"] <= line["end"]
    assert wer(result.text) <= 0.15, result.text
    pending = [update["buffer_transcription"] for update in result.updates[:-1]]
    assert any(pending), "the pending words were never shown"


def test_whisperlivekits_own_client_works(server: ServerProcess, jfk_path: Path, monkeypatch) -> None:
    from whisperlivekit import test_client

    from whisper_core.audio import load_audio

    # Its client turns the file into PCM with an ffmpeg binary, which this machine lacks: PyAV does the same.
    monkeypatch.setattr(test_client, "load_audio_pcm", lambda path, sample_rate=RATE: pcm_bytes(load_audio(path)))
    result = asyncio.run(test_client.transcribe_audio(str(jfk_path), url=f"{server.ws_url}/asr", speed=0, timeout=120))
    assert result.n_updates >= 1 and wer(result.text) <= 0.15, result.text


def test_the_page_needs_nothing_from_outside(server: ServerProcess) -> None:
    page = requests.get(f"{server.url}/", timeout=10).text
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", page), (
        "the page loads something from outside"
    )
    assert all(marker in page for marker in ('id="record"', "MediaRecorder", 'id="download-srt"', "/asr"))


def test_tcp_stream_speaks_whisper_streamings_protocol(server: ServerProcess, jfk_audio: np.ndarray) -> None:
    lines = stream_tcp(server.tcp_port, pcm_bytes(jfk_audio), chunk_bytes=16000, pace=0.1)
    assert len(lines) >= 2
    parsed = [re.match(r"^(\d+) (\d+) (.+)$", line) for line in lines]
    assert all(parsed), lines
    times = [(int(m[1]), int(m[2])) for m in parsed]
    assert all(b <= e <= 11_000 for b, e in times) and [b for b, _ in times] == sorted(b for b, _ in times)
    assert wer(" ".join(m[3] for m in parsed)) <= 0.15, lines


def test_streams_past_the_limit_are_refused_and_vanishing_clients_are_freed(
    server: ServerProcess, jfk_audio: np.ndarray
) -> None:
    async def scenario() -> None:
        first = await websockets.connect(f"{server.ws_url}/asr")
        second = await websockets.connect(f"{server.ws_url}/asr")
        for websocket in (first, second):
            await websocket.recv()  # config
            await websocket.send(pcm_bytes(jfk_audio[: 3 * RATE]))
        third = await websockets.connect(f"{server.ws_url}/asr")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await third.recv()
        assert closed.value.rcvd.code == 1013
        assert stream_tcp(server.tcp_port, pcm_bytes(jfk_audio[:RATE])) == []  # TCP is refused too
        # Both clients vanish mid-stream, one after a clean close, one by dropping the connection.
        await first.close()
        second.transport.abort()

    asyncio.run(scenario())
    deadline = time.monotonic() + 60
    while _metric(server, "whisper_mb_open_streams") != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _metric(server, "whisper_mb_open_streams") == 0
    result = asyncio.run(stream_websocket(f"{server.ws_url}/asr", pcm_bytes(jfk_audio), 32000, 0.0))
    assert result.ready_to_stop and wer(result.text) <= 0.15


def test_streams_and_uploads_share_the_model_at_once(
    server: ServerProcess, client: openai.OpenAI, jfk_audio: np.ndarray, jfk_path: Path
) -> None:
    texts: list[str] = []

    def upload() -> None:
        with jfk_path.open("rb") as file:
            texts.append(client.audio.transcriptions.create(model="tiny.en", file=file).text)

    uploads = [threading.Thread(target=upload) for _ in range(3)]
    for thread in uploads:
        thread.start()

    async def two_streams() -> list:
        data = pcm_bytes(jfk_audio)
        return await asyncio.gather(*(stream_websocket(f"{server.ws_url}/asr", data, 16000, 0.25) for _ in range(2)))

    streams = asyncio.run(two_streams())
    for thread in uploads:
        thread.join()
    assert len(texts) == 3 and all(wer(text) <= 0.1 for text in texts)
    assert all(stream.ready_to_stop and wer(stream.text) <= 0.15 for stream in streams)


def test_health_and_prometheus_metrics(server: ServerProcess) -> None:
    health = requests.get(f"{server.url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["backend"] == "pt" and health["max_streams"] == 2
    response = requests.get(f"{server.url}/metrics", timeout=10)
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for family in ("requests_total", "errors_total", "audio_seconds_total", "real_time_factor", "open_streams"):
        assert f"# TYPE whisper_mb_{family} " in text
    assert _metric(server, 'whisper_mb_requests_total{route="/v1/audio/transcriptions"}') >= 1
    assert _metric(server, 'whisper_mb_audio_seconds_total{kind="upload"}') > 0
    assert 0 < _metric(server, "whisper_mb_real_time_factor") < 10


def test_web_page_transcribes_the_microphone_in_chromium(
    server: ServerProcess, tmp_path: Path, jfk_audio: np.ndarray
) -> None:
    from selenium.webdriver.common.by import By

    from tests.app.browser import chromium

    wav = tmp_path / "microphone.wav"
    wav.write_bytes(_wav_bytes(np.concatenate([jfk_audio, np.zeros(2 * RATE, np.float32)]), rate=RATE))
    with chromium(fake_microphone=wav) as browser:
        browser.get(server.url + "/")
        _wait(lambda: "tiny.en" in browser.find_element(By.ID, "model-info").text, 20)
        browser.find_element(By.ID, "record").click()
        # The committed lines' words (not their times, not the pending words), up to the last sentence.
        committed = "#transcript p.line .text"
        _wait(lambda: "for your country" in _texts(browser, committed), 90)
        text = _texts(browser, committed)
        assert wer(text) <= 0.15, text
        browser.find_element(By.ID, "record").click()
        _wait(lambda: browser.find_element(By.ID, "status").text == "done", 60)
        assert browser.find_element(By.ID, "error").text == ""
        assert browser.find_element(By.ID, "download-srt").is_displayed()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, tiny_en_dir: Path) -> Iterator[ServerProcess]:
    """tiny.en on JAX behind an API key, one upload at a time."""
    args = ["--backend", "flax", "--model", str(tiny_en_dir), "--api-key", KEY, "--max-uploads", "1"]
    with ServerProcess(args, tmp_path_factory.mktemp("keyed") / "log.txt") as process:
        yield process


def test_api_key_guards_every_route(keyed_server: ServerProcess, jfk_path: Path, jfk_audio: np.ndarray) -> None:
    url = keyed_server.url
    for method, route in (("get", "/"), ("get", "/health"), ("get", "/metrics"), ("post", "/v1/audio/transcriptions")):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = requests.request(method, url + route, headers=headers, timeout=10)
            assert response.status_code == 401, (route, headers)
            assert response.json()["error"]["type"] == "invalid_api_key"
    assert requests.get(f"{url}/health", params={"token": KEY}, timeout=10).status_code == 200
    assert KEY not in requests.get(f"{url}/", params={"token": KEY}, timeout=10).text  # the page reads it from the URL

    async def websocket_without_key() -> None:
        for query in ("", "?token=wrong"):
            with pytest.raises(websockets.InvalidStatus) as raised:
                await websockets.connect(f"{keyed_server.ws_url}/asr{query}")
            assert raised.value.response.status_code == 401

    asyncio.run(websocket_without_key())
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).audio.transcriptions.create(
            model="tiny.en", file=jfk_path.open("rb")
        )
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=300)
    with jfk_path.open("rb") as file:
        assert wer(client.audio.transcriptions.create(model="whisper-1", file=file).text) <= 0.1
    result = asyncio.run(stream_websocket(f"{keyed_server.ws_url}/asr?token={KEY}", pcm_bytes(jfk_audio), 32000, 0.0))
    assert result.config["backend"] == "flax" and result.ready_to_stop and wer(result.text) <= 0.15


def test_an_upload_past_the_limit_gets_503(keyed_server: ServerProcess, jfk_path: Path) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    boundary = "bOuNdArY"
    audio = jfk_path.read_bytes()
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="jfk.flac"\r\n\r\n'
    ).encode()

    def slow_body() -> Iterator[bytes]:  # holds the one upload slot for a few seconds
        yield head
        time.sleep(4)
        yield audio + f"\r\n--{boundary}--\r\n".encode()

    first: list[requests.Response] = []
    holder = threading.Thread(
        target=lambda: first.append(
            requests.post(
                f"{keyed_server.url}/v1/audio/transcriptions",
                data=slow_body(),
                headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=300,
            )
        )
    )
    holder.start()
    time.sleep(1.5)
    busy = requests.post(
        f"{keyed_server.url}/v1/audio/transcriptions",
        files={"file": ("jfk.flac", audio)},
        data={"model": "whisper-1"},
        headers=headers,
        timeout=60,
    )
    holder.join()
    assert busy.status_code == 503 and "busy" in busy.json()["error"]["message"]
    assert first[0].status_code == 200 and wer(first[0].json()["text"]) <= 0.1


@pytest.fixture(scope="module")
def multilingual_server(tmp_path_factory: pytest.TempPathFactory, base_dir: Path) -> Iterator[ServerProcess]:
    args = ["--backend", "pt", "--model", str(base_dir)]
    with ServerProcess(args, tmp_path_factory.mktemp("multilingual") / "log.txt") as process:
        yield process


def test_translation_and_language_with_a_multilingual_model(
    multilingual_server: ServerProcess, speech_dir: Path, jfk_audio: np.ndarray
) -> None:
    # A sentence base hears with confidence in both tasks (average log-probability -0.39 transcribing, -0.66
    # translating, 2026-12-07), so neither depends on a fallback's sample: espeak's "Je voudrais un café et
    # un croissant" translated at -1.17, and the sampled retry's wording changed with the draws.
    french = synthesize("Bonjour, je voudrais un café, s'il vous plaît.", "fr", speech_dir, "cafe")
    client = openai.OpenAI(base_url=f"{multilingual_server.url}/v1", api_key="unused", max_retries=0, timeout=300)
    with french.open("rb") as file:
        said = client.audio.transcriptions.create(model="whisper-1", file=file, response_format="verbose_json")
    assert said.language == "french" and "bonjour" in said.text.lower() and "café" in said.text.lower()
    with french.open("rb") as file:
        english = client.audio.translations.create(model="whisper-1", file=file, response_format="verbose_json")
    assert english.language == "french" and "coffee" in english.text.lower(), english.text
    assert "bonjour" not in english.text.lower() and "café" not in english.text.lower()
    url = f"{multilingual_server.ws_url}/asr?language=en"
    result = asyncio.run(stream_websocket(url, pcm_bytes(jfk_audio), 32000, 0.0))
    assert result.ready_to_stop and wer(result.text) <= 0.15

    async def unknown_language() -> dict:
        async with websockets.connect(f"{multilingual_server.ws_url}/asr?language=klingon") as websocket:
            return json.loads(await websocket.recv())

    assert "unknown language" in asyncio.run(unknown_language())["error"]


def _metric(server: ServerProcess, name: str) -> float:
    for line in requests.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


def _texts(browser, selector: str) -> str:
    """The text of every element ``selector`` picks, read at once (the page redraws its lines on each update)."""
    script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent).join(' ')"
    return browser.execute_script(script, selector).lower()


def _wait(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.3)


def _wav_bytes(audio: np.ndarray, rate: int = RATE) -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(pcm_bytes(audio))
    return buffer.getvalue()
