"""`gotr1 eval shapes-edit`: the edit tasks are right by construction (each edited scene, drawn exactly, satisfies its
edited prompt; the objects it keeps are where they were), and a small run samples, keeps the source's tokens
outside the mask and scores both methods."""

import json
import random

import pytest
import torch

from gotr1.cli import main
from gotr1.models import builtin_model
from gotr1.worlds.shapes.edit_benchmark import EDITS, METHODS, ShapesEditBenchmark, edit_tasks
from gotr1.worlds.shapes.grammar import Prompt, ShapesGrammar
from gotr1.worlds.shapes.render import try_layout_scene
from gotr1.worlds.shapes.rewards import all_constraints_hold
from gotr1.worlds.shapes.vocabulary import Meaning


@pytest.mark.parametrize("kind", list(EDITS))
def test_every_edit_task_is_true_of_its_own_scene(kind):
    grammar = ShapesGrammar()
    made = 0
    for index, prompt in enumerate(grammar.prompts("heldout", 60)):
        rng = random.Random(index)
        scene = try_layout_scene(prompt.meaning, rng)
        edited = EDITS[kind](scene, rng) if scene is not None else None
        if edited is None:
            continue
        new_scene, named = edited
        made += 1
        # the edited scene drawn exactly satisfies the edited meaning, and differs from the source's
        assert all_constraints_hold(Prompt("edited", new_scene.meaning), new_scene.image())
        assert new_scene.meaning != scene.meaning
        kept = [o for o in scene.objects if o not in named]
        assert all(o in new_scene.objects for o in kept)  # what the edit does not name stays as it was
    assert made >= 5


def test_tasks_are_deterministic_and_named_by_kind_and_method():
    grammar = ShapesGrammar()
    assert edit_tasks(grammar, "move", 3) == edit_tasks(ShapesGrammar(), "move", 3)
    bench = ShapesEditBenchmark()
    assert bench.categories == tuple(f"{k}/{m}" for k in EDITS for m in METHODS)
    jobs = bench.jobs(["move/region", "move/full"], 1, limit=2)
    region, full = jobs[:2], jobs[2:]
    assert [j.seed for j in region] == [j.seed for j in full]  # both methods draw with the same seed
    assert all(Meaning.from_dict(j.metadata["meaning"]) for j in jobs)


@pytest.mark.skipif(builtin_model() is None, reason="no shipped model")
def test_a_small_run_keeps_the_sources_tokens_outside_the_mask_and_scores_both_methods(tmp_path):
    from gotr1.model.edit_masks import plan_edit_mask

    out = tmp_path / "run"
    categories = "recolour/region,recolour/redraw,recolour/full,remove/region,remove/full"
    args = ["eval", "shapes-edit", "--limit", "3", "--categories", categories, "--out", str(out)]
    assert main([*args, "--scorer", "shapes-edit"]) == 0
    for n in range(3):
        record = json.loads((out / "recolour/region/plans" / f"{n:06d}.json").read_text())
        full = json.loads((out / "recolour/full/plans" / f"{n:06d}.json").read_text())
        meta = record["metadata"]
        mask = plan_edit_mask(meta["source_chain"], meta["chain"], 8, meta["margin"])
        assert (out / record["source_image"]).is_file() and (out / full["source_image"]).is_file()
        tokens, source_tokens = torch.tensor(record["image_tokens"][0]), torch.tensor(record["source_image_tokens"])
        assert 0 < int(mask.sum()) < 64 and record["edit_mask"] == mask.tolist()
        assert torch.equal(tokens[~mask], source_tokens[~mask])
        assert record["chain"] == meta["chain"] == full["chain"]
        assert full["edit_mask"] == [True] * 64 and full["source_image_tokens"] == record["source_image_tokens"]
        redrawn = json.loads((out / "recolour/redraw/plans" / f"{n:06d}.json").read_text())
        assert redrawn["redrawn"] and "image_tokens" not in redrawn and redrawn["edit_mask"] == record["edit_mask"]
    summary = json.loads((out / "results" / "shapes-edit.json").read_text())["summary"]["categories"]
    for name in categories.split(","):
        assert summary[name]["images"] == 3
        assert summary[name]["objects_kept"] is None or 0 <= summary[name]["objects_kept"] <= 1
    # a region or redrawn edit changes no pixel outside its mask (the source's decoding is kept there)
    assert summary["recolour/region"]["pixels_changed_outside"] == 0.0
    assert summary["recolour/redraw"]["pixels_changed_outside"] == 0.0
    # success where the source was right: the mean over exactly the tasks whose source satisfies its own prompt
    scores = [json.loads(line) for line in (out / "scores" / "shapes-edit.jsonl").read_text().splitlines()]
    for name in categories.split(","):
        right = [s["score"] for s in scores if s["category"] == name and s["details"]["source_right"]]
        expected = sum(right) / len(right) if right else None
        assert summary[name]["success_source_right"] == expected
    assert any(s["details"]["source_right"] for s in scores)
