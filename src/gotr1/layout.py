"""Drawing a chain's layout plan: named boxes on a blank canvas or over an image.

The blank-canvas drawing is what a VLM judge sees when it scores whether a plan
matches the prompt; the overlay is for people checking a generated image
against its plan. Each name keeps one colour everywhere, so the same object is
easy to follow across plans and images.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from gotr1.chain import Box, PlannedObject

__all__ = ["PALETTE", "draw_plan", "draw_plan_over_image", "object_color"]

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Saturated colours that stay distinct from each other and legible on white.
PALETTE: tuple[RGB, ...] = (
    (230, 25, 75),  # red
    (60, 180, 75),  # green
    (0, 130, 200),  # blue
    (245, 130, 48),  # orange
    (145, 30, 180),  # purple
    (66, 212, 244),  # cyan
    (240, 50, 230),  # magenta
    (70, 153, 144),  # teal
    (154, 99, 36),  # brown
    (128, 0, 0),  # maroon
    (128, 128, 0),  # olive
    (0, 0, 117),  # navy
)

_WHITE: RGB = (255, 255, 255)
_BLACK: RGB = (0, 0, 0)


def object_color(name: str) -> RGB:
    """The palette colour for ``name``, the same in every process and image.

    Case and spacing are ignored, so "Teal vase" and "teal  vase" match. CRC32
    rather than ``hash()``, which is salted per process.
    """
    key = " ".join(name.split()).casefold()
    return PALETTE[zlib.crc32(key.encode("utf-8")) % len(PALETTE)]


def draw_plan(
    objects: Sequence[PlannedObject],
    size: int | tuple[int, int] = 384,
    *,
    background: Image.Image | None = None,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """Draw each object's box with its name on a filled label at the top-left corner.

    On a white ``size`` canvas, or over a copy of ``background`` at the
    background's own size (``size`` is then unused). Objects without a box are
    skipped. Labels are kept inside the canvas: above the box when there is
    room, otherwise just inside its top edge.
    """
    if background is not None:
        canvas = background.convert("RGB")  # always a new image, never the caller's
    else:
        width, height = (size, size) if isinstance(size, int) else size
        canvas = Image.new("RGB", (width, height), _WHITE)
    short_side = min(canvas.size)
    line_width = line_width if line_width is not None else max(2, round(short_side / 128))
    font = _load_font(font_size if font_size is not None else max(10, round(short_side / 24)))

    placed = [(obj.name, _pixel_rectangle(obj.box, canvas.size)) for obj in objects if obj.box is not None]
    draw = ImageDraw.Draw(canvas)
    # All boxes first, then all labels, so no outline is drawn across a name.
    for name, rectangle in placed:
        draw.rectangle(rectangle, outline=object_color(name), width=line_width)
    for name, rectangle in placed:
        _draw_label(draw, name, rectangle, canvas.size, font)
    return canvas


def draw_plan_over_image(
    image: Image.Image,
    objects: Sequence[PlannedObject],
    *,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """Overlay the plan on ``image`` (a copy; the original is left as it is)."""
    return draw_plan(objects, background=image, line_width=line_width, font_size=font_size)


def plan_overlay(image: Image.Image, objects: Sequence[PlannedObject], min_side: int = 384) -> Image.Image:
    """The plan over the image, small images enlarged (nearest) first so the labels stay legible."""
    scale = max(1, -(-min_side // image.width))
    shown = image.resize((image.width * scale, image.height * scale), resample=0) if scale > 1 else image
    return draw_plan_over_image(shown, objects)


def mask_overlay(image: Image.Image, cells, min_side: int = 384, color: RGB = (255, 0, 170)) -> Image.Image:
    """An edit's re-sampled token cells (`cells`: [rows, cols] bool) tinted over the image, small images enlarged
    (nearest) first; the kept cells show the image as it is."""
    scale = max(1, -(-min_side // image.width))
    shown = image.convert("RGB").resize((image.width * scale, image.height * scale), resample=0)
    rows, cols = len(cells), len(cells[0])
    tint = Image.new("L", (cols, rows))
    tint.putdata([110 if bool(cell) else 0 for row in cells for cell in row])
    tint = tint.resize(shown.size, resample=0)
    return Image.composite(Image.new("RGB", shown.size, color), shown, tint)


def _load_font(size: int) -> Font:
    """Pillow's scalable default font; its fixed bitmap font where FreeType is missing."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _pixel_rectangle(box: Box, canvas_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Inclusive pixel corners of ``box``, kept on the canvas and never inverted."""
    width, height = canvas_size
    x1, y1, x2, y2 = box.clamped().ordered().to_pixels(width, height)
    left = min(round(x1), width - 1)
    top = min(round(y1), height - 1)
    # The grid's right/bottom edges are exclusive; Pillow's rectangle corners are inclusive.
    right = min(max(round(x2) - 1, left), width - 1)
    bottom = min(max(round(y2) - 1, top), height - 1)
    return left, top, right, bottom


