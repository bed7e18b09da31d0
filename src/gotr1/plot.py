"""A dependency-free line chart (PIL) for training curves in reports and the README."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    size: tuple[int, int] = (640, 400),
) -> Image.Image:
    """Plot named (x, y) series with axes, ticks and a legend."""
    width, height = size
    left, right, top, bottom = 64, 16, 36 if (title or y_label) else 16, 48
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    points = [p for s in series.values() for p in s if p[1] is not None]
    if not points:
        draw.text((left, top), "no data", fill=(0, 0, 0), font=font)
        return image
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    if x1 == x0:
        x1 = x0 + 1
    pad = (y1 - y0) * 0.05 or 0.5
    y0, y1 = y0 - pad, y1 + pad

    def to_px(x, y):
        return (
            left + (x - x0) / (x1 - x0) * (width - left - right),
            height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom),
        )

    draw.rectangle((left, top, width - right, height - bottom), outline=(0, 0, 0))
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        _, py = to_px(x0, y)
        draw.line((left - 4, py, left, py), fill=(0, 0, 0))
        draw.line((left + 1, py, width - right - 1, py), fill=(235, 235, 235))
        draw.text((4, py - 7), f"{y:.2f}", fill=(0, 0, 0), font=font)
        x = x0 + (x1 - x0) * i / 4
        px, _ = to_px(x, y0)
        draw.line((px, height - bottom, px, height - bottom + 4), fill=(0, 0, 0))
        draw.text((px - 10, height - bottom + 6), f"{x:g}", fill=(0, 0, 0), font=font)
    for i, (name, pts) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        xy = [to_px(x, y) for x, y in pts if y is not None]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=2)
        for px, py in xy:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=color)
        x, y = left + 8, top + 6 + 16 * i
        draw.rectangle(draw.textbbox((x, y), name, font=font), fill=(255, 255, 255))
        draw.text((x, y), name, fill=color, font=font)
    heading = " | ".join(t for t in (title, f"y: {y_label}" if y_label else "") if t)
    if heading:
        draw.text((left, 10), heading, fill=(0, 0, 0), font=font)
    if x_label:
        draw.text(((width - left) // 2, height - 20), x_label, fill=(0, 0, 0), font=font)
    return image
