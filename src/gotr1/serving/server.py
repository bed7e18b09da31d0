"""An OpenAI Images-compatible HTTP API over one engine: `POST /v1/images/generations` and `/v1/images/edits`.

Any OpenAI client (``OpenAI(base_url="http://127.0.0.1:8000/v1")``) can ask for images; each image also
carries what GoT-R1 adds, its reasoning chain, the planned objects with boxes on the 0..1000 grid, the
chain's format problems, its seed and (when the engine scores) its rewards. Image i of a request with seed s
is `Job(prompt, s, i, chain)`, so a seed reproduces a request exactly, whoever else is being served at the
same time (requests are batched together, see `batcher`).

Request fields:

- ``prompt`` (required, non-empty, at most `max_prompt_chars` characters and fitting the model's context),
  ``n`` (1..`max_n`, default 1), ``size`` (the model's native ``"SxS"`` or ``"auto"``), ``model`` (must be the
  served model's name when given), ``response_format`` (``"b64_json"``, the default; ``"url"`` is refused:
  nothing is stored to link to).
- GoT-R1's own: ``seed`` (an integer in 0..2**63-1; a random one when absent, echoed back) and ``chain`` (a
  plan to render, teacher-forced; its validator problems come back in the response, never as an error).
  With the official client they go in ``extra_body``.
- Accepted and ignored, because they tune a hosted model or identify the caller and mean nothing for one
  local model: ``quality``, ``style``, ``moderation`` (no moderation is performed), ``complexity``, ``user``
  and ``safety_identifier`` (neither is logged). Their values must still be ones OpenAI defines.
- Accepted only at their default (null, or the one value this server gives), refused otherwise because
  they ask for an output it does not make: ``output_format`` (``"png"``), ``background`` (``"auto"`` or
  ``"opaque"``; there is no transparency), ``output_compression`` (PNG is lossless), ``stream`` (``false``),
  ``partial_images`` (``0``), ``frame_count``, ``frame_duration_ms`` and ``svg`` (no animation, no SVG).
- Anything else is refused (400 naming the field), so a typo is never silently ignored.

Edits (``POST /v1/images/edits``, multipart/form-data as OpenAI's ``images.edit`` sends it) take the same text
fields and: ``image`` (required: one PNG file at the model's size), ``mask`` (a PNG of the same size with alpha:
its fully transparent pixels may change), ``source_chain`` (the chain the image was drawn from, as its
generation returned it), ``redraw`` (``true``: sample every token from the new plan, a full image's cost, and keep
only the source's pixels outside the mask; see docs/editing.md) and ``input_fidelity`` (accepted and ignored).
A mask edit re-samples the token cells the mask frees, with a chain sampled for ``prompt``; without a mask,
``source_chain`` and ``chain`` make a plan edit (the cells under the objects the new plan moves, resizes,
renames, adds or removes), ``source_chain`` alone a prompt edit (the candidate plan for ``prompt`` that keeps
the most of the old one, see `model.editing.prepare_edit`). Every other token is the source's, so those cells
come back as the image had them (after the model's VQ encoding). Image i is `Job(prompt, seed, i, chain,
source_ids, edit_mask, redraw)`, batched with generations; each ``data[i]`` also holds its ``image_tokens``
(null when ``redrawn``), the ``mask`` of re-drawn cells and the
boxes ``snapped`` onto the model's coordinates; the answer says ``full_rerender`` and lists the ``changes``.

Every error is JSON in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad
request, 401 for a missing or wrong API key (when the `api_key_env` variable is set at start; ``/health``
stays open), 408 for a body that did not arrive within `body_timeout_s` (the connection is then closed), 413
for a body over `max_body_bytes`, 503 with ``Retry-After`` when the queue is full, 504 when a request waited
longer than `request_timeout_s`, 500 when the model failed (the server keeps serving).

A request whose client hangs up before its images are made is cancelled: its images leave the queue unsampled
(or, already in the batch being made, are thrown away) and ``/health`` counts it as cancelled, not served.
Idle keep-alive connections are closed after `keep_alive_timeout_s` (uvicorn's ``timeout_keep_alive``), and a
connection that has not delivered a whole request head (request line and headers) within `header_timeout_s` of
connecting, or of its last response, is closed without an answer (slow loris; see `_head_timeout_protocol`).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import logging
import math
import os
import re
import secrets
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import FieldError, check_range
from ..model.edit_masks import snapped_record
from ..model.editing import EditError
from ..model.loading import PromptTooLong
from .batcher import Batcher, QueueFull, ShuttingDown
from .engine import Engine, Job

log = logging.getLogger("gotr1.serving")

MAX_SEED = 2**63 - 1  # seeds are int64 in the sampler


@dataclass
class ServerSettings:
    """How the server listens and how much work it takes on. The API key itself is never held here: only
    the name of the environment variable it is read from, so printing settings cannot leak it."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 16  # images per sampler call
    batch_wait_ms: float = 20.0  # after a request arrives, how long to wait for others to share its batch
    max_queue: int = 64  # images waiting (not counting the batch being made); beyond it requests get 503
    max_n: int = 8  # images per request
    max_prompt_chars: int = 1000
    max_body_bytes: int = 1 << 20
    api_key_env: str | None = "GOTR1_API_KEY"  # None or "": never ask for a key
    request_timeout_s: float = 600.0  # how long a request may wait for its images before a 504
    body_timeout_s: float = 30.0  # the whole body must arrive within this, or 408 and the connection is closed
    keep_alive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this
    header_timeout_s: float = 10.0  # a request's head must arrive within this, or the connection is closed

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise FieldError("host", f"must be a host name or address, got {self.host!r}")
        for name in ("port", "max_batch", "max_queue", "max_n", "max_prompt_chars", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise FieldError(name, f"expected an integer, got {value!r}")
        check_range("port", self.port, low=0, high=65535)
        check_range("max_batch", self.max_batch, low=1)
        check_range("batch_wait_ms", self.batch_wait_ms, low=0, high=60_000)
        check_range("max_queue", self.max_queue, low=1)
        check_range("max_n", self.max_n, low=1)
        check_range("max_prompt_chars", self.max_prompt_chars, low=1)
        check_range("max_body_bytes", self.max_body_bytes, low=1024)
        check_range("request_timeout_s", self.request_timeout_s, low=0, low_open=True)
        check_range("body_timeout_s", self.body_timeout_s, low=0, high=3600, low_open=True)
        check_range("keep_alive_timeout_s", self.keep_alive_timeout_s, low=0, high=3600, low_open=True)
        check_range("header_timeout_s", self.header_timeout_s, low=0, high=3600, low_open=True)
        if self.max_n > self.max_queue:
            raise FieldError(
                "max_n", f"must be <= max_queue ({self.max_queue}), got {self.max_n}: such a request never fits"
            )
        if self.api_key_env is not None and not isinstance(self.api_key_env, str):
            raise FieldError("api_key_env", f"must be an environment variable name, got {self.api_key_env!r}")


# -- errors ---------------------------------------------------------------------------------------


class APIError(Exception):
    """An error answered in OpenAI's JSON shape."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "message": _one_line(self.message, 1000),
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _one_line(text: object, limit: int = 300) -> str:
    lines = str(text).strip().splitlines()
    return (lines[0] if lines else "")[:limit]


def error_response(*args, **kwargs) -> JSONResponse:
    """The JSON answer for an error; takes APIError's arguments (status, message, param, kind, code, headers)."""
    return APIError(*args, **kwargs).response()


def _validation_message(error: dict[str, Any], fields: list[str] | None = None) -> tuple[str, str | None]:
    """One pydantic/FastAPI error as a sentence naming the field, and the field (`fields`: the names the request
    takes, listed when a field is unknown; the generation request's by default)."""
    kind, loc = error.get("type", ""), tuple(error.get("loc", ()))
    path = [str(part) for part in loc[1:]] if loc[:1] == ("body",) else [str(part) for part in loc]
    param = ".".join(path) or None
    if kind == "json_invalid":
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f"the body is not valid JSON: {error.get('ctx', {}).get('error', 'decode error')}{where}", None
    if kind == "extra_forbidden":
        allowed = ", ".join(fields if fields is not None else ImageRequest.model_fields)
        return f"unknown field '{param}'; this server takes: {allowed}", param
    if param is None:
        if isinstance(error.get("input"), (bytes, str)):
            return "the body must be a JSON object (send Content-Type: application/json)", None
        return "the body must be a JSON object with at least a 'prompt'", None
    if kind == "missing":
        return f"'{param}' is required", param
    got = repr(error.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{param}: {error.get('msg', 'invalid value')}, got {got}", param


# -- the request ----------------------------------------------------------------------------------


class ImageRequest(BaseModel):
    """The body of `POST /v1/images/generations` (see the module docstring for what each field does)."""

    model_config = ConfigDict(extra="forbid")

    prompt: StrictStr
    model: StrictStr | None = None
    n: StrictInt | None = None
    size: StrictStr | None = None
    response_format: StrictStr | None = None
    seed: StrictInt | None = None
    chain: StrictStr | None = None
    # accepted and ignored
    quality: Literal["auto", "standard", "hd", "low", "medium", "high", "xhigh", "max"] | None = None
    style: Literal["vivid", "natural"] | None = None
    moderation: Literal["auto", "low"] | None = None
    complexity: Literal["low", "medium", "high"] | None = None
    user: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    # only at their default
    output_format: StrictStr | None = None
    background: StrictStr | None = None
    output_compression: StrictInt | None = None
    stream: StrictBool | None = None
    partial_images: StrictInt | None = None
    frame_count: StrictInt | None = None
    frame_duration_ms: StrictInt | None = None
    svg: dict[str, Any] | None = None


def _check_request(body: ImageRequest, engine: Engine, settings: ServerSettings) -> tuple[int, int]:
    """APIError (400) for anything this server will not do; returns (n, seed)."""
    if body.model is not None and body.model != engine.name:
        raise APIError(400, f"model '{body.model}' is not served here; this server serves '{engine.name}'", "model")
    if not body.prompt.strip():
        raise APIError(400, "prompt must not be empty", "prompt")
    if len(body.prompt) > settings.max_prompt_chars:
        raise APIError(
            400, f"prompt is {len(body.prompt)} characters; the limit is {settings.max_prompt_chars}", "prompt"
        )
    n = 1 if body.n is None else body.n
    if not 1 <= n <= settings.max_n:
        raise APIError(400, f"n must be between 1 and {settings.max_n}, got {n}", "n")
    native = f"{engine.image_size}x{engine.image_size}"
    if body.size not in (None, "auto", native):
        raise APIError(400, f"size '{body.size}' is not available; this model makes {native} images only", "size")
    if body.response_format not in (None, "b64_json"):
        raise APIError(
            400,
            f"response_format '{body.response_format}' is not served: images come back inline as "
            "response_format 'b64_json' (nothing is stored to link to)",
            "response_format",
        )
    refusals = {
        "output_format": (body.output_format not in (None, "png"), "only 'png' is served"),
        "background": (body.background not in (None, "auto", "opaque"), "only 'auto' or 'opaque' (no transparency)"),
        "output_compression": (body.output_compression is not None, "not applicable: PNG is lossless"),
        "stream": (bool(body.stream), "streaming is not supported; send stream false or leave it out"),
        "partial_images": (body.partial_images not in (None, 0), "partial images are not streamed; send 0"),
        "frame_count": (body.frame_count is not None, "animation is not supported"),
        "frame_duration_ms": (body.frame_duration_ms is not None, "animation is not supported"),
        "svg": (body.svg is not None, "SVG output is not supported"),
    }
    for name, (refused, why) in refusals.items():
        if refused:
            raise APIError(400, f"{name} {getattr(body, name)!r} is not supported: {why}", name)
    if body.seed is not None and not 0 <= body.seed <= MAX_SEED:
        raise APIError(400, f"seed must be between 0 and 2**63-1, got {body.seed}", "seed")
    try:
        engine.check_prompt(body.prompt, chain=body.chain)
    except PromptTooLong as exc:
        field = "prompt" if body.chain is None else "chain"
        raise APIError(400, f"{field} too long for this model: {exc}", field) from None
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    return n, seed


def _png_base64(image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_entry(sample, seed: int) -> dict[str, Any]:
    record = sample.record()
    entry: dict[str, Any] = {
        "b64_json": _png_base64(sample.image),
        "revised_prompt": None,
        "chain": record["chain"],
        "objects": record["objects"],
        "problems": record["problems"],
        "seed": seed,
        "sample_index": sample.job.sample_index,
    }
    for key in ("rewards", "rewards_note"):
        if key in record:
            entry[key] = record[key]
    return entry


# -- edits: the multipart form -------------------------------------------------------------------


class EditRequest(ImageRequest):
    """The text fields of `POST /v1/images/edits`: the generation request's, and what an edit adds. The files
    (``image``, ``mask``) are read from the form apart (see `_read_edit_form`)."""

    source_chain: StrictStr | None = None  # the plan the source image was drawn from (a plan or prompt edit)
    redraw: StrictBool = False  # sample every token from the new plan, keep only the source's pixels outside the mask
    input_fidelity: Literal["high", "low"] | None = None  # accepted and ignored


EDIT_FILES = ("image", "mask")
_INT_FIELDS = ("n", "seed", "output_compression", "partial_images", "frame_count", "frame_duration_ms")
_INTEGER = re.compile(r"[+-]?\d{1,30}")


async def _read_edit_form(request: Request) -> tuple[EditRequest, dict[str, bytes]]:
    """The edit's text fields, checked (APIError 400 naming the field), and its files' bytes by field name.

    Form values are text: integers and booleans are read as such, anything else is left for pydantic to refuse.
    ``image[]`` (what OpenAI's clients send for a list of images) counts as ``image``, and one image is edited
    at a time. An empty file part without a file name (an HTML form's empty file input) is no file."""
    content_type = request.headers.get("content-type", "").lower()
    if not content_type.startswith("multipart/form-data"):
        raise APIError(
            400, "send an edit as multipart/form-data (the image is a file upload, as OpenAI's images.edit sends it)"
        )
    form = await request.form(max_files=len(EDIT_FILES) + 2, max_fields=64)
    texts: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    try:
        for key, value in form.multi_items():
            name = "image" if key == "image[]" else key
            if name == "markup":
                raise APIError(400, "markup is not supported: give a mask (its transparent pixels may change)", name)
            if name in EDIT_FILES:
                if isinstance(value, str):
                    raise APIError(400, f"{name} must be a file upload (a PNG), not a text field", name)
                data = await value.read()
                if not data and not value.filename:
                    continue
                if name in files:
                    raise APIError(400, f"{name}: give one file; this server edits one image at a time", name)
                files[name] = data
            else:
                if not isinstance(value, str):
                    raise APIError(400, f"{name} must be a text field, not a file", name)
                if name in texts:
                    raise APIError(400, f"{name} is given more than once", name)
                texts[name] = value
    finally:
        await form.close()
    for name, value in texts.items():
        if name in _INT_FIELDS and _INTEGER.fullmatch(value.strip()):
            texts[name] = int(value)
        elif name in ("stream", "redraw") and value.strip().lower() in ("true", "false"):
            texts[name] = value.strip().lower() == "true"
    try:
        body = EditRequest.model_validate(texts)
    except ValidationError as exc:
        message, param = _validation_message(exc.errors()[0], [*EditRequest.model_fields, *EDIT_FILES])
        raise APIError(400, message, param) from None
    return body, files


def _open_png(data: bytes, field: str, size: int) -> Image.Image:
    """A PNG upload at the model's size, decoded (APIError 400 naming `field` otherwise). The size is checked on
    the header, before any pixel is decoded."""
    try:
        picture = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise APIError(400, f"{field} is far larger than {size}x{size}", field) from None
    except Exception:
        raise APIError(400, f"{field} is not a PNG image (not a picture Pillow can read)", field) from None
    if picture.format != "PNG":
        raise APIError(400, f"{field} must be a PNG image, got {picture.format}", field)
    width, height = picture.size
    if (width, height) != (size, size):
        what = "the model edits" if field == "image" else "it must be the image's size,"
        raise APIError(400, f"{field} is {width}x{height}; {what} {size}x{size}", field)
    try:
        picture.load()
    except Exception as exc:
        raise APIError(400, f"{field} is not a readable PNG: {_one_line(exc)}", field) from None
    return picture


def _edit_param(message: str, kind: str) -> str:
    """The request field an EditError concerns: the mask or image it names, else what the edit was given."""
    if message.startswith("mask:"):
        return "mask"
    if message.startswith("the image is"):
        return "image"
    return {"mask": "mask", "plan": "chain", "prompt": "prompt"}[kind]


def _edit_entry(sample, seed: int, plan) -> dict[str, Any]:
    """`_image_entry` and the edit: the image's tokens (none for a redrawn edit: no grid decodes to its pixels),
    the token mask re-drawn (rows of 0/1, 1 = re-drawn, row-major like the tokens) and the boxes snapped onto the
    model's coordinates."""
    entry = _image_entry(sample, seed)
    generation = sample.generation
    mask = generation.edit_mask if generation.edit_mask is not None else plan.mask
    side = math.isqrt(mask.numel())
    entry["redrawn"] = generation.redrawn
    entry["image_tokens"] = None if generation.redrawn else generation.image_ids[0].tolist()
    entry["mask"] = mask.reshape(side, side).int().tolist()
    entry["snapped"] = snapped_record(plan.snapped)
    return entry


# -- the gate: API key and body size, before anything parses the body ------------------------------


class _Gate:
    """ASGI middleware: refuse unauthorised /v1 calls, oversized bodies and bodies that do not arrive in time
    (uvicorn has no body timeout: a client that sends half a body would hold its connection forever)."""

    def __init__(self, app, *, api_key: str | None, max_body_bytes: int, body_timeout_s: float = 30.0) -> None:
        self.app = app
        self._key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self._key is not None and scope["path"].startswith("/v1") and not self._authorised(headers):
            given = "authorization" in headers
            message = "invalid API key" if given else "missing API key: send the header 'Authorization: Bearer <key>'"
            response = error_response(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_big = error_response(
            413, f"the request body is over the limit of {self.max_body_bytes} bytes", code="request_too_large"
        )
        length = headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await error_response(400, "Content-Length is not a number")(scope, receive, send)
                return
            if declared > self.max_body_bytes:
                await too_big(scope, receive, send)
                return
        chunks, size = [], 0
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while True:
            try:  # one deadline for the whole body, so trickling a byte at a time does not extend it
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except asyncio.TimeoutError:
                log.info("closing a connection whose body did not arrive within %g s", self.body_timeout_s)
                slow = error_response(
                    408,
                    f"the request body did not arrive within {self.body_timeout_s:g} s",
                    code="request_timeout",
                    headers={"Connection": "close"},  # uvicorn closes the connection after this answer
                )
                await slow(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorised(self, headers: dict[str, bytes]) -> bool:
        scheme, _, token = headers.get("authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)


# -- the app --------------------------------------------------------------------------------------


def create_app(engine: Engine, settings: ServerSettings | None = None) -> FastAPI:
    """The HTTP API over `engine`. The API key (if any) is read from the environment here, once."""
    settings = settings or ServerSettings()
    api_key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    batcher = _make_batcher(engine, settings)
    started = int(time.time())
    app = FastAPI(title="gotr1", summary="GoT-R1 reasoning-chain image generation", lifespan=_lifespan(batcher))
    app.state.engine, app.state.settings, app.state.batcher = engine, settings, batcher
    app.add_middleware(
        _Gate, api_key=api_key or None, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s
    )
    _add_error_handlers(app)
    _add_info_routes(app, engine, batcher, started)
    _add_generation_route(app, engine, settings, batcher)
    _add_edit_route(app, engine, settings, batcher)
    return app


def _make_batcher(engine: Engine, settings: ServerSettings) -> Batcher:
    """The batcher that shares sampler calls between requests, sized by `settings`."""
    return Batcher(
        lambda jobs: engine.run(jobs),  # late-bound, so a wrapped or patched engine.run is what runs
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        batch_wait_s=settings.batch_wait_ms / 1000,
    )


def _lifespan(batcher: Batcher):
    """The app's lifespan: the batcher's worker runs only while the server does, and stopping the server
    stops it (in a thread, since stopping waits for the batch being made)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await run_in_threadpool(batcher.stop)

    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's JSON shape, so clients never see FastAPI's own ``{"detail": ...}``
    bodies or an HTML 500 page."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        # The body must be an object before its fields mean anything; then report the first field.
        first = next((e for e in errors if e.get("type") == "json_invalid"), errors[0] if errors else {})
        message, param = _validation_message(first)
        return error_response(400, message, param)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}", kind="server_error")


def _add_info_routes(app: FastAPI, engine: Engine, batcher: Batcher, started: int) -> None:
    """The read-only routes: ``/health`` for operators, and ``/v1/models`` so OpenAI clients can list and look
    up the one served model (``started`` is its ``created`` time)."""

    def model_card() -> dict[str, Any]:
        return {"id": engine.name, "object": "model", "created": started, "owned_by": "gotr1"}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Queue and counters; `requests` (accepted) always equals served + failed + cancelled + timed_out +
        shut_down + queue.open_requests, and `refused` counts the requests never accepted."""
        stats = batcher.stats()
        return {
            "status": "ok" if batcher.alive else "starting",
            "model": engine.name,
            "image_size": engine.image_size,
            "queue": {
                "images": stats.pop("queued_images"),
                "requests": stats.pop("queued_requests"),
                "running_images": stats.pop("running_images"),
                "open_requests": stats.pop("open_requests"),
                "capacity": stats.pop("max_queue"),
                "max_batch": stats.pop("max_batch"),
            },
            "counters": stats,
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != engine.name:
            raise APIError(404, f"model '{model_id}' is not served here; this server serves '{engine.name}'", "model")
        return model_card()


def _add_generation_route(app: FastAPI, engine: Engine, settings: ServerSettings, batcher: Batcher) -> None:
    """``POST /v1/images/generations``: queue the request's images, wait for them (or for the client to hang
    up, or the timeout), and answer them in OpenAI's shape with GoT-R1's extras."""

    @app.post("/v1/images/generations")
    async def generate(body: ImageRequest, request: Request) -> JSONResponse:
        n, seed = _check_request(body, engine, settings)
        future = _submit([Job(body.prompt, seed, i, body.chain) for i in range(n)], batcher)
        samples = await _wait_for_samples(future, request, batcher, settings)
        data = await run_in_threadpool(lambda: [_image_entry(sample, seed) for sample in samples])
        return JSONResponse(_images_response(engine, data))


def _add_edit_route(app: FastAPI, engine: Engine, settings: ServerSettings, batcher: Batcher) -> None:
    """``POST /v1/images/edits``: read and check the form, encode the image and decide what the edit re-samples
    (in a worker thread: a prompt edit samples candidate chains), then queue its images like a generation.

    At most ``max_queue // max_n`` edits are prepared at once (each waits for the model); more get a 503."""
    preparing = 0
    limit = max(1, settings.max_queue // settings.max_n)

    @app.post("/v1/images/edits")
    async def edit(request: Request) -> JSONResponse:
        nonlocal preparing
        body, files = await _read_edit_form(request)
        n, seed = _check_request(body, engine, settings)
        if "image" not in files:
            raise APIError(400, "'image' is required: the PNG to edit, as a file upload", "image")
        image = _open_png(files["image"], "image", engine.image_size)
        if "mask" not in files and body.source_chain is None:
            raise APIError(
                400,
                "give a mask (a PNG whose transparent pixels may change), or the source image's chain (source_chain, "
                "the 'chain' its generation returned) with an edited chain or a new prompt",
                "mask",
            )
        if "mask" in files and body.chain is not None:
            raise APIError(400, "give chain (a plan edit, with source_chain) or mask, not both", "chain")
        mask = _open_png(files["mask"], "mask", engine.image_size) if "mask" in files else None
        kind, what = ("mask", {"mask": mask}) if mask is not None else ("prompt", {})
        if body.chain is not None:
            kind, what = "plan", {"chain": body.chain}
        if preparing >= limit:
            raise APIError(
                503,
                f"the server is busy preparing {preparing} other edit(s); retry after 1 s",
                kind="server_error",
                code="queue_full",
                headers={"Retry-After": "1"},
            )

        source_chain = body.source_chain or ""  # prepare_edit puts it on the model's coordinates, as the edit

        def prepare():
            source = engine.source_from_image(image, body.prompt, source_chain)
            return source, engine.prepare_edit(source, prompt=body.prompt, seed=seed, **what)

        preparing += 1
        try:
            source, plan = await run_in_threadpool(prepare)
        except EditError as exc:
            raise APIError(400, str(exc), _edit_param(str(exc), kind)) from None
        except Exception as exc:
            log.exception("preparing an edit failed")
            raise APIError(
                500, f"preparing the edit failed: {_one_line(f'{type(exc).__name__}: {exc}')}", kind="server_error"
            ) from None
        finally:
            preparing -= 1
        jobs = [
            Job(plan.prompt, seed, i, plan.chain, source_ids=source.image_ids, edit_mask=plan.mask, redraw=body.redraw)
            for i in range(n)
        ]
        samples = await _wait_for_samples(_submit(jobs, batcher), request, batcher, settings)
        data = await run_in_threadpool(lambda: [_edit_entry(sample, seed, plan) for sample in samples])
        changes = [change.to_dict() for change in plan.changes]
        return JSONResponse(_images_response(engine, data, full_rerender=plan.full_rerender, changes=changes))


def _images_response(engine: Engine, data: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The body of a successful images answer (OpenAI's fields, then `extra`)."""
    size = f"{engine.image_size}x{engine.image_size}"
    return {
        "created": int(time.time()),
        "data": data,
        "model": engine.name,
        "size": size,
        "output_format": "png",
        **extra,
    }


async def _wait_for_samples(future, request: Request, batcher: Batcher, settings: ServerSettings) -> list:
    """The samples of a submitted request, or the APIError its end calls for: it is cancelled when the client
    hangs up (499, which nobody reads) or when it waited longer than `request_timeout_s` (504)."""
    waiter = asyncio.wrap_future(future)
    watcher = asyncio.ensure_future(_until_disconnected(request.receive))
    try:
        done, _ = await asyncio.wait(
            {waiter, watcher}, timeout=settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:  # the server is stopping this task: free the request's place
        batcher.cancel(future)
        raise
    finally:
        watcher.cancel()
    if waiter not in done:
        gone = watcher in done
        if batcher.cancel(future, "cancelled" if gone else "timed_out"):
            if gone:  # nobody is left to read this answer; uvicorn drops it
                raise APIError(499, "the client closed the connection", code="client_closed_request")
            raise APIError(
                504,
                f"no images after {settings.request_timeout_s:g} s; try again later",
                kind="server_error",
                code="timeout",
            )
        # else the request ended at the same moment (served or failed): answer with that end
    return await _samples(waiter)


def _submit(jobs: list[Job], batcher: Batcher):
    """Queue `jobs`, or refuse with a 503 (with ``Retry-After`` when the queue is full) so the client knows to
    come back rather than that its request was wrong."""
    try:
        return batcher.submit(jobs)
    except QueueFull as exc:
        raise APIError(
            503,
            f"the server is busy ({exc}); retry after {exc.retry_after_s} s",
            kind="server_error",
            code="queue_full",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    except ShuttingDown:
        raise APIError(503, "the server is shutting down", kind="server_error", code="shutting_down") from None


async def _samples(waiter: asyncio.Future) -> list:
    """The request's samples, or the APIError its end calls for: a model failure is a 500 for this request
    only (the server keeps serving), a shutdown a 503."""
    try:
        return await waiter
    except ShuttingDown:
        raise APIError(503, "the server is shutting down", kind="server_error", code="shutting_down") from None
    except Exception as exc:
        raise APIError(
            500,
            f"image generation failed: {_one_line(f'{type(exc).__name__}: {exc}')}",
            kind="server_error",
        ) from None


async def _until_disconnected(receive) -> None:
    """Return when the client hangs up.

    Once the body is read, uvicorn's ``receive()`` blocks until the connection is lost and then answers
    ``http.disconnect`` (the way Starlette's StreamingResponse listens for it), so a task awaiting it sees a
    hang-up at once. Polling ``request.is_disconnected()`` would need a loop and an interval, and only notices
    between polls. Anything but a disconnect here is unexpected after the body; the short sleep keeps an ASGI
    server that answers at once from spinning. A connection whose ``receive()`` fails is as good as gone.
    """
    try:
        while (await receive())["type"] != "http.disconnect":
            await asyncio.sleep(0.05)
    except Exception as exc:
        log.warning("treating the client as gone: receive() failed: %s", _one_line(f"{type(exc).__name__}: {exc}"))


# -- running it -----------------------------------------------------------------------------------


def _head_timeout_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol that closes a connection whose request head does not arrive within `timeout_s`.

    uvicorn times nothing while it waits for a request's head: its keep-alive timer starts only after a
    response and any byte received cancels it, so a client that connects and sends nothing, or sends half its
    headers and stalls (slow loris), holds its connection forever. Here a timer runs whenever the connection
    waits for a head (h11 sees the client IDLE: from connecting, and again after each response when the
    connection is kept alive) and is stopped once a head is parsed; trickled bytes do not extend it. On expiry
    the connection is closed the way uvicorn closes an idle one, with no answer. h11 is pinned (uvicorn would
    take httptools when installed) so the states hooked here are the parser's that runs.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._watch_head()

        def handle_events(self) -> None:  # runs on each data arrival and after each completed response
            super().handle_events()
            self._watch_head()

        def connection_lost(self, exc) -> None:
            super().connection_lost(exc)
            self._stop_head_timer()

        def _watch_head(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                if self._head_timer is None:
                    self._head_timer = self.loop.call_later(timeout_s, self._head_timed_out)
            else:
                self._stop_head_timer()

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            log.debug("closing a connection whose request head did not arrive within %g s", timeout_s)
            self.timeout_keep_alive_handler()

    return HeadTimeoutH11Protocol


def _uvicorn_config(app: FastAPI, host: str, port: int, **overrides):
    import uvicorn

    options = {"ws": "none", "lifespan": "on", "timeout_graceful_shutdown": 10, **overrides}
    settings = getattr(app.state, "settings", None)
    if isinstance(settings, ServerSettings):
        options.setdefault("timeout_keep_alive", settings.keep_alive_timeout_s)
        options.setdefault("http", _head_timeout_protocol(settings.header_timeout_s))
    return uvicorn.Config(app, host=host, port=port, **options)


def serve(engine: Engine, settings: ServerSettings | None = None) -> None:
    """Serve `engine` on settings.host:port until interrupted (Ctrl-C)."""
    import uvicorn

    settings = settings or ServerSettings()
    app = create_app(engine, settings)
    keyed = bool(settings.api_key_env and os.environ.get(settings.api_key_env))
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    log.info(
        "serving %s at http://%s:%d/v1 (POST /v1/images/generations and /v1/images/edits, GET /v1/models, "
        "GET /health); %s",
        engine.name,
        host,
        settings.port,
        f"API key required (from ${settings.api_key_env})" if keyed else "no API key",
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not keyed:
        log.warning(
            "listening on %s without an API key: anyone who can reach this machine can use the model "
            "(set %s to require one)",
            settings.host,
            settings.api_key_env or "api_key_env",
        )
    uvicorn.Server(_uvicorn_config(app, settings.host, settings.port, log_level="info")).run()


class BackgroundServer:
    """An app served by uvicorn in a daemon thread on a loopback port: for tests, benchmarks and demos.

    ``with BackgroundServer(app) as server: httpx.get(server.url + "/health")``; port 0 picks a free port.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 30.0) -> None:
        import uvicorn

        self.app, self.host = app, host
        self.server = uvicorn.Server(_uvicorn_config(app, host, port, log_config=None, access_log=False))
        self.start_timeout_s = start_timeout_s
        self.thread = threading.Thread(target=self.server.run, name="gotr1-server", daemon=True)
        self.port = port

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                raise RuntimeError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
