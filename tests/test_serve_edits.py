"""`POST /v1/images/edits`, run for real with uvicorn on a loopback port, called with the official OpenAI client
and with plain multipart requests, on the built-in shapes model (64 px, an 8x8 grid of image tokens).

What an edit promises is checked exactly on the tokens each answer returns: every cell outside the returned mask
holds the token the server's VQ encoding of the uploaded image gave (the test encodes the same PNG itself).
"""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from openai import OpenAI
from PIL import Image

from gotr1.model.editing import EditSource
from gotr1.models import load_model
from gotr1.serving.engine import Engine, Job
from gotr1.serving.server import BackgroundServer, ServerSettings, create_app

from .test_serve import CHAIN, TIMEOUT, Gated, assert_consistent, health, png, wait_for

NAME = "shapes-edit-test"
PROMPT = "a large blue square"
MOVED = CHAIN.replace("(100,120),(500,560)", "(500,120),(900,560)")


@pytest.fixture(scope="module")
def engine():
    torch.set_num_threads(2)
    return Engine(load_model(None), name=NAME)


@pytest.fixture(scope="module")
def server(engine):
    settings = ServerSettings(port=0, max_n=4, api_key_env=None)
    with BackgroundServer(create_app(engine, settings)) as running:
        yield running


@pytest.fixture(scope="module")
def source(engine) -> tuple[bytes, str]:
    """A sample of the model (CHAIN drawn for PROMPT) as PNG bytes, and its chain."""
    (sample,) = engine.run([Job(PROMPT, 1, 0, CHAIN)])
    return encode(sample.image), sample.chain


