"""A real headless browser for the evaluation report: screenshots for the README and a check that the page
renders offline (no console errors, no request leaving the file, every image decoded).

Uses the ``playwright`` Python package driving a system Chromium (Debian's ``chromium``): playwright's own
browser download is not needed. Set ``GOTR1_CHROMIUM`` to use another Chromium binary.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["BrowserUnavailable", "PageReport", "find_chromium", "screenshot"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserUnavailable(RuntimeError):
    """Playwright or a Chromium binary is missing: one line saying what to install."""


@dataclass
class PageReport:
    """What the browser saw while rendering a page."""

    png: Path
    title: str
    console_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)  # anything but file: and data: (never loaded)
    images: int = 0
    broken_images: int = 0  # not decoded (naturalWidth 0)
    counts: dict[str, int] = field(default_factory=dict)  # CSS selector -> number of matching elements


def find_chromium() -> Path:
    """The Chromium to drive: $GOTR1_CHROMIUM, else the first Chromium on PATH."""
    override = os.environ.get("GOTR1_CHROMIUM")
    if override:
        if not Path(override).is_file():
            raise BrowserUnavailable(f"GOTR1_CHROMIUM={override} is not a file")
        return Path(override)
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise BrowserUnavailable(
        "no Chromium found: install it (Debian: apt-get install chromium) or set GOTR1_CHROMIUM to its path"
    )


def screenshot(
    html: Path,
    png: Path,
    width: int = 1280,
    *,
    height: int = 900,
    full_page: bool = True,
    selectors: Sequence[str] = (),
) -> PageReport:
    """Render ``html`` in headless Chromium with the network cut off and save a screenshot to ``png``.

    Any request other than ``file:``/``data:`` is blocked and reported, so a page that would fetch
    something shows up in ``blocked_requests`` instead of silently working online only. ``selectors``
    are counted in the rendered DOM (for checks such as table rows).
    """
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import Route, sync_playwright
    except ImportError:
        raise BrowserUnavailable(
            "the playwright package is missing: pip install playwright "
            "(its browser download is not needed; a system Chromium is used)"
        ) from None
    executable = find_chromium()
    html, png = Path(html).resolve(), Path(png)
    if not html.is_file():
        raise FileNotFoundError(f"{html}: no such page")
    png.parent.mkdir(parents=True, exist_ok=True)
    report = PageReport(png=png, title="")

    def route(request_route: Route) -> None:
        url = request_route.request.url
        if url.startswith(("file:", "data:")):
            request_route.continue_()
        else:
            report.blocked_requests.append(url)
            request_route.abort()

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(executable), headless=True, args=["--disable-dev-shm-usage", "--disable-gpu"]
            )
            try:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.on("console", lambda m: report.console_errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: report.console_errors.append(str(e)))
                page.route("**/*", route)
                page.goto(html.as_uri(), wait_until="load")
                report.title = page.title()
                report.images, report.broken_images = page.evaluate(
                    "() => [document.images.length,"
                    " Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length]"
                )
                report.counts = {s: page.locator(s).count() for s in selectors}
                page.screenshot(path=str(png), full_page=full_page)
            finally:
                browser.close()
    except PlaywrightError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BrowserUnavailable(f"Chromium at {executable} could not render {html.name}: {first}") from None
    log.info(
        "screenshot of %s -> %s (%d images, %d console errors)", html, png, report.images, len(report.console_errors)
    )
    return report