def _draw_label(
    draw: ImageDraw.ImageDraw,
    name: str,
    rectangle: tuple[int, int, int, int],
    canvas_size: tuple[int, int],
    font: Font,
) -> None:
    canvas_width, canvas_height = canvas_size
    padding = max(2, round(getattr(font, "size", 10) / 6))
    text = _fit_text(draw, name, font, canvas_width - 2 * padding)
    ink_left, ink_top, ink_right, ink_bottom = draw.textbbox((0, 0), text, font=font)
    label_width = ink_right - ink_left + 2 * padding
    label_height = ink_bottom - ink_top + 2 * padding

    box_left, box_top = rectangle[0], rectangle[1]
    top = box_top - label_height if box_top >= label_height else box_top
    top = max(0, min(top, canvas_height - label_height))
    left = max(0, min(box_left, canvas_width - label_width))

    fill = object_color(name)
    draw.rectangle((left, top, left + label_width - 1, top + label_height - 1), fill=fill)
    draw.text(
        (left + padding - ink_left, top + padding - ink_top),
        text,
        font=font,
        fill=_readable_text_color(fill),
    )


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Font, max_width: int) -> str:
    """``text``, cut short with an ellipsis if it would be wider than ``max_width``."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while len(text) > 1 and draw.textlength(text + "...", font=font) > max_width:
        text = text[:-1]
    return text.rstrip() + "..."


def _readable_text_color(fill: RGB) -> RGB:
    """Black on light labels, white on dark ones (ITU-R BT.601 luma)."""
    red, green, blue = fill
    return _BLACK if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else _WHITE


def sample_grid(
    images: Sequence[Image.Image],
    plans: Sequence[Sequence[PlannedObject]],
    captions: Sequence[str],
    *,
    columns: int = 4,
    tile: int = 192,
    limit: int = 16,
) -> Image.Image:
    """A contact sheet for people: each image enlarged, its plan drawn over it, a caption below."""
    shown = list(zip(images, plans, captions))[:limit]
    rows = max(1, -(-len(shown) // columns))
    caption_height = 44
    grid = Image.new("RGB", (columns * tile, rows * (tile + caption_height)), _WHITE)
    draw = ImageDraw.Draw(grid)
    font = _load_font(11)
    for i, (image, plan, caption) in enumerate(shown):
        x, y = (i % columns) * tile, (i // columns) * (tile + caption_height)
        enlarged = image.convert("RGB").resize((tile, tile), Image.NEAREST)
        grid.paste(draw_plan_over_image(enlarged, plan, font_size=10, line_width=2), (x, y))
        lines = [""]
        for word in caption.split():
            if draw.textlength((lines[-1] + " " + word).strip(), font=font) > tile - 6:
                lines.append("")
            lines[-1] = (lines[-1] + " " + word).strip()
        draw.text((x + 3, y + tile + 2), "\n".join(lines[:3]), fill=_BLACK, font=font)
    return grid
