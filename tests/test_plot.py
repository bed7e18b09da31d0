"""Training-curve charts are drawn with matplotlib, off-screen, as images of the asked size."""

import numpy as np

from gotr1.plot import line_chart


def test_line_chart_draws_each_series_and_skips_missing_points():
    image = line_chart(
        {"reward": [(1, 0.2), (2, None), (3, 0.9)], "kl": [(1, 0.1), (3, 0.3)]},
        title="GRPO reward",
        x_label="step",
        y_label="mean reward",
        size=(500, 300),
    )
    assert image.size == (500, 300) and image.mode == "RGB"
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    blue = ((pixels[:, 2] > 150) & (pixels[:, 0] < 80)).sum()  # matplotlib's first colour (tab:blue)
    orange = ((pixels[:, 0] > 200) & (pixels[:, 1] > 100) & (pixels[:, 1] < 160) & (pixels[:, 2] < 60)).sum()
    assert blue > 100 and orange > 100  # both lines are on the chart


def test_an_empty_chart_says_so_instead_of_failing():
    assert line_chart({"reward": [(1, None)]}).size == (640, 400)
