"""Why a region edit misses a colour its source does not have: the shapes world's VQ keeps colour in every token.

Reads a `gotr1 eval shapes-edit` run and, for the region edits of each kind whose source image satisfies its own
prompt, decodes three token grids and asks the oracle whether the edited prompt holds:
- `full`: the full re-render's tokens, decoded whole (the baseline);
- `full inside, source outside`: the same re-render's tokens in the edit's mask, the source's everywhere else,
  i.e. what a region edit would give if it sampled exactly what the re-render sampled;
- `region`: the region edit's own tokens (the source's outside the mask), as `gotr1 edit` decodes them.
If `full inside, source outside` falls to `region`, the loss is in decoding, not sampling: the VQ decoder reads a
cell's colour from the tokens around it. The corner tokens of one-colour scenes (background far from the object)
are listed per colour: they differ by the colour of an object they do not touch.

    python benchmarks/edit_context.py RUN_DIR [--kinds recolour,add,count]
"""

from __future__ import annotations

import argparse
import json
import platform
from collections import Counter, defaultdict
from pathlib import Path

import torch
from PIL import Image

from gotr1.model.sampler import tokens_to_uint8
from gotr1.models import load_model
from gotr1.worlds.shapes.grammar import Prompt
from gotr1.worlds.shapes.rewards import all_constraints_hold
from gotr1.worlds.shapes.vocabulary import Meaning

GRIDS = ("full", "full inside, source outside", "region")


def _prompt(meta: dict, before: bool) -> Prompt:
    prefix = "source_" if before else ""
    return Prompt(meta[f"{prefix}prompt"], Meaning.from_dict(meta[f"{prefix}meaning"]))


def decode_check(bundle, run: Path, kind: str) -> tuple[dict[str, float], int]:
    """Success of each grid over the kind's region edits whose source is right."""
    wins: dict[str, list[bool]] = {grid: [] for grid in GRIDS}
    for path in sorted((run / kind / "region" / "plans").glob("*.json")):
        record = json.loads(path.read_text())
        full = json.loads((run / kind / "full" / "plans" / path.name).read_text())
        with Image.open(run / record["source_image"]) as picture:
            if not all_constraints_hold(_prompt(record["metadata"], True), picture.convert("RGB")):
                continue
        mask, source = torch.tensor(record["edit_mask"]), torch.tensor(record["source_image_tokens"])
        redrawn, edited = torch.tensor(full["image_tokens"][0]), torch.tensor(record["image_tokens"][0])
        grids = torch.stack([redrawn, torch.where(mask, redrawn, source), edited])
        with torch.inference_mode():  # decoded as the sampler decodes
            images = [Image.fromarray(a) for a in tokens_to_uint8(bundle.model.decode_image_tokens(grids))]
        asked = _prompt(record["metadata"], False)
        for grid, image in zip(GRIDS, images):
            wins[grid].append(all_constraints_hold(asked, image))
    n = len(wins["full"])
    return {grid: sum(won) / max(1, n) for grid, won in wins.items()}, n


def corner_tokens(run: Path) -> dict[str, Counter]:
    corners: dict[str, Counter] = defaultdict(Counter)
    for path in sorted(run.glob("*/full/plans/*.json")):
        record = json.loads(path.read_text())
        colours = {group["color"] for group in record["metadata"]["source_meaning"]["groups"]}
        if len(colours) == 1:
            tokens, colour = record["source_image_tokens"], colours.pop()
            side = int(len(tokens) ** 0.5)
            for cell in (0, side - 1, side * (side - 1), side * side - 1):
                corners[colour][tokens[cell]] += 1
    return corners


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `gotr1 eval shapes-edit` run folder (default model)")
    parser.add_argument("--kinds", default="recolour,add,count")
    args = parser.parse_args()
    bundle = load_model(None)
    print(f"decoded on {platform.machine()}, {torch.get_num_threads()} threads; region edits whose source is right")
    print(f"| edit | {' | '.join(GRIDS)} | edits |\n|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        success, n = decode_check(bundle, args.run, kind)
        print(f"| {kind} | {' | '.join(f'{success[grid]:.2f}' for grid in GRIDS)} | {n} |")
    print("corner tokens of one-colour scenes, the 4 most common per colour:")
    for colour, counts in sorted(corner_tokens(args.run).items()):
        print(f"  {colour:8s} {[token for token, _ in counts.most_common(4)]}  ({sum(counts.values())} corners)")


if __name__ == "__main__":
    main()
