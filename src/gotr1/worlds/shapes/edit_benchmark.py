"""`gotr1 eval shapes-edit`: region-preserving edits against full re-renders, in the shapes world, scored exactly.

Each task starts from a held-out prompt: the world lays its scene out and writes its chain, and the model under
test draws the source image from that chain. The task then edits the scene (move an object to the other side of
its anchor, recolour, resize, add or remove an object, add one to a group) and writes the edited chain and
prompt. Every task is drawn three times with the same seed: as a region-preserving edit (only the token cells
under the changed boxes, dilated by the margin, are re-sampled; `model.editing`), as a redrawn edit (every token
sampled from the edited plan, the source's pixels kept outside that mask) and as today's full re-render of the
edited plan. Scores per category (`<kind>/<method>`):
- success: every constraint of the edited prompt holds in the new image (the oracle);
- objects kept: each object the edit did not name is still there, same colour and shape, box IoU >= 0.8 with
  where it was in the source image;
- pixels changed outside the mask, and inside the untouched objects (a pixel "changed" when its RGB moved by
  more than 48 in sum);
- success where the source is right: a region edit keeps whatever the source drew wrong outside its mask (a
  full re-render draws it all again), so success is also given over the tasks whose source image satisfies its
  own prompt: what the edit itself achieves.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...chain import Box
from ...eval.benchmark import Benchmark, BenchmarkError, EditRequest, ScorerOptions
from ...eval.records import EvalImage, ImageJob, ImageScore, Scorer
from ...model.edit_masks import DEFAULT_EDIT_MARGIN, plan_edit_mask
from ...registry import Suite
from ...samples import png_bytes
from .benchmark import read_category
from .declaration import EDIT_DECLARATION
from .grammar import Prompt, ShapesGrammar, describe
from .grounder import ground_objects
from .render import (
    GAP,
    SIZE_RANGES,
    PlacedObject,
    Scene,
    boxes_overlap,
    relations_hold,
    try_layout_scene,
    write_chain,
)
from .rewards import all_constraints_hold
from .rl import EVAL_RESERVE
from .vocabulary import COLORS, INVERSE, MAX_OBJECTS, SHAPES, Group, Meaning, relation_holds

METHODS = ("region", "redraw", "full")
EDIT_SEED_OFFSET = 500_009  # an edit's seed: its source's + this (both methods the same)
CHANGED = 48  # a pixel changed when its RGB moved by more than this (summed over channels)
# What the summary adds per category: [key, column header]
COLUMNS = (
    ("success_source_right", "success, source right"),
    ("objects_kept", "objects kept"),
    ("pixels_changed_outside", "px changed outside mask"),
    ("untouched_pixels_changed", "px changed in kept objects"),
)


def _grid(box, size: int) -> tuple[int, int, int, int]:
    b = Box.from_pixels(*box, size, size)
    return (b.x1, b.y1, b.x2, b.y2)


def _fits(box, others, size: int) -> bool:
    gap = max(1, round(GAP * size))
    inside = box[0] >= 0 and box[1] >= 0 and box[2] <= size and box[3] <= size
    return inside and not any(boxes_overlap(box, o.box, gap) for o in others)


def _free_spot(side: int, others, scene_size: int, rng: random.Random, accept=lambda box: True):
    for _ in range(400):
        x, y = rng.randint(0, scene_size - side), rng.randint(0, scene_size - side)
        box = (x, y, x + side, y + side)
        if _fits(box, others, scene_size) and accept(box):
            return box
    return None


def _single(scene: Scene, group: int) -> PlacedObject | None:
    members = [o for o in scene.objects if o.group == group]
    return members[0] if len(members) == 1 else None


Edited = tuple[Scene, list[PlacedObject]]  # the edited scene, and the source objects the edit names


def _resorted(objects) -> list[PlacedObject]:
    return sorted(objects, key=lambda o: (o.group, o.box))


def _move(scene: Scene, rng: random.Random) -> Edited | None:
    """The subject of a one-to-one relation goes to its anchor's other side."""
    meaning, size = scene.meaning, scene.image_size
    for r_index, rel in enumerate(meaning.relations):
        subject, anchor = _single(scene, rel.subject), _single(scene, rel.object)
        if subject is None or anchor is None:
            continue
        if sum(rel.subject in (r.subject, r.object) for r in meaning.relations) > 1:
            continue  # other relations would pin it
        flipped = replace(rel, relation=INVERSE[rel.relation])
        relations = tuple(flipped if i == r_index else r for i, r in enumerate(meaning.relations))
        others = [o for o in scene.objects if o is not subject]

        def holds(box, anchor=anchor, flipped=flipped):
            return relation_holds(flipped.relation, _grid(box, size), _grid(anchor.box, size))

        box = _free_spot(subject.box[2] - subject.box[0], others, size, rng, holds)
        if box is not None:
            moved = replace(subject, box=box)
            return Scene(replace(meaning, relations=relations), _resorted([*others, moved]), size), [subject]
    return None


