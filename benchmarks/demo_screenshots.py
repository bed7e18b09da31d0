"""Screenshots of the browser demo for the docs: after generating, and after editing a plan and re-rendering.

Not a test: it serves the demo in this process on a free loopback port, drives it in headless Chromium
(the system one, see gotr1.eval.browser.find_chromium) and writes two PNGs.

    python benchmarks/demo_screenshots.py                       # the built-in model, docs/demo_*.png
    python benchmarks/demo_screenshots.py --model PATH --out-dir /tmp/shots
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import torch

from gotr1.eval.browser import find_chromium
from gotr1.models import DEFAULT_MODEL_NAME, load_model
from gotr1.serving.demo import launch_demo
from gotr1.serving.engine import Engine

PROMPT = "a red circle to the left of a blue square"
WAIT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _edit_cell(page, row: int, column: int, value: str) -> None:
    """Type `value` into a plan-table cell as a person would: double-click, type, Enter."""
    before = page.locator("#chain-text textarea").input_value()
    cell = page.locator(f"#plan-table [data-testid='cell-{row}-{column}']")
    cell.dblclick()
    editor = cell.locator("textarea")
    editor.fill(value)
    editor.press("Enter")
    page.wait_for_function("old => document.querySelector('#chain-text textarea').value !== old", arg=before)


def take(url: str, out_dir: Path, prompt: str = PROMPT, width: int = 1400) -> tuple[Path, Path]:
    """Generate, screenshot, move an object's box down (or up) in the table, re-render, screenshot."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    generated, edited = out_dir / "demo_generate.png", out_dir / "demo_edit.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(find_chromium()), headless=True, args=["--disable-dev-shm-usage", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            page.goto(url)
            page.locator("#prompt textarea").fill(prompt)
            page.locator("#generate").click()
            page.locator("#result-image img").wait_for()
            page.locator("#plan-table [data-testid='cell-0-2']").wait_for()
            page.screenshot(path=str(generated), full_page=True)

            first_src = page.locator("#result-image img").get_attribute("src")
            # The last object: the shapes model follows a moved second object more readily than a moved first.
            row = 1 if page.locator("#plan-table [data-testid='cell-1-2']").count() else 0
            y1 = int(page.locator(f"#plan-table [data-testid='cell-{row}-2']").inner_text())
            y2 = int(page.locator(f"#plan-table [data-testid='cell-{row}-4']").inner_text())
            shift = 500 if y2 + 500 <= 1000 else -min(500, y1)
            _edit_cell(page, row, 4, str(y2 + shift))  # the far edge first, so the box never turns inside out
            _edit_cell(page, row, 2, str(y1 + shift))
            page.locator("#rerender").click()
            page.wait_for_function(
                "first => { const img = document.querySelector('#result-image img');"
                " return img && img.getAttribute('src') !== first; }",
                arg=first_src,
            )
            page.locator("#sample-heading", has_text="edit 1").wait_for()
            page.mouse.move(0, 0)
            page.screenshot(path=str(edited), full_page=True)
        finally:
            browser.close()
    return generated, edited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint or built-in model name (default: the built-in)")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for sampling")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from gotr1.worlds.shapes.parse import read_prompt
    from gotr1.worlds.shapes.rl import reward_function

    engine = Engine(
        load_model(args.model),
        name=args.model or DEFAULT_MODEL_NAME,
        rewards=reward_function(),
        read_prompt=read_prompt,
        rewards_name="shapes",
    )
    port = _free_port()
    demo = launch_demo(engine, port=port, prevent_thread_lock=True)
    try:
        for path in take(f"http://127.0.0.1:{port}/", args.out_dir, args.prompt):
            print(path)
    finally:
        demo.close()


if __name__ == "__main__":
    main()
