"""A judge behind any OpenAI-compatible chat endpoint: above all vLLM serving Qwen2.5-VL.

One batch of questions is sent concurrently (bounded by ``max_concurrency``) and spread
round-robin over one or more servers. Connection errors, timeouts, 429 and 5xx replies and
unreadable response bodies are retried with exponential backoff (honouring ``Retry-After``), each
retry going to the next server, so a server killed mid-run costs time, not samples. Requests the
server rejects outright (400/401/403/404/422) are not retried. A request that still fails comes back
as an answer with an ``error``: the reward marks that sample missing. The API key is read from an
environment variable and never printed.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import logging
import os
import random
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from PIL import Image

from ..config import FieldError, check_choice, check_range
from .judge import JudgeAnswer, JudgeRequest, JudgeStats

__all__ = ["OpenAIJudge", "OpenAIJudgeConfig", "image_data_url"]

T = TypeVar("T")
log = logging.getLogger(__name__)
STRUCTURED_OUTPUT = ("json_schema", "json_object", "none")


@dataclass
class OpenAIJudgeConfig:
    base_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8000/v1"])  # round-robin, failover
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # the name the server serves
    api_key_env: str = "GOTR1_JUDGE_API_KEY"  # unset: "EMPTY", which vLLM accepts
    max_concurrency: int = 32  # requests in flight over all servers
    timeout_s: float = 120.0  # per request
    max_retries: int = 4  # after the first attempt
    backoff_s: float = 0.5  # first retry waits about this long, doubling each time
    backoff_max_s: float = 16.0
    temperature: float = 0.0
    # How each question's JSON schema is sent as response_format: "json_schema" (OpenAI's form; vLLM),
    # "json_object" ({"type": "json_object", "schema": ...}: llama.cpp's server), or "none".
    structured_output: str = "json_schema"

    def __post_init__(self) -> None:
        if isinstance(self.base_urls, str):
            self.base_urls = [self.base_urls]
        if not self.base_urls:
            raise FieldError("base_urls", "give at least one server")
        for url in self.base_urls:
            if not str(url).startswith(("http://", "https://")):
                raise FieldError("base_urls", f"{url!r} is not an http(s) URL")
        check_range("max_concurrency", self.max_concurrency, low=1)
        check_range("max_retries", self.max_retries, low=0)
        check_range("timeout_s", self.timeout_s, low=0, low_open=True)
        check_range("backoff_s", self.backoff_s, low=0)
        check_range("backoff_max_s", self.backoff_max_s, low=0)
        check_range("temperature", self.temperature, low=0)
        check_choice("structured_output", self.structured_output, STRUCTURED_OUTPUT)


def image_data_url(image: Image.Image) -> str:
    """The image as a base64 PNG data URL (lossless, so the judge sees exactly our pixels)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _messages(request: JudgeRequest) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": image_data_url(image)}} for image in request.images
    ]
    content.append({"type": "text", "text": request.prompt})
    messages: list[dict[str, Any]] = [] if request.system is None else [{"role": "system", "content": request.system}]
    messages.append({"role": "user", "content": content if request.images else request.prompt})
    return messages


