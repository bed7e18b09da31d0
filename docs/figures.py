"""The README's first picture, drawn from the shipped models: `python docs/figures.py`; with `--run DIR` (a
`gotr1 train grpo` output folder) also the training curve of docs/training.md; with `--edits` the editing
figure of docs/editing.md.

The README's own prompt and `gotr1 generate`'s defaults (CFG from the checkpoint, temperature 1), seeds
1..8, once with the model before GRPO (shapes-sft) and once with the default model (shapes-grpo): each
image with the plan its chain made drawn over it, so right and wrong plans are visible at a glance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

from gotr1.layout import sample_grid
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.models import load_model
from gotr1.plot import line_chart

PROMPT = "a red circle to the left of a blue square"


def model_row(name: str, seeds: range) -> Image.Image:
    bundle = load_model(name, device="cpu")
    sampler = TwoPhaseSampler(bundle)
    config = SamplingConfig(cfg_weight=bundle.preferred_cfg_weight())
    gens = [sampler.generate([PROMPT], config, seeds=[seed])[0] for seed in seeds]
    captions = [f"{name}, seed {seed}" for seed in seeds]
    return sample_grid([g.images[0] for g in gens], [g.objects for g in gens], captions, columns=len(gens), tile=160)


def training_curve(run: Path, window: int = 10) -> Image.Image:
    """Each reward component and the total as `window`-step means, with the run's held-out accuracy."""
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evaluations = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines() if line.strip()]
    series = {}
    for key, label in (
        ("reward_mean", "reward (R_PI x (R_sem + R_spa) x R_RI)"),
        *((f"{c}_mean", c) for c in ("r_sem", "r_spa", "r_ri", "r_pi")),
    ):
        points = [(m["step"], m.get(key)) for m in metrics]
        means = []
        for start in range(0, len(points), window):
            values = [y for _, y in points[start : start + window] if y is not None]
            if values:
                means.append((points[start][0] + window / 2, sum(values) / len(values)))
        series[label] = means
    series["held-out accuracy (400 prompts)"] = [(e["step"], e["accuracy"]) for e in evaluations]
    return line_chart(
        series, title="GRPO in the shapes world (shapes-grpo)", x_label="step", y_label="value", size=(760, 420)
    )


def edit_sheet(seeds: range, margins=(0, 2)) -> Image.Image:
    """Moving the circle up, per seed: the source, then for each margin the re-sampled cells over the source and
    the region-preserving edit, then the full re-render of the edited plan with the same seed."""
    from gotr1.layout import mask_overlay
    from gotr1.model.editing import EditSource, edit

    sampler = TwoPhaseSampler(load_model("shapes-grpo", device="cpu"))
    tiles, captions = [], []
    for seed in seeds:
        gen = sampler.generate([PROMPT], SamplingConfig(), seeds=[seed])[0]
        circle = gen.objects[0].box
        up = f"({circle.x1},{max(0, circle.y1 - 300)}),({circle.x2},{max(0, circle.y1 - 300) + circle.height})"
        chain = gen.chain.replace(f"({circle.x1},{circle.y1}),({circle.x2},{circle.y2})", up)
        tiles.append(gen.images[0].resize((160, 160), 0))
        captions.append(f"seed {seed}: source")
        for margin in margins:
            result = edit(sampler, EditSource.from_generation(gen), chain=chain, seed=seed, margin=margin)
            tiles.append(mask_overlay(gen.images[0], result.plan.mask.reshape(8, 8), min_side=160))
            tiles.append(result.generations[0].images[0].resize((160, 160), 0))
            captions += [f"re-sampled, margin {margin}", f"edit, margin {margin}"]
        full = sampler.generate([PROMPT], SamplingConfig(), chains=[[result.plan.chain]], seeds=[seed])[0]
        tiles.append(full.images[0].resize((160, 160), 0))
        captions.append("full re-render")
    return sample_grid(
        tiles, [[] for _ in tiles], captions, columns=len(tiles) // len(seeds), tile=160, limit=len(tiles)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "default_model_samples.png"))
    parser.add_argument("--run", default=None, help="a gotr1 train grpo output folder: also draw its curve")
    parser.add_argument("--edits", action="store_true", help="also draw docs/edit_example.png")
    args = parser.parse_args()
    if args.edits:
        edits = Path(__file__).parent / "edit_example.png"
        edit_sheet(range(1, 4)).save(edits)
        print(f"wrote {edits}")
    if args.run:
        curve = Path(__file__).parent / "shapes_grpo_curve.png"
        training_curve(Path(args.run)).save(curve)
        print(f"wrote {curve}")
    rows = [model_row(name, range(1, 9)) for name in ("shapes-sft", "shapes-grpo")]
    title = 24
    sheet = Image.new("RGB", (rows[0].width, title + sum(r.height for r in rows)), "white")
    ImageDraw.Draw(sheet).text((6, 5), f'"{PROMPT}" - before GRPO (top) and the default model (bottom)', fill="black")
    y = title
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
