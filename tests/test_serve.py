"""The HTTP server, run for real with uvicorn on a loopback port and called with the official OpenAI client.

The model tests share one engine on the built-in shapes model; queueing, load and failure tests use a fake
engine (instant images) so that what they check is the server, not the model's speed. Nothing here
asserts a duration: where a test needs the model to be "busy", the engine waits on an Event the test sets.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from openai import OpenAI
from PIL import Image

from gotr1.models import load_model
from gotr1.serving.engine import Engine, Job
from gotr1.serving.server import BackgroundServer, ServerSettings, create_app

NAME = "shapes-test"
CHAIN = (
    "The image shows <|obj_start|>large blue square<|obj_end|> <|box_start|>(100,120),(500,560)<|box_end|> "
    "on a white background."
)
TIMEOUT = httpx.Timeout(60.0)


@pytest.fixture(scope="module")
def engine():
    torch.set_num_threads(2)
    return Engine(load_model(None), name=NAME)


@pytest.fixture(scope="module")
def server(engine):
    settings = ServerSettings(port=0, max_n=4, max_body_bytes=8192, api_key_env=None)
    with BackgroundServer(create_app(engine, settings)) as running:
        yield running


def png(b64: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def post(server, body=None, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/images/generations", json=body, timeout=TIMEOUT, **kwargs)


def wait_for(predicate, what: str, limit_s: float = 60.0) -> None:
    """Poll until `predicate()` holds (a bound against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def health(server) -> dict:
    return httpx.get(f"{server.url}/health", timeout=TIMEOUT).json()


def assert_consistent(state: dict) -> None:
    """Every accepted request has exactly one end, or is still open."""
    counters = state["counters"]
    ended = sum(counters[k] for k in ("served", "failed", "cancelled", "timed_out", "shut_down"))
    assert counters["requests"] == ended + state["queue"]["open_requests"], state


def raw_post(server, body: dict) -> socket.socket:
    """A whole request sent on a socket of the test's own, so the test decides when the client hangs up."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection((server.host, server.port), timeout=30)
    head = "POST /v1/images/generations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection (socket.timeout if it never does)."""
    received = b""
    with sock:
        while chunk := sock.recv(65536):
            received += chunk
    return received


class FakeSample:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.image = Image.new("RGB", (8, 8), (job.seed % 256, job.sample_index % 256, 7))
        self.score_note = ""

    def record(self) -> dict:
        return {"chain": f"plan {self.job.seed}/{self.job.sample_index}", "objects": [], "problems": []}


class FakeEngine:
    """Instant 8x8 images; `run` can be held on a gate, or made to fail, by the test."""

    name = "fake"
    image_size = 8

    def __init__(self, gated: bool = False) -> None:
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.entered = threading.Event()
        self.calls: list[list[Job]] = []
        self.fail_next = False

    def check_prompt(self, prompt: str, *, chain: str | None = None, max_reasoning_tokens: int | None = None) -> None:
        pass

    def run(self, jobs):
        self.calls.append(list(jobs))
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("CUDA out of memory\nsecond line that must not reach the client")
        return [FakeSample(job) for job in jobs]


class Gated:
    """The real engine, whose `run` waits for the test's go-ahead (so requests can pile up meanwhile)."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.gate, self.entered = threading.Event(), threading.Event()
        self.calls: list[list[Job]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, jobs):
        self.calls.append(list(jobs))
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.inner.run(jobs)


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_batch", 0),
        ("max_queue", 0),
        ("max_n", 0),
        ("port", 70000),
        ("batch_wait_ms", -1),
        ("max_n", 65),
        ("body_timeout_s", 0),
        ("keep_alive_timeout_s", -1.0),
        ("keep_alive_timeout_s", "5"),
        ("header_timeout_s", 0),
        ("header_timeout_s", 3601),
    ],
)
def test_settings_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ServerSettings(**{field: value})


def test_settings_never_hold_the_key(monkeypatch):
    monkeypatch.setenv("GOTR1_API_KEY", "s3cret-key")
    assert "s3cret-key" not in repr(ServerSettings())


# -- the official client against the real model ------------------------------------------------------


def test_official_client_generates_reproducible_images_with_chains(server, engine):
    client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == [NAME]

    def generate(**extra):
        return client.images.generate(
            model=NAME, prompt="a red circle", n=2, size="64x64", response_format="b64_json", extra_body=extra
        )

    first = generate(seed=3)
    assert len(first.data) == 2
    images = [png(d.b64_json) for d in first.data]
    assert all(image.shape == (64, 64, 3) for image in images)
    extra = first.data[0].model_extra
    assert extra["seed"] == 3 and isinstance(extra["chain"], str) and isinstance(extra["objects"], list)
    assert "problems" in first.model_dump()["data"][1]

    again = generate(seed=3)
    assert all(np.array_equal(png(a.b64_json), png(b.b64_json)) for a, b in zip(first.data, again.data))
    assert [d.model_extra["chain"] for d in again.data] == [d.model_extra["chain"] for d in first.data]

    forced = generate(seed=4, chain=CHAIN)
    for item in forced.data:
        assert item.model_extra["objects"] == [{"name": "large blue square", "box": [100, 120, 500, 560]}]
        assert item.model_extra["problems"] == []
    # A bad plan is rendered as given and its problems come back; it is never an error.
    broken = client.images.generate(
        model=NAME, prompt="a red circle", size="64x64", extra_body={"chain": "a <|box_start|>(1,2),(3,4)<|box_end|>"}
    )
    assert broken.data[0].model_extra["problems"]
    assert png(broken.data[0].b64_json).shape == (64, 64, 3)


# -- bad requests ------------------------------------------------------------------------------------

GOOD = {"prompt": "a red circle", "seed": 1}


@pytest.mark.parametrize(
    "body, param, words",
    [
        ({"seed": 1}, "prompt", "required"),
        ({**GOOD, "colour": "red"}, "colour", "unknown field 'colour'"),
        ({**GOOD, "n": 0}, "n", "between 1 and 4"),
        ({**GOOD, "n": 5}, "n", "between 1 and 4"),
        ({**GOOD, "n": "2"}, "n", "integer"),
        ({**GOOD, "prompt": "   "}, "prompt", "empty"),
        ({**GOOD, "prompt": "a" * 1001}, "prompt", "1001 characters"),
        ({**GOOD, "prompt": "zq" * 400}, "prompt", "tokens"),
        ({**GOOD, "size": "1024x1024"}, "size", "64x64"),
        ({**GOOD, "model": "dall-e-3"}, "model", NAME),
        ({**GOOD, "response_format": "url"}, "response_format", "b64_json"),
        ({**GOOD, "output_format": "jpeg"}, "output_format", "png"),
        ({**GOOD, "background": "transparent"}, "background", "transparency"),
        ({**GOOD, "stream": True}, "stream", "streaming"),
        ({**GOOD, "quality": "ultra"}, "quality", "quality"),
        ({**GOOD, "seed": -1}, "seed", "seed"),
        ({**GOOD, "chain": "zq" * 600}, "chain", "chain"),
    ],
)
def test_bad_request_is_a_400_naming_the_field(server, body, param, words):
    response = post(server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"] is None
    assert words in error["message"] and "\n" not in error["message"]


def test_malformed_and_oversized_bodies_then_a_good_request(server):
    url = f"{server.url}/v1/images/generations"
    bad_json = httpx.post(url, content=b'{"prompt": ', headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]["message"]
    not_object = httpx.post(url, content=b"[1, 2]", headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert not_object.status_code == 400 and "JSON object" in not_object.json()["error"]["message"]

    big = post(server, {**GOOD, "prompt": "a" * 20_000})
    assert big.status_code == 413 and "8192 bytes" in big.json()["error"]["message"]

    def chunks():  # no Content-Length: the size is counted while reading
        yield b'{"prompt": "'
        for _ in range(20):
            yield b"a" * 1000
        yield b'"}'

    streamed = httpx.post(url, content=chunks(), headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "request_too_large"

    missing = httpx.get(f"{server.url}/v1/nothing", timeout=TIMEOUT)
    assert missing.status_code == 404 and "error" in missing.json()

    # Still serving; with the OpenAI fields that are accepted and ignored, and a random seed echoed back.
    tolerated = {"quality": "hd", "style": "natural", "user": "someone", "moderation": "auto", "background": "opaque"}
    good = post(
        server, {"prompt": "a red circle", "output_format": "png", "stream": False, "size": "auto", **tolerated}
    )
    assert good.status_code == 200, good.text
    (item,) = good.json()["data"]
    assert isinstance(item["seed"], int) and item["sample_index"] == 0 and png(item["b64_json"]).shape == (64, 64, 3)


def test_api_key_when_set(monkeypatch):
    monkeypatch.setenv("GOTR1_TEST_KEY", "s3cret")
    app = create_app(FakeEngine(), ServerSettings(port=0, api_key_env="GOTR1_TEST_KEY"))
    monkeypatch.delenv("GOTR1_TEST_KEY")  # read once, at creation
    with BackgroundServer(app) as running:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = post(running, {"prompt": "x"}, headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{running.url}/v1/models", timeout=TIMEOUT).status_code == 401
        assert httpx.get(f"{running.url}/health", timeout=TIMEOUT).status_code == 200

        client = OpenAI(base_url=f"{running.url}/v1", api_key="s3cret", max_retries=0, timeout=30)
        result = client.images.generate(prompt="x", n=2, size="8x8", extra_body={"seed": 5})
        assert [d.model_extra["sample_index"] for d in result.data] == [0, 1]


# -- queueing and batching ---------------------------------------------------------------------------


def test_a_full_queue_refuses_whole_requests_with_retry_after():
    engine = FakeEngine(gated=True)
    settings = ServerSettings(port=0, max_batch=1, max_queue=3, max_n=2, batch_wait_ms=0, api_key_env=None)
    with BackgroundServer(create_app(engine, settings)) as running, ThreadPoolExecutor(8) as pool:
        first = pool.submit(post, running, {"prompt": "a", "seed": 0})
        assert engine.entered.wait(30)  # the worker holds request 0; the queue is empty
        queued = [pool.submit(post, running, {"prompt": "a", "seed": s}) for s in (1, 2)]
        wait_for(lambda: health(running)["queue"]["images"] == 2, "two queued images")

        refused = post(running, {"prompt": "a", "n": 2, "seed": 3})  # 2 images, room for 1: none queued
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "queue_full"
        assert health(running)["queue"]["images"] == 2

        queued.append(pool.submit(post, running, {"prompt": "a", "seed": 4}))  # exactly fills the queue
        wait_for(lambda: health(running)["queue"]["images"] == 3, "a full queue")
        assert post(running, {"prompt": "a", "seed": 5}).status_code == 503

        engine.gate.set()
        answers = [f.result(timeout=60) for f in [first, *queued]]
        assert [a.status_code for a in answers] == [200] * 4
        assert [a.json()["data"][0]["seed"] for a in answers] == [0, 1, 2, 4]
        counters = health(running)["counters"]
        assert counters["refused"] == 2 and counters["served"] == 4 and counters["batch_sizes"] == {"1": 4}


def test_concurrent_requests_share_batches_and_get_their_own_images(engine):
    gated = Gated(engine)
    settings = ServerSettings(port=0, max_batch=8, max_queue=16, api_key_env=None)
    bodies = [
        {"prompt": "a red circle", "seed": 100},
        {"prompt": "two blue squares", "seed": 7, "n": 2},
        {"prompt": "a red circle", "seed": 9, "chain": CHAIN},
    ]
    with BackgroundServer(create_app(gated, settings)) as running, ThreadPoolExecutor(3) as pool:
        answers = [pool.submit(post, running, bodies[0])]
        assert gated.entered.wait(60)
        answers += [pool.submit(post, running, body) for body in bodies[1:]]
        wait_for(lambda: health(running)["queue"]["images"] == 3, "the other requests to queue")
        gated.gate.set()
        results = [a.result(timeout=120) for a in answers]
    assert [r.status_code for r in results] == [200] * 3
    assert len(gated.calls) == 2 < len(bodies)  # request 0 alone, then the two others in one batch
    assert len(gated.calls[1]) == 3
    for body, result in zip(bodies, results):
        jobs = [Job(body["prompt"], body["seed"], i, body.get("chain")) for i in range(body.get("n", 1))]
        alone = engine.run(jobs)
        data = result.json()["data"]
        assert len(data) == len(alone)
        for item, sample in zip(data, alone):
            assert np.array_equal(png(item["b64_json"]), np.asarray(sample.image.convert("RGB")))
            assert item["chain"] == sample.chain and item["objects"] == sample.record()["objects"]


def test_a_failing_batch_is_a_500_and_the_server_goes_on(caplog):
    engine = FakeEngine()
    engine.fail_next = True
    with BackgroundServer(create_app(engine, ServerSettings(port=0, api_key_env=None))) as running:
        failed = post(running, {"prompt": "a"})
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert error["type"] == "server_error" and "CUDA out of memory" in error["message"]
        assert "second line" not in error["message"]
        assert post(running, {"prompt": "a"}).status_code == 200
        assert health(running)["counters"]["failed_batches"] == 1


def test_a_request_that_waits_too_long_is_a_504_and_leaves_the_queue():
    engine = FakeEngine(gated=True)
    settings = ServerSettings(port=0, max_batch=1, request_timeout_s=0.3, api_key_env=None)
    with BackgroundServer(create_app(engine, settings)) as running, ThreadPoolExecutor(2) as pool:
        held = pool.submit(post, running, {"prompt": "a"})
        assert engine.entered.wait(30)
        waiting = post(running, {"prompt": "b"})
        assert waiting.status_code == 504 and waiting.json()["error"]["code"] == "timeout"
        assert health(running)["queue"]["images"] == 0
        assert held.result(timeout=30).status_code == 504
        engine.gate.set()
        assert post(running, {"prompt": "c"}).status_code == 200
        assert len(engine.calls) == 2  # the request that timed out in the queue was never made
        final = health(running)
    counters = final["counters"]
    assert counters["timed_out"] == 2 and counters["served"] == 1 and counters["cancelled"] == 0
    assert counters["dropped_images"] == 1 and counters["discarded_images"] == 1  # "b" unsampled, "a" thrown away
    assert_consistent(final)


def test_requests_whose_clients_hung_up_are_cancelled_before_sampling():
    """Three n=8 requests abandoned while queued cost no image and are counted cancelled, not served."""
    engine = FakeEngine(gated=True)
    settings = ServerSettings(port=0, max_batch=4, max_queue=32, max_n=8, batch_wait_ms=0, api_key_env=None)
    with BackgroundServer(create_app(engine, settings)) as running, ThreadPoolExecutor(1) as pool:
        held = pool.submit(post, running, {"prompt": "held", "seed": 1})
        assert engine.entered.wait(30)  # the worker is busy; what comes next waits in the queue
        gone = [raw_post(running, {"prompt": "gone", "seed": seed, "n": 8}) for seed in (2, 3, 4)]
        wait_for(lambda: health(running)["queue"]["images"] == 24, "the three requests to queue")
        for sock in gone:
            sock.close()
        wait_for(lambda: health(running)["counters"]["cancelled"] == 3, "the hang-ups to be noticed", 30)
        assert health(running)["queue"]["images"] == 0
        engine.gate.set()
        assert held.result(timeout=60).status_code == 200
        assert post(running, {"prompt": "after", "seed": 5}).status_code == 200
        final = health(running)
    assert [job.prompt for call in engine.calls for job in call] == ["held", "after"]
    counters = final["counters"]
    assert counters["requests"] == 5 and counters["served"] == 2 and counters["cancelled"] == 3
    assert counters["images"] == 2 and counters["dropped_images"] == 24 and counters["discarded_images"] == 0
    assert_consistent(final)


def test_a_hang_up_during_its_batch_throws_the_images_away_and_is_not_served():
    engine = FakeEngine(gated=True)
    settings = ServerSettings(port=0, max_batch=4, batch_wait_ms=0, api_key_env=None)
    with BackgroundServer(create_app(engine, settings)) as running:
        sock = raw_post(running, {"prompt": "gone", "seed": 1, "n": 3})
        assert engine.entered.wait(30)  # its three images are being made
        sock.close()
        wait_for(lambda: health(running)["counters"]["cancelled"] == 1, "the hang-up to be noticed", 30)
        engine.gate.set()
        wait_for(lambda: health(running)["counters"]["batches"] == 1, "the batch to finish")
        assert post(running, {"prompt": "next"}).status_code == 200
        final = health(running)
    counters = final["counters"]
    assert counters["served"] == 1 and counters["cancelled"] == 1
    assert counters["images"] == 4 and counters["discarded_images"] == 3 and counters["dropped_images"] == 0
    assert_consistent(final)


def test_half_sent_bodies_and_idle_connections_are_closed():
    """Slow loris: connections that send headers and half a body, then stall, get a 408 and are closed."""
    settings = ServerSettings(port=0, body_timeout_s=1, keep_alive_timeout_s=1, api_key_env=None)
    with BackgroundServer(create_app(FakeEngine(), settings)) as running:
        head = (
            b"POST /v1/images/generations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        stalled = []
        for _ in range(5):
            sock = socket.create_connection((running.host, running.port), timeout=30)
            sock.sendall(head + b'{"prompt": "a red')
            stalled.append(sock)
        for sock in stalled:
            answer = read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
            error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
            assert error["code"] == "request_timeout" and "1 s" in error["message"]

        idle = socket.create_connection((running.host, running.port), timeout=30)
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")  # keep-alive, then nothing more
        assert read_until_closed(idle).startswith(b"HTTP/1.1 200")

        assert post(running, {"prompt": "a"}).status_code == 200
        assert_consistent(health(running))


def test_connections_without_a_whole_request_head_are_closed():
    """Slow loris before the body: connections that send nothing, or half a request head, are closed unanswered;
    complete heads, also ones sent in pieces, are served, and a kept-alive connection gets the deadline again."""
    settings = ServerSettings(port=0, header_timeout_s=1, keep_alive_timeout_s=60, api_key_env=None)
    body = json.dumps({"prompt": "a red square"}).encode()
    head = (
        "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with BackgroundServer(create_app(FakeEngine(), settings)) as running:

        def connect() -> socket.socket:
            return socket.create_connection((running.host, running.port), timeout=30)

        silent = [connect() for _ in range(4)]
        half = [connect() for _ in range(4)]
        for sock in half:
            sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\n")
        for sock in silent + half:
            assert read_until_closed(sock) == b""

        assert post(running, {"prompt": "a"}).status_code == 200
        with connect() as sock:  # a slow but complete head, well within the deadline
            for piece in (head[:20], head[20:50], head[50:]):
                sock.sendall(piece)
                time.sleep(0.05)
            sock.sendall(body)
            answer = http.client.HTTPResponse(sock)  # reads this one answer, leaving the connection open
            answer.begin()
            assert answer.status == 200 and json.loads(answer.read())["data"][0]["chain"]
            sock.sendall(head[:30])  # the next request on this kept-alive connection stalls in its head
            assert read_until_closed(sock) == b""
        assert_consistent(health(running))


def test_load_every_request_is_answered(caplog):
    """32 clients at once against a queue of 8: each gets its images or a 503, none is lost or hangs."""
    caplog.set_level(logging.INFO, logger="gotr1.serving")
    engine = FakeEngine(gated=True)
    settings = ServerSettings(port=0, max_batch=4, max_queue=8, max_n=2, api_key_env=None)
    clients = 32
    with BackgroundServer(create_app(engine, settings)) as running, ThreadPoolExecutor(clients) as pool:
        with httpx.Client(timeout=httpx.Timeout(60.0), limits=httpx.Limits(max_connections=clients)) as http:

            def call(i: int) -> tuple[int, int]:
                body = {"prompt": f"shape {i}", "seed": i, "n": 1 + i % 2}
                response = http.post(f"{running.url}/v1/images/generations", json=body)
                assert response.status_code in (200, 503), response.text
                if response.status_code == 503:
                    assert int(response.headers["Retry-After"]) >= 1
                    return 503, 0
                data = response.json()["data"]
                assert [d["seed"] for d in data] == [i] * body["n"]
                return 200, len(data)

            futures = [pool.submit(call, i) for i in range(clients)]
            # Hold the model until every client has been queued or refused, so the queue is surely tested.
            wait_for(lambda: sum(health(running)["counters"][k] for k in ("requests", "refused")) == clients, "all")
            engine.gate.set()
            answers = [f.result(timeout=60) for f in futures]
        final = health(running)
    statuses = [status for status, _ in answers]
    assert len(answers) == clients and 503 in statuses and 200 in statuses
    counters = final["counters"]
    assert counters["served"] == statuses.count(200) and counters["refused"] == statuses.count(503)
    images = sum(count for _, count in answers)
    assert counters["images"] == images
    assert sum(int(size) * n for size, n in counters["batch_sizes"].items()) == images
    assert max(int(size) for size in counters["batch_sizes"]) <= 4
    batch_logs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch of ")]
    assert len(batch_logs) == counters["batches"]
    assert final["queue"]["images"] == 0