class _Retryable(Exception):
    def __init__(self, kind: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.retry_after = kind, retry_after


def _classify(exc: BaseException) -> tuple[bool, str, float | None]:
    """(retry?, 'kind: detail', Retry-After seconds) for an exception raised by the client."""
    import openai

    if isinstance(exc, _Retryable):
        return True, str(exc), exc.retry_after
    if isinstance(exc, openai.APITimeoutError):
        return True, "timeout: no reply in time", None
    if isinstance(exc, openai.APIConnectionError):
        return True, f"connection: {type(exc.__cause__ or exc).__name__}", None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = _retry_after(exc.response.headers.get("retry-after"))
        if status == 429:
            return True, "rate_limited: HTTP 429", retry_after
        if status >= 500 or status == 408:
            return True, f"server_error: HTTP {status}", retry_after
        return False, f"rejected: HTTP {status} {exc.message[:200]}", None
    if isinstance(exc, (openai.APIResponseValidationError, ValueError, KeyError, IndexError, TypeError)):
        return True, f"bad_response: {type(exc).__name__}", None
    if isinstance(exc, openai.APIError):
        return True, f"api_error: {type(exc).__name__}", None
    return True, f"error: {type(exc).__name__}: {exc}"[:300], None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when called inside a running event loop
    (a notebook): then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class OpenAIJudge:
    """:class:`~gotr1.rewards.judge.Judge` over OpenAI-compatible chat completions."""

    def __init__(self, config: OpenAIJudgeConfig | None = None, **overrides: Any) -> None:
        config = config or OpenAIJudgeConfig()
        for key, value in overrides.items():
            setattr(config, key, value)
        config.__post_init__()
        self.config = config
        self.model_id = config.model
        self.stats = JudgeStats()
        self._next_server = itertools.count()
        self._random = random.Random(0)
        self._reported: set[str] = set()  # servers whose first failure has been said

    def __repr__(self) -> str:
        return f"OpenAIJudge(model={self.config.model!r}, servers={self.config.base_urls!r})"

    def ask(self, requests: Sequence[JudgeRequest]) -> list[JudgeAnswer]:
        answers = run_coroutine(self.ask_async(requests))
        self.stats.add_answers(answers)
        return answers

    async def ask_async(self, requests: Sequence[JudgeRequest]) -> list[JudgeAnswer]:
        """All requests concurrently; answers in request order."""
        import openai

        if not requests:
            return []
        config = self.config
        api_key = os.environ.get(config.api_key_env) or "EMPTY"
        clients = [
            openai.AsyncOpenAI(base_url=url, api_key=api_key, max_retries=0, timeout=config.timeout_s)
            for url in config.base_urls
        ]
        semaphore = asyncio.Semaphore(config.max_concurrency)
        try:
            return list(await asyncio.gather(*(self._ask_one(r, clients, semaphore) for r in requests)))
        finally:
            await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)

    async def _ask_one(self, request: JudgeRequest, clients: list[Any], semaphore: asyncio.Semaphore) -> JudgeAnswer:
        config = self.config
        first = next(self._next_server)
        messages = _messages(request)
        extra: dict[str, Any] = {}
        if request.schema is not None and config.structured_output == "json_schema":
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.schema},
            }
        elif request.schema is not None and config.structured_output == "json_object":
            extra["response_format"] = {"type": "json_object", "schema": request.schema}
        error = "error: not attempted"
        for attempt in range(config.max_retries + 1):
            server = (first + attempt) % len(clients)
            try:
                async with semaphore:
                    response = await clients[server].chat.completions.create(
                        model=config.model,
                        messages=messages,
                        max_tokens=request.max_tokens,
                        temperature=config.temperature,
                        **extra,
                    )
                text = response.choices[0].message.content
                if not isinstance(text, str):
                    raise _Retryable("bad_response", "no message content")
                return JudgeAnswer(text, attempts=attempt + 1, server=config.base_urls[server])
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - every failure becomes data
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                retry, error, retry_after = _classify(exc)
                if not retry:
                    return JudgeAnswer(None, error=error, attempts=attempt + 1, server=config.base_urls[server])
                self._say_once(config.base_urls[server], error)
            if attempt < config.max_retries:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        return JudgeAnswer(None, error=error, attempts=config.max_retries + 1)

    def _say_once(self, url: str, error: str) -> None:
        """The first failure of each server is said at once (retries can take minutes before a verdict)."""
        if url not in self._reported:
            self._reported.add(url)
            log.warning(
                "judge server %s: %s; retrying (up to %d retries per question)", url, error, self.config.max_retries
            )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential with jitter; a server's Retry-After wins when it asks for longer."""
        delay = min(self.config.backoff_max_s, self.config.backoff_s * 2**attempt)
        delay *= 0.5 + self._random.random()
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max_s))
        return delay
