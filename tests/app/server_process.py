"""A real ``whisper-mb serve`` process on 127.0.0.1, started and stopped by a test (or the load benchmark)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests

START_TIMEOUT = 240.0  # s: a cold process imports its framework and loads the weights first


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``whisper-mb serve ARGS`` on free ports; ``url``, ``ws_url``, ``tcp_port``; its log in ``log_path``."""

    def __init__(self, args: Sequence[str], log_path: Path, tcp: bool = False, env: dict | None = None) -> None:
        self.port = free_port()
        self.tcp_port = free_port() if tcp else None
        self.args = [*args, "--host", "127.0.0.1", "--port", str(self.port)]
        if self.tcp_port is not None:
            self.args += ["--tcp-port", str(self.tcp_port)]
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        command = [str(Path(sys.executable).with_name("whisper-mb")), "serve", *self.args]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: {self.log()}")
            try:
                requests.get(f"{self.url}/health", timeout=2, params=self._token())
                return self
            except requests.ConnectionError:
                time.sleep(0.5)
        self.__exit__()
        raise TimeoutError(f"the server did not answer within {START_TIMEOUT} s: {self.log()}")

    def _token(self) -> dict:
        if "--api-key" in self.args:
            return {"token": self.args[self.args.index("--api-key") + 1]}
        return {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