def encode(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def mask_png(size: int = 64, free: tuple[int, int, int, int] = (0, 0, 24, 24), mode: str = "RGBA") -> bytes:
    """An opaque picture whose pixels in `free` (x1, y1, x2, y2) are fully transparent (OpenAI's convention)."""
    picture = Image.new(mode, (size, size), (0, 0, 0, 255) if mode == "RGBA" else (0, 0, 0))
    if mode == "RGBA":
        picture.paste((0, 0, 0, 0), free)
    return encode(picture)


def source_tokens(engine, image_png: bytes) -> torch.Tensor:
    """What the server encodes the upload to (the model's VQ), encoded here the same way."""
    return EditSource.from_image(engine.bundle, Image.open(io.BytesIO(image_png)), PROMPT, "").image_ids


def assert_kept(item: dict, source_ids: torch.Tensor) -> np.ndarray:
    """Every token outside the item's mask is the source's; returns the mask (side x side, True = re-sampled)."""
    mask = np.asarray(item["mask"], dtype=bool)
    tokens = np.asarray(item["image_tokens"])
    assert mask.shape == (8, 8) and tokens.shape == (64,)
    kept = ~mask.reshape(-1)
    assert kept.any(), "the edit re-sampled every cell: nothing to check"
    assert np.array_equal(tokens[kept], source_ids.numpy()[kept])
    return mask


def edit(server, files: dict | None = None, data: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/images/edits", files=files, data=data, timeout=TIMEOUT, **kwargs)


# -- the official client: a mask edit ----------------------------------------------------------------


def test_official_client_mask_edit_keeps_the_unmasked_tokens(server, engine, source):
    image_png, _ = source
    mask = mask_png(free=(0, 0, 24, 24))
    client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
    result = client.images.edit(
        image=("source.png", image_png, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="a small red circle",
        n=2,
        response_format="b64_json",
        extra_body={"seed": 3},
    )
    assert len(result.data) == 2 and result.model_extra["full_rerender"] is False
    # The cells the mask frees: those with any fully transparent pixel (8 px cells), worked out here on the pixels.
    alpha = np.asarray(Image.open(io.BytesIO(mask)))[..., 3]
    expected = (alpha == 0).reshape(8, 8, 8, 8).any(axis=(1, 3))
    source_ids = source_tokens(engine, image_png)
    for index, item in enumerate(result.data):
        extra = item.model_extra
        assert png(item.b64_json).shape == (64, 64, 3)
        assert extra["seed"] == 3 and extra["sample_index"] == index and extra["snapped"] == []
        assert np.array_equal(assert_kept(extra, source_ids), expected)
        assert isinstance(extra["chain"], str)

    again = client.images.edit(
        image=("source.png", image_png, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="a small red circle",
        n=2,
        extra_body={"seed": 3},
    )
    assert [d.model_extra["image_tokens"] for d in again.data] == [d.model_extra["image_tokens"] for d in result.data]


def test_a_redrawn_edit_keeps_the_pixels_outside_the_mask_and_returns_no_tokens(server, source):
    image_png, _ = source
    files = {"image": ("source.png", image_png, "image/png"), "mask": ("mask.png", mask_png(), "image/png")}
    form = {"prompt": "a small red circle", "seed": "3"}
    region, redrawn = (edit(server, files, form | extra).json()["data"][0] for extra in ({}, {"redraw": "true"}))
    assert redrawn["redrawn"] is True and redrawn["image_tokens"] is None and region["redrawn"] is False
    assert redrawn["mask"] == region["mask"]
    outside = ~np.asarray(region["mask"], dtype=bool).repeat(8, 0).repeat(8, 1)
    a, b = png(region["b64_json"]), png(redrawn["b64_json"])
    assert np.array_equal(a[outside], b[outside]) and not np.array_equal(a, b)  # the source's pixels outside


# -- plan and prompt edits of a sample from /v1/images/generations ------------------------------------------


def test_plan_edit_of_a_generated_sample_moves_one_box_and_keeps_the_rest(server, engine):
    made = httpx.post(
        f"{server.url}/v1/images/generations", json={"prompt": PROMPT, "seed": 2, "chain": CHAIN}, timeout=TIMEOUT
    )
    assert made.status_code == 200, made.text
    generated = made.json()["data"][0]
    image_png = base64.b64decode(generated["b64_json"])

    response = edit(
        server,
        files={"image": ("sample.png", image_png, "image/png")},
        data={"prompt": PROMPT, "source_chain": generated["chain"], "chain": MOVED, "seed": "5"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    (item,) = answer["data"]
    assert item["seed"] == 5 and png(item["b64_json"]).shape == (64, 64, 3)
    assert_kept(item, source_tokens(engine, image_png))
    # The typed box is drawn where the model writes coordinates, and the answer says so.
    ((snapped),) = item["snapped"]
    assert snapped["typed"] == [500, 120, 900, 560]
    assert item["objects"] == [{"name": "large blue square", "box": snapped["drawn"]}]
    assert item["problems"] == [] and item["chain"].count(str(snapped["drawn"][2])) == 1
    (change,) = answer["changes"]
    assert change["name"] == "large blue square" and change["change"] in ("moved", "resized")
    assert change["after"] == snapped["drawn"] != change["before"] and answer["full_rerender"] is False


def test_prompt_edit_keeps_the_cells_its_new_plan_does_not_touch(server, engine, source):
    image_png, chain = source
    response = edit(
        server,
        files={"image": ("sample.png", image_png, "image/png")},
        data={"prompt": "a small red circle", "source_chain": chain, "seed": "5", "n": "2"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    source_ids = source_tokens(engine, image_png)
    chains = {item["chain"] for item in answer["data"]}
    assert len(chains) == 1 and chains != {chain}  # one new plan, drawn by every image
    for item in answer["data"]:
        assert_kept(item, source_ids)
    assert answer["changes"]


def test_edits_and_generations_share_a_batch(engine, source):
    """An edit queued beside a generation is made in the same sampler call, and still keeps its source's cells."""
    image_png, chain = source
    gated = Gated(engine)
    settings = ServerSettings(port=0, max_batch=8, max_queue=16, api_key_env=None)
    with BackgroundServer(create_app(gated, settings)) as running, ThreadPoolExecutor(3) as pool:
        url = f"{running.url}/v1/images/generations"
        first = pool.submit(httpx.post, url, json={"prompt": "a red circle", "seed": 1}, timeout=TIMEOUT)
        assert gated.entered.wait(60)
        files = {"image": ("s.png", image_png, "image/png"), "mask": ("m.png", mask_png(), "image/png")}
        edited = pool.submit(edit, running, files, {"prompt": "a small red circle", "seed": "4"})
        second = pool.submit(httpx.post, url, json={"prompt": "a red circle", "seed": 2}, timeout=TIMEOUT)
        wait_for(lambda: health(running)["queue"]["images"] == 2, "the edit and the generation to queue")
        gated.gate.set()
        answers = [f.result(timeout=120) for f in (first, edited, second)]
        final = health(running)
    assert [a.status_code for a in answers] == [200] * 3
    assert [len(call) for call in gated.calls] == [1, 2]
    kinds = sorted(job.edit_mask is not None for job in gated.calls[1])
    assert kinds == [False, True]
    assert_kept(answers[1].json()["data"][0], source_tokens(engine, image_png))
    assert_consistent(final)


# -- bad requests ------------------------------------------------------------------------------------


def bad_cases(image_png: bytes, chain: str) -> dict[str, tuple[dict | None, dict, str | None, str]]:
    """name -> (files, form fields, the param the 400 names, words its message holds)."""
    image = ("s.png", image_png, "image/png")
    good_mask = ("m.png", mask_png(), "image/png")
    small = encode(Image.new("RGB", (32, 32), "white"))
    jpeg = encode(Image.new("RGB", (64, 64), "white"), "JPEG")  # the model's size, the wrong format
    masked = {"prompt": "a red circle"}
    both = {"image": image, "mask": good_mask}
    return {
        "no image": ({"mask": good_mask}, masked, "image", "required"),
        "image of the wrong size": ({"image": ("s.png", small, "image/png")}, masked, "image", "32x32"),
        "image not a PNG": ({"image": ("s.jpg", jpeg, "image/jpeg"), "mask": good_mask}, masked, "image", "PNG"),
        "image not a picture": ({"image": ("s.png", b"not a picture", "image/png")}, masked, "image", "PNG"),
        "image as text": ({"mask": good_mask}, {**masked, "image": "s.png"}, "image", "file upload"),
        "mask of the wrong size": ({**both, "mask": ("m.png", mask_png(32), "image/png")}, masked, "mask", "32x32"),
        "mask without alpha": ({**both, "mask": ("m.png", mask_png(mode="RGB"), "image/png")}, masked, "mask", "alpha"),
        "neither mask nor source_chain": ({"image": image}, masked, "mask", "source_chain"),
        "nothing to edit": ({"image": image}, {**masked, "source_chain": chain, "chain": chain}, "chain", "nothing to"),
        "mask and chain": (both, {**masked, "chain": chain}, "chain", "not both"),
        "n of 0": (both, {**masked, "n": "0"}, "n", "between 1 and 4"),
        "n of 5": (both, {**masked, "n": "5"}, "n", "between 1 and 4"),
        "n not a number": (both, {**masked, "n": "two"}, "n", "integer"),
        "no prompt": (both, {"n": "1"}, "prompt", "required"),
        "wrong size field": (both, {**masked, "size": "1024x1024"}, "size", "64x64"),
        "url response": (both, {**masked, "response_format": "url"}, "response_format", "b64_json"),
        "unknown field": (both, {**masked, "colour": "red"}, "colour", "unknown field"),
        "two images": ({**both, "image[]": image}, masked, "image", "one image"),
    }


BAD = list(bad_cases(b"", ""))


@pytest.mark.parametrize("case", BAD)
def test_bad_edit_is_a_400_naming_the_field_and_the_server_goes_on(server, engine, source, case):
    image_png, chain = source
    files, data, param, words = bad_cases(image_png, chain)[case]
    response = edit(server, files, data)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"] is None
    assert words in error["message"] and "\n" not in error["message"], error["message"]

    good = edit(
        server,
        {"image": ("s.png", image_png, "image/png"), "mask": ("m.png", mask_png(), "image/png")},
        {"prompt": "a red circle", "seed": "1"},
    )
    assert good.status_code == 200, good.text
    assert_kept(good.json()["data"][0], source_tokens(engine, image_png))


def test_an_edit_sent_as_json_is_refused(server):
    response = httpx.post(f"{server.url}/v1/images/edits", json={"prompt": "a red circle"}, timeout=TIMEOUT)
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_edits_being_prepared_are_bounded_then_refused_with_retry_after(engine, source):
    """With max_queue // max_n == 1, a second edit that arrives while one is being prepared gets a 503."""
    image_png, _ = source
    entered, gate = threading.Event(), threading.Event()

    class SlowPreparation(Gated):
        def prepare_edit(self, *args, **kwargs):
            entered.set()
            assert gate.wait(60), "the test never opened the gate"
            return self.inner.prepare_edit(*args, **kwargs)

    slow = SlowPreparation(engine)
    slow.gate.set()
    settings = ServerSettings(port=0, max_queue=2, max_n=2, api_key_env=None)
    files = {"image": ("s.png", image_png, "image/png"), "mask": ("m.png", mask_png(), "image/png")}
    with BackgroundServer(create_app(slow, settings)) as running, ThreadPoolExecutor(1) as pool:
        first = pool.submit(edit, running, files, {"prompt": "a red circle", "seed": "1"})
        assert entered.wait(60)
        refused = edit(running, files, {"prompt": "a red circle", "seed": "2"})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
        gate.set()
        assert first.result(timeout=120).status_code == 200
        assert edit(running, files, {"prompt": "a red circle", "seed": "2"}).status_code == 200
