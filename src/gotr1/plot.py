"""Line charts of training curves (matplotlib, drawn off-screen) for runs, benchmarks and the README."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image


def line_chart(
    series: dict[str, Sequence[tuple[float, float | None]]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    size: tuple[int, int] = (640, 400),
) -> Image.Image:
    """Named (x, y) series on one pair of axes with a legend, as an image (``.save(path)`` it); points whose
    y is None are left out."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    dpi = 100
    figure = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    drawn = 0
    for name, points in series.items():
        kept = [(x, y) for x, y in points if y is not None]
        if kept:
            axes.plot([x for x, _ in kept], [y for _, y in kept], label=name, linewidth=1.6)
            drawn += 1
    if not drawn:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.3)
    if drawn:
        axes.legend(fontsize="small", frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")
