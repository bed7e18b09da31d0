"""The demo in a real headless Chromium: generate, edit a box in the table, re-render.

The server runs in this process on a free loopback port; the page must not reach anything but it. Skipped
only where playwright or Chromium is missing (GOTR1_REQUIRE_BROWSER=1 turns that into a failure).
"""

from __future__ import annotations

import importlib.util
import os
import socket

import pytest
import torch

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


def test_generate_edit_a_box_and_rerender_in_chromium(chromium, demo_url):
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=["--disable-dev-shm-usage", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
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
            page.locator("#generate").click()  # no prompt yet: refused beside the prompt box, nothing else changes
            page.locator("#prompt", has_text="Type a prompt first.").wait_for()
            page.locator("#prompt textarea").fill(PROMPT)
            chains = page.locator("#num-chains input[type='number']")
            chains.fill("2")  # fewer samples: the test is about the page, not the model
            chains.press("Tab")
            page.locator("#generate").click()
            page.locator("#result-image img").wait_for()
            first_src = _image_src(page, "result-image")
            assert page.locator("#samples img").count() == 2
            assert "total" in page.locator("#rewards").inner_text()

            # the table lists the selected sample's objects; change x1 of the first one
            x1_cell = page.locator("#plan-table [data-testid='cell-0-1']")
            x2_cell = page.locator("#plan-table [data-testid='cell-0-3']")
            x1, x2 = int(x1_cell.inner_text()), int(x2_cell.inner_text())
            assert x2 - x1 >= 2, "the first object's box is too narrow to move its left edge inside it"
            new_x1 = (x1 + x2) // 2
            x1_cell.dblclick()
            editor = x1_cell.locator("textarea")
            editor.fill(str(new_x1))
            editor.press("Enter")
            chain_box = page.locator("#chain-text textarea")
            page.wait_for_function(
                "needle => document.querySelector('#chain-text textarea').value.includes(needle)", arg=f"({new_x1},"
            )
            assert "Plan OK" in page.locator("#problems").inner_text()

            page.locator("#rerender").click()
            page.wait_for_function(
                "first => { const img = document.querySelector('#result-image img');"
                " return img && img.getAttribute('src') !== first; }",
                arg=first_src,
            )
            page.locator("#sample-heading", has_text="edit 1").wait_for()
            assert f"({new_x1}," in chain_box.input_value()
            assert page.locator("#plan-table [data-testid='cell-0-1']").inner_text() == str(new_x1)
            assert page.locator("#samples img").count() == 3  # the original is kept beside the edit
            assert _image_src(page, "result-image") != first_src
        finally:
            browser.close()
    assert errors == []
    assert outside == [], f"the page tried to reach {outside[:3]}"