def _recolour(scene: Scene, rng: random.Random) -> Edited | None:
    """A single object takes a colour no object of the scene has."""
    groups = list(scene.meaning.groups)
    for gi, group in enumerate(groups):
        target = _single(scene, gi)
        if target is None:
            continue
        color = next(c for c in COLORS if c not in {g.color for g in groups})
        groups[gi] = replace(group, color=color)
        objects = [replace(o, color=color) if o is target else o for o in scene.objects]
        return Scene(replace(scene.meaning, groups=tuple(groups)), objects, scene.image_size), [target]
    return None


def _resize(scene: Scene, rng: random.Random) -> Edited | None:
    """A single object becomes large (or small) about its centre, where it still fits and its relations hold."""
    size = scene.image_size
    for gi in range(len(scene.meaning.groups)):
        target = _single(scene, gi)
        if target is None:
            continue
        new_size = "small" if target.size == "large" else "large"
        side = round(sum(SIZE_RANGES[new_size]) / 2 * size)
        cx, cy = (target.box[0] + target.box[2]) // 2, (target.box[1] + target.box[3]) // 2
        box = (cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side)
        others = [o for o in scene.objects if o is not target]
        resized = replace(target, size=new_size, box=box)
        groups = tuple(replace(g, size=new_size) if i == gi else g for i, g in enumerate(scene.meaning.groups))
        meaning = replace(scene.meaning, groups=groups)
        if _fits(box, others, size) and relations_hold(meaning, [*others, resized], size):
            return Scene(meaning, _resorted([*others, resized]), size), [target]
    return None


def _add(scene: Scene, rng: random.Random) -> Edited | None:
    """A small object of a new colour and shape, in free space."""
    meaning, size = scene.meaning, scene.image_size
    if meaning.num_objects >= MAX_OBJECTS:
        return None
    color = next(c for c in COLORS if c not in {g.color for g in meaning.groups})
    shape = SHAPES[rng.randrange(len(SHAPES))]
    box = _free_spot(round(sum(SIZE_RANGES["small"]) / 2 * size), scene.objects, size, rng)
    if box is None:
        return None
    new = PlacedObject(color, shape, "small", len(meaning.groups), box)
    added = replace(meaning, groups=(*meaning.groups, Group(color, shape, 1, "small")))
    return Scene(added, [*scene.objects, new], size), []


def _remove(scene: Scene, rng: random.Random) -> Edited | None:
    """The last group goes, with the relations that name it."""
    groups = scene.meaning.groups
    if len(groups) < 2:
        return None
    gone = len(groups) - 1
    relations = tuple(r for r in scene.meaning.relations if gone not in (r.subject, r.object))
    kept = [o for o in scene.objects if o.group != gone]
    return Scene(Meaning(groups[:gone], relations), kept, scene.image_size), [
        o for o in scene.objects if o.group == gone
    ]


def _count(scene: Scene, rng: random.Random) -> Edited | None:
    """One more object in a group no relation names, in free space."""
    meaning, size = scene.meaning, scene.image_size
    related = {i for r in meaning.relations for i in (r.subject, r.object)}
    for gi in range(len(meaning.groups)):
        if gi in related or meaning.num_objects >= MAX_OBJECTS:
            continue
        sibling = next(o for o in scene.objects if o.group == gi)
        box = _free_spot(sibling.box[2] - sibling.box[0], scene.objects, size, rng)
        if box is None:
            continue
        groups = tuple(replace(g, count=g.count + 1) if i == gi else g for i, g in enumerate(meaning.groups))
        objects = _resorted([*scene.objects, replace(sibling, box=box)])
        return Scene(replace(meaning, groups=groups), objects, size), []
    return None


EDITS: dict[str, Callable[[Scene, random.Random], Edited | None]] = {
    "move": _move,
    "recolour": _recolour,
    "resize": _resize,
    "add": _add,
    "remove": _remove,
    "count": _count,
}
KINDS = tuple(EDITS)


