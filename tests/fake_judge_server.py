"""A scriptable OpenAI-compatible chat server on loopback, for fault-injection tests and benchmarks.

Run as ``python tests/fake_judge_server.py [--latency S]``; it binds 127.0.0.1 on a free port and
prints the port on its first line of stdout. What happens to a request is written in the request's
last user text as directives (counted per ``id``, over all attempts of that id):

    [[id=K]]            the key attempts are counted under (default: the whole text)
    [[status=500:N]]    the first N attempts get HTTP 500 (also 429, 503, 400 ...); 429 sends Retry-After: 0
    [[drop:N]]          the first N attempts: the connection is closed without a reply
    [[slow=S:N]]        the first N attempts wait S seconds before replying
    [[garbage_body:N]]  the first N attempts get HTTP 200 with a body that is not JSON
    [[say=TEXT]]        the answer text; TEXT ends at ]]. Default: {"score": 7, "reason": "looks right"},
                        or one box [0, 0, 224, 224] for a grounding question ("Find every ...")

``GET /stats`` returns the attempts seen per id, the most requests in flight at once, the bearer tokens
seen, and counts of images (and of those sent as PNG data URLs) and of structured-output requests. Every
reply also waits ``--latency`` seconds (a stand-in for a remote GPU server's time per answer), concurrently
across requests.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_DIRECTIVE = re.compile(r"\[\[(.*?)\]\]", re.S)
DEFAULT_ANSWER = '{"score": 7, "reason": "looks right"}'
DEFAULT_BOXES = '[{"bbox_2d": [0, 0, 224, 224], "label": "thing"}]'  # for grounding questions


class _State:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.auth: set[str] = set()
        self.images = self.data_urls = self.response_formats = 0

    def enter(self, body: dict, authorization: str | None) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.auth.add(authorization or "")
            self.response_formats += "response_format" in body
            for message in body.get("messages", []):
                if isinstance(message.get("content"), list):
                    for part in message["content"]:
                        if part.get("type") == "image_url":
                            self.images += 1
                            self.data_urls += part["image_url"]["url"].startswith("data:image/png;base64,")

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def report(self) -> dict:
        with self.lock:
            return {
                "attempts": dict(self.attempts),
                "max_in_flight": self.max_in_flight,
                "auth": sorted(self.auth),
                "images": self.images,
                "data_urls": self.data_urls,
                "response_formats": self.response_formats,
            }

    def count(self, key: str) -> int:
        with self.lock:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            return self.attempts[key]


def _last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return ""


def make_handler(state: _State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _reply(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/stats"):
                self._reply(200, json.dumps(state.report()).encode())
            elif self.path.rstrip("/").endswith("/models"):
                self._reply(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())
            else:
                self._reply(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            state.enter(body, self.headers.get("Authorization"))
            try:
                self._answer(body)
            finally:
                state.leave()

        def _answer(self, body: dict) -> None:
            text = _last_user_text(body)
            directives = {}
            for item in _DIRECTIVE.findall(text):
                key, _, value = item.partition("=") if "=" in item.split(":")[0] else item.partition(":")
                directives[key.strip()] = value
            attempt = state.count(directives.get("id", text))
            if state.latency:
                time.sleep(state.latency)
            if "slow" in directives:
                seconds, _, times = directives["slow"].partition(":")
                if attempt <= int(times or 1):
                    time.sleep(float(seconds))
            if "status" in directives:
                code, _, times = directives["status"].partition(":")
                if attempt <= int(times or 1):
                    headers = {"Retry-After": "0"} if code == "429" else {}
                    self._reply(int(code), json.dumps({"error": {"message": f"injected {code}"}}).encode(), headers)
                    return
            if "drop" in directives and attempt <= int(directives["drop"] or 1):
                self.close_connection = True
                self.connection.close()
                return
            if "garbage_body" in directives and attempt <= int(directives["garbage_body"] or 1):
                self._reply(200, b"<html>this is not json")
                return
            default = DEFAULT_BOXES if text.startswith("Find every") else DEFAULT_ANSWER
            answer = directives.get("say", default)
            reply = {
                "id": f"chatcmpl-{attempt}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
            self._reply(200, json.dumps(reply).encode())

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    ThreadingHTTPServer.request_queue_size = 256  # the default backlog of 5 refuses bursts of connections
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(_State(args.latency)))
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
