"""The demo in a real headless Chromium: generate (Enter in the prompt), edit a box in the table (a bad cell is
marked), re-render keeping everything else, and check in the served images that only the shown mask changed.

The server runs in this process on a free loopback port; the page must not reach anything but it. Skipped
only where playwright or Chromium is missing (GOTR1_REQUIRE_BROWSER=1 turns that into a failure).
"""

from __future__ import annotations

import importlib.util
import io
import os
import socket

import pytest
import torch
from PIL import Image

from gotr1.models import load_model
from gotr1.serving.demo import launch_demo
from gotr1.serving.engine import Engine
from gotr1.worlds.shapes.parse import read_prompt
from gotr1.worlds.shapes.rl import reward_function

PROMPT = "a red circle to the left of a blue square"
WAIT_MS = 60_000  # one bound for every wait; sampling the shapes model takes about a second


@pytest.fixture(scope="module")
def chromium():
    """The Chromium binary, or a skip (a failure under GOTR1_REQUIRE_BROWSER) when there is none."""
    missing = "needs the playwright package and a Chromium (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is not None:
        from gotr1.eval.browser import BrowserUnavailable, find_chromium

        try:
            return find_chromium()
        except BrowserUnavailable as exc:
            missing = str(exc)
    if os.environ.get("GOTR1_REQUIRE_BROWSER"):  # CI installs both: there a skip would hide a failure
        pytest.fail(f"GOTR1_REQUIRE_BROWSER is set but {missing}")
    pytest.skip(missing)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(chromium):  # no server is started where the browser is missing
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the model is tiny; on a busy 2-core machine more threads only contend
    engine = Engine(
        load_model(None), name="shapes", rewards=reward_function(), read_prompt=read_prompt, rewards_name="shapes"
    )
    port = _free_port()
    demo = launch_demo(engine, port=port, prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        torch.set_num_threads(threads)


def _image_src(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} img").first.get_attribute("src") or ""


def _launch(playwright, chromium):
    return playwright.chromium.launch(
        executable_path=str(chromium), headless=True, args=["--disable-dev-shm-usage", "--disable-gpu"]
    )


def _open(browser, demo_url, errors: list[str], outside: list[str], width: int = 1400):
    """A page on the demo that records page errors and refuses (and records) any request off the demo."""
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def route(request_route):
        url = request_route.request.url
        if url.startswith((demo_url, "data:", "blob:")):
            request_route.continue_()
        else:
            outside.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.goto(demo_url)
    return page


def _generate(page, count: int) -> None:
    """Type the prompt and press Enter (no button), with `count` chains."""
    chains = page.locator("#num-chains input[type='number']")
    chains.fill(str(count))  # fewer samples: the test is about the page, not the model
    chains.press("Tab")
    prompt = page.locator("#prompt textarea")
    prompt.fill(PROMPT)
    prompt.press("Enter")
    page.locator("#result-image img").wait_for()


def _edit_cell(page, row: int, column: int, value: str) -> None:
    """Type `value` into a table cell as a person does (double-click, type, Enter); wait for the chain to follow."""
    before = page.locator("#chain-text textarea").input_value()
    cell = page.locator(f"#plan-table [data-testid='cell-{row}-{column}']")
    cell.dblclick()
    editor = cell.locator("textarea")
    editor.fill(value)
    editor.press("Enter")
    page.wait_for_function("old => document.querySelector('#chain-text textarea').value !== old", arg=before)


def _snapped(value: int, image_size: int = 64) -> int:
    """A typed grid value as the demo draws it: on the nearest pixel edge of the model's image."""
    return round(round(value * image_size / 1000) * 1000 / image_size)


def test_generate_edit_a_box_and_rerender_in_chromium(chromium, demo_url):
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = _launch(playwright, chromium)
        try:
            page = _open(browser, demo_url, errors, outside)
            page.locator("#generate").click()  # no prompt yet: refused beside the prompt box, nothing else changes
            page.locator("#prompt", has_text="Type a prompt first.").wait_for()
            _generate(page, 2)
            first_src = _image_src(page, "result-image")
            assert page.locator("#samples img").count() == 2
            rewards = page.locator("#rewards").inner_text()
            assert "total" in rewards and "0–1" in rewards and "0–2" in rewards
            assert not page.locator("#compare-before").is_visible()  # a generated sample has no before/after

            # a word in a number cell: that cell is marked, the row keeps its other values
            x1_cell = page.locator("#plan-table [data-testid='cell-0-1']")
            x2_cell = page.locator("#plan-table [data-testid='cell-0-3']")
            x1, x2 = int(x1_cell.inner_text()), int(x2_cell.inner_text())
            _edit_cell(page, 0, 1, "left")
            page.wait_for_function(
                "() => (document.querySelector(\"#plan-table [data-testid='cell-0-1']\").getAttribute('style') || '')"
                ".includes('font-weight: 600')"
            )
            assert "font-weight" not in (x2_cell.get_attribute("style") or "")
            assert x2_cell.inner_text() == str(x2)
            assert "is not a whole number" in page.locator("#problems").inner_text()

            # the table lists the selected sample's objects; change x1 of the first one
            assert x2 - x1 >= 2, "the first object's box is too narrow to move its left edge inside it"
            new_x1 = (x1 + x2) // 2
            _edit_cell(page, 0, 1, str(new_x1))
            assert "font-weight" not in (x1_cell.get_attribute("style") or "")
            chain_box = page.locator("#chain-text textarea")
            assert f"({new_x1}," in chain_box.input_value()
            assert "Plan OK" in page.locator("#problems").inner_text()

            page.locator("#rerender").click()
            page.wait_for_function(
                "first => { const img = document.querySelector('#result-image img');"
                " return img && img.getAttribute('src') !== first; }",
                arg=first_src,
            )
            page.locator("#sample-heading", has_text="edit 1").wait_for()
            drawn = _snapped(new_x1)  # typed boxes are drawn on the model's grid, and the page says so
            assert f"({drawn}," in chain_box.input_value()
            assert page.locator("#plan-table [data-testid='cell-0-1']").inner_text() == str(drawn)
            if drawn != new_x1:
                page.locator("#compare-note", has_text="the model's grid").wait_for()
            assert page.locator("#samples img").count() == 3  # the original is kept beside the edit
            assert _image_src(page, "result-image") != first_src
            page.locator("#compare-before img").wait_for()
            page.locator("#compare-after img").wait_for()
        finally:
            browser.close()
    assert errors == []
    assert outside == [], f"the page tried to reach {outside[:3]}"


def _served(page, elem_id: str) -> torch.Tensor:
    """The image a panel shows, as the server sent it: [H, W, 3] int16."""
    response = page.request.get(_image_src(page, elem_id))
    assert response.ok, response.status
    image = Image.open(io.BytesIO(response.body())).convert("RGB")
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(image.height, image.width, 3).short()


def test_keeping_everything_else_changes_only_the_shown_mask_in_chromium(chromium, demo_url):
    """Move one box, re-render with "keep everything else" (on by default): outside the tinted cells the new
    image is the old one, but for the VQ decoder's spill over cell borders (under 1% of pixels)."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = _launch(playwright, chromium)
        try:
            page = _open(browser, demo_url, errors, outside)
            _generate(page, 1)
            assert page.locator("#keep input[type='checkbox']").is_checked()
            old = _served(page, "plain-image")
            old_src = _image_src(page, "plain-image")

            # move the first object's box sideways by 400 units, far edge first so it never turns inside out
            x1 = int(page.locator("#plan-table [data-testid='cell-0-1']").inner_text())
            x2 = int(page.locator("#plan-table [data-testid='cell-0-3']").inner_text())
            shift = 400 if x2 + 400 <= 1000 else -min(400, x1)
            first, second = (3, 1) if shift > 0 else (1, 3)
            _edit_cell(page, 0, first, str((x2 if first == 3 else x1) + shift))
            _edit_cell(page, 0, second, str((x2 if second == 3 else x1) + shift))
            page.locator("#rerender").click()
            page.locator("#sample-heading", has_text="edit 1").wait_for()
            page.wait_for_function(
                "old => { const img = document.querySelector('#plain-image img');"
                " return img && img.getAttribute('src') !== old; }",
                arg=old_src,
            )
            page.locator("#compare-after img").wait_for()
            page.locator("#compare-note", has_text="Re-sampled").wait_for()

            new = _served(page, "plain-image")
            before = _served(page, "compare-before")
            after = _served(page, "compare-after")  # the edit with the re-sampled cells tinted
        finally:
            browser.close()
    assert errors == []
    assert outside == [], f"the page tried to reach {outside[:3]}"

    assert torch.equal(before, old), "the 'before' panel is not the sample that was edited"
    assert after.shape == new.shape == old.shape
    mask = (after != new).any(-1)  # the shown mask: where the tint is
    assert 0 < mask.float().mean() < 1, "the mask must cover some of the image, not all of it"
    changed = (new - old).abs().amax(-1) > 8
    assert changed[mask].any(), "nothing changed inside the mask"
    spill = (changed & ~mask).float().mean().item()
    assert spill < 0.01, f"{spill:.2%} of the pixels outside the shown mask changed"