def _as_dict(obj: PlacedObject, size: int) -> dict[str, Any]:
    b = obj.grid_box(size)
    return {"color": obj.color, "shape": obj.shape, "box": [b.x1, b.y1, b.x2, b.y2]}


def edit_tasks(grammar: ShapesGrammar, kind: str, limit: int) -> list[dict[str, Any]]:
    """The first `limit` tasks of a kind, from the held-out prompts in order (deterministic)."""
    tasks = []
    for index, prompt in enumerate(grammar.prompts("heldout", EVAL_RESERVE)):
        rng = random.Random(index * 7919 + list(EDITS).index(kind))
        scene = try_layout_scene(prompt.meaning, rng)
        edited = EDITS[kind](scene, rng) if scene is not None else None
        if edited is None:
            continue
        new_scene, named = edited
        untouched = [o for o in scene.objects if o not in named]
        tasks.append(
            {
                "kind": kind,
                "source_prompt": prompt.text,
                "source_meaning": prompt.meaning.to_dict(),
                "source_chain": scene.chain(),
                "source_seed": index,
                "meaning": new_scene.meaning.to_dict(),
                "prompt": describe(new_scene.meaning, rng),
                "chain": write_chain(new_scene),
                "untouched": [_as_dict(o, scene.image_size) for o in untouched],
            }
        )
        if len(tasks) == limit:
            break
    return tasks


class ShapesEditBenchmark(Benchmark):
    name = "shapes-edit"
    categories = tuple(f"{kind}/{method}" for kind in EDITS for method in METHODS)
    default_categories = categories
    default_images_per_prompt = 1
    default_scorer = "shapes-edit"
    pass_mark = 0.5

    def __init__(self, grammar_seed: int = 0) -> None:
        self.grammar = ShapesGrammar(grammar_seed)
        self._sources: dict[tuple[str, int], tuple[torch.Tensor, bytes]] = {}

    def jobs(
        self, categories: Sequence[str], images_per_prompt: int, limit: int | None = None, **options: Any
    ) -> list[ImageJob]:
        if images_per_prompt != 1:
            raise BenchmarkError("--images-per-prompt: each shapes-edit task is drawn once per method")
        margin = options.get("edit_margin", DEFAULT_EDIT_MARGIN)
        limit = 50 if limit is None else limit
        jobs, tasks = [], {}
        for category in self.check_categories(categories):
            kind, method = category.split("/")
            tasks.setdefault(kind, edit_tasks(self.grammar, kind, limit))
            for j, task in enumerate(tasks[kind]):
                jobs.append(
                    ImageJob(
                        category=category,
                        prompt=task["prompt"],
                        prompt_index=j,
                        image_index=0,
                        seed=task["source_seed"] + EDIT_SEED_OFFSET,
                        path=f"{category}/samples/{j:06d}.png",
                        record=f"{category}/plans/{j:06d}.json",
                        metadata=task | {"method": method, "margin": margin},
                    )
                )
        return jobs

    def edit_requests(self, sampler, jobs: Sequence[ImageJob], sampling) -> list[EditRequest]:
        """Each job's source drawn by the model from the source chain (once per chain and seed), and its mask:
        the changed boxes' cells for a region or redrawn edit, every cell for a full re-render."""
        wanted = {}
        for job in jobs:
            key = (job.metadata["source_chain"], job.metadata["source_seed"])
            if key not in self._sources:
                wanted[key] = job.metadata["source_prompt"]
        if wanted:
            keys = list(wanted)
            drawn = sampler.generate(
                [wanted[k] for k in keys], sampling, chains=[[k[0]] for k in keys], seeds=[k[1] for k in keys]
            )
            for key, gen in zip(keys, drawn):
                self._sources[key] = (gen.image_ids[0], png_bytes(gen.images[0]))
        side = int(sampler.bundle.num_image_tokens**0.5)
        requests = []
        for job in jobs:
            meta = job.metadata
            source_ids, png = self._sources[(meta["source_chain"], meta["source_seed"])]
            if meta["method"] != "full":
                mask = plan_edit_mask(meta["source_chain"], meta["chain"], side, meta["margin"])
            else:
                mask = torch.ones(side * side, dtype=torch.bool)
            source_path = f"{job.category}/sources/{Path(job.path).name}"
            requests.append(
                EditRequest(
                    meta["chain"],
                    source_ids,
                    mask,
                    {source_path: png},
                    redraw=meta["method"] == "redraw",
                    record={
                        "source_image": source_path,
                        "source_image_tokens": source_ids.tolist(),
                        "edit_mask": mask.tolist(),
                    },
                )
            )
        return requests

    def read_back(self, run_dir: Path, categories: Sequence[str]) -> dict[str, list[EvalImage]]:
        def has_task(record) -> bool:
            return bool(record) and isinstance(record.get("metadata"), dict) and "source_image" in record

        return {
            category: read_category(run_dir, category, has_task, "without its edit task")
            for category in self.check_categories(categories)
        }

    def scorers(self) -> Mapping[str, Callable[[ScorerOptions], Scorer]]:
        return {"shapes-edit": lambda options: EditScorer()}

    def summarize(self, scores: Sequence[ImageScore]) -> dict[str, Any]:
        """The usual summary (score = edit success), and per category success where the source was right and
        the preservation means."""
        summary = super().summarize(scores)
        for name, category in summary["categories"].items():
            mine = [s for s in scores if s.category == name and s.score is not None]
            for key, _ in COLUMNS:
                values = [s.details[key] for s in mine if s.details.get(key) is not None]
                category[key] = fmean(values) if values else None
        summary["columns"] = [list(column) for column in COLUMNS]
        return summary


class EditScorer:
    """Edit success by the oracle; preservation of what the edit did not name, from the pixels."""

    name = "shapes-edit"
    notes: list[str] = []

    def score(self, category: str, images: Sequence[EvalImage], out_dir: Path) -> list[ImageScore]:
        return [self._one(category, image) for image in images]

    def _one(self, category: str, image: EvalImage) -> ImageScore:
        meta, record = image.job.metadata, image.record
        new = image.image()
        with Image.open(image.root / record["source_image"]) as picture:
            source = picture.convert("RGB")
        prompt = Prompt(image.prompt, Meaning.from_dict(meta["meaning"]))
        success = all_constraints_hold(prompt, new)
        asked_before = Prompt(meta["source_prompt"], Meaning.from_dict(meta["source_meaning"]))
        source_right = all_constraints_hold(asked_before, source)
        size = new.size[0]
        changed = np.abs(np.asarray(new, dtype=int) - np.asarray(source, dtype=int)).sum(-1) > CHANGED
        side = int(len(record["edit_mask"]) ** 0.5)
        cells = plan_edit_mask(meta["source_chain"], meta["chain"], side, meta["margin"]).reshape(side, side)
        pixels = size // side
        inside = cells.repeat_interleave(pixels, 0).repeat_interleave(pixels, 1).numpy()
        found_before, found_after = ground_objects(source), ground_objects(new)
        kept, counted, untouched_px = 0, 0, []
        for obj in meta["untouched"]:
            planned = Box(*obj["box"])
            before = _best(found_before, obj["color"], obj["shape"], planned)
            if before is None or before.box.iou(planned) < 0.5:
                continue  # the source never drew it: nothing to keep
            counted += 1
            after = _best(found_after, obj["color"], obj["shape"], before.box)
            kept += after is not None and after.box.iou(before.box) >= 0.8
            x1, y1, x2, y2 = (round(v) for v in before.box.to_pixels(size, size))
            untouched_px.append(changed[y1:y2, x1:x2].mean())
        return ImageScore(
            path=image.job.path,
            category=category,
            prompt=image.prompt,
            score=1.0 if success else 0.0,
            plan_score=1.0,  # the edited plan is the world's own, right by construction: a failure is the drawing's
            record=image.job.record,
            details={
                "source_right": source_right,
                "success_source_right": (1.0 if success else 0.0) if source_right else None,
                "objects_kept": kept / counted if counted else None,
                "pixels_changed_outside": float(changed[~inside].mean()) if (~inside).any() else None,
                "untouched_pixels_changed": float(fmean(untouched_px)) if untouched_px else None,
                "mask_cells": int(cells.sum()),
            },
        )


def _best(found, color: str, shape: str, near: Box):
    candidates = [o for o in found if o.color == color and o.shape == shape]
    return max(candidates, key=lambda o: o.box.iou(near), default=None)


SUITE = Suite(
    name=EDIT_DECLARATION.name,
    description=EDIT_DECLARATION.description,
    benchmark=ShapesEditBenchmark,
)
