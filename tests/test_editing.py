"""Edit masks (from an edited plan, a mask image, a prompt's best-keeping plan) and the `edit` call on the shipped
shapes model: what the edit names changes, every other token of the image is the source's."""

import numpy as np
import pytest
import torch
from PIL import Image

from gotr1.chain import Box, PlannedObject
from gotr1.model.edit_masks import (
    box_cells,
    dilate,
    keep_score,
    mask_from_image,
    match_objects,
    plan_changes,
    plan_edit_mask,
)
from gotr1.model.editing import EditError, EditSource, edit
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.models import builtin_model, load_model


def _chain(*objects):
    return " and ".join(
        f"<|obj_start|>{name}<|obj_end|> <|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"
        for name, (x1, y1, x2, y2) in objects
    )


def test_a_box_covers_the_token_cells_it_overlaps():
    cells = box_cells(Box(0, 0, 250, 125), 8)  # 8 x 8 cells of 125 units
    assert cells.sum() == 2 and cells[0, :2].all()
    assert box_cells(Box(130, 130, 140, 140), 8).nonzero().tolist() == [[1, 1]]  # inside one cell
    assert box_cells(Box(0, 0, 1000, 1000), 8).all()
    grown = dilate(box_cells(Box(500, 500, 600, 600), 8), 1)
    assert grown.sum() == 9 and grown[3:6, 3:6].all()


def test_a_plan_edit_names_the_objects_it_changes_and_only_they_are_masked():
    old = _chain(("red circle", (0, 0, 250, 250)), ("blue square", (750, 750, 1000, 1000)))
    moved = _chain(("red circle", (500, 0, 750, 250)), ("blue square", (750, 750, 1000, 1000)))
    assert [(c.name, c.change) for c in plan_changes(old, moved)] == [("red circle", "moved")]
    mask = plan_edit_mask(old, moved, 8, margin=0).reshape(8, 8)
    assert mask[:2, :2].all() and mask[:2, 4:6].all() and not mask[6:, 6:].any() and mask.sum() == 8
    assert plan_edit_mask(old, old, 8).sum() == 0  # nothing changed: nothing to sample
    resized = _chain(("red circle", (0, 0, 500, 500)), ("blue square", (750, 750, 1000, 1000)))
    removed = _chain(("blue square", (750, 750, 1000, 1000)))
    added = old + " and " + _chain(("green star", (0, 750, 125, 875)))
    recoloured = _chain(("green circle", (0, 0, 250, 250)), ("blue square", (750, 750, 1000, 1000)))
    assert [c.change for c in plan_changes(old, resized)] == ["resized"]
    assert [c.change for c in plan_changes(old, removed)] == ["removed"]
    assert [c.change for c in plan_changes(old, added)] == ["added"]
    assert [c.change for c in plan_changes(old, recoloured)] == ["renamed"]


def test_objects_match_by_name_then_by_box():
    old = [PlannedObject("cat", Box(0, 0, 100, 100)), PlannedObject("cat", Box(500, 500, 600, 600))]
    new = [PlannedObject("cat", Box(500, 500, 600, 600)), PlannedObject("dog", Box(0, 0, 100, 100))]
    assert match_objects(old, new) == [(0, 1), (1, 0)]  # the cat that stayed; the other became a dog


def test_a_mask_image_follows_openais_convention():
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (8, 0, 16, 8))  # transparent: may change
    cells = mask_from_image(rgba, 8, (64, 64)).reshape(8, 8)
    assert cells.nonzero().tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="the mask is 32x32, the image 64x64"):
        mask_from_image(rgba.resize((32, 32)), 8, (64, 64))
    with pytest.raises(ValueError, match="no alpha channel"):
        mask_from_image(Image.new("RGB", (64, 64)), 8, (64, 64))


def test_a_prompt_edit_prefers_the_plan_that_keeps_objects_in_place():
    old = _chain(("red circle", (0, 0, 250, 250)), ("blue square", (750, 750, 1000, 1000)))
    keeps = _chain(("red circle", (0, 0, 250, 250)), ("blue square", (0, 750, 250, 1000)))
    moves = _chain(("red circle", (500, 500, 750, 750)), ("blue square", (0, 750, 250, 1000)))
    assert keep_score(old, keeps) > keep_score(old, moves)


@pytest.fixture(scope="module")
def shapes():
    if builtin_model() is None:
        pytest.skip("no shipped model")
    bundle = load_model("shapes-grpo", None, "cpu")
    sampler = TwoPhaseSampler(bundle)
    source = sampler.generate(["a red circle to the left of a blue square"], SamplingConfig(), seed=3)[0]
    return sampler, source


def test_moving_one_object_keeps_the_other_and_the_background(shapes):
    sampler, gen = shapes
    source = EditSource.from_generation(gen)
    circle = gen.objects[0].box
    up = f"({circle.x1},{circle.y1 - 281}),({circle.x2},{circle.y2 - 281})"
    new_chain = gen.chain.replace(f"({circle.x1},{circle.y1}),({circle.x2},{circle.y2})", up)
    result = edit(sampler, source, chain=new_chain, num_images=2, seed=7)
    assert [c.change for c in result.plan.changes] == ["moved"] and not result.plan.full_rerender
    side = int(sampler.bundle.num_image_tokens**0.5)
    pixels = sampler.bundle.image_size // side
    outside = ~result.plan.mask.reshape(side, side).repeat_interleave(pixels, 0).repeat_interleave(pixels, 1).numpy()
    for edited in result.generations:
        assert torch.equal(edited.image_ids[0][~result.plan.mask], gen.image_ids[0][~result.plan.mask])
        before, after = (np.asarray(im, dtype=int) for im in (gen.images[0], edited.images[0]))
        changed = np.abs(before - after).sum(-1) > 30
        assert changed[outside].mean() < 0.01  # VQ decoding spills a little across cells, no more


def test_edit_errors_say_what_is_wrong(shapes, tmp_path):
    sampler, gen = shapes
    source = EditSource.from_generation(gen)
    with pytest.raises(EditError, match="nothing to edit"):
        edit(sampler, source, chain=gen.chain)
    with pytest.raises(EditError, match="say what to edit"):
        edit(sampler, source)
    with pytest.raises(EditError, match="not a gotr1 sample folder"):
        EditSource.from_sample_folder(tmp_path)
    with pytest.raises(EditError, match="the model draws 64x64"):
        EditSource.from_image(sampler.bundle, Image.new("RGB", (32, 32)), gen.prompt, gen.chain)


def test_a_written_sample_is_edited_from_its_own_tokens(shapes, tmp_path):
    from gotr1.samples import write_sample_folder

    sampler, gen = shapes
    write_sample_folder(gen, tmp_path / "s")
    source = EditSource.from_sample_folder(tmp_path / "s")
    assert torch.equal(source.image_ids, gen.image_ids[0]) and source.chain == gen.chain
    encoded = EditSource.from_image(sampler.bundle, gen.images[0], gen.prompt, gen.chain)
    assert encoded.image_ids.shape == gen.image_ids[0].shape


def test_a_full_mask_is_said_to_be_a_full_rerender(shapes, caplog):
    sampler, gen = shapes
    source = EditSource.from_generation(gen)
    clear = Image.new("RGBA", gen.images[0].size, (0, 0, 0, 0))
    result = edit(sampler, source, mask=clear, seed=1)
    assert result.plan.full_rerender and result.plan.mask.all() and "full re-render" in caplog.text


def test_a_box_typed_in_round_numbers_is_drawn_once_snapped(shapes):
    """The shapes model draws nothing for a circle typed at (700,100),(900,300): its chains only hold the grid
    values of pixel edges. The edit snaps the plan, and the circle is drawn on (at least 7 of) 8 seeds."""
    from gotr1.chain import snap_chain

    sampler, gen = shapes
    circle = gen.objects[0].box
    typed = gen.chain.replace(f"({circle.x1},{circle.y1}),({circle.x2},{circle.y2})", "(700,100),(900,300)")
    snapped, moved = snap_chain(typed, 64)
    assert [(a.x1, a.y1, b.x1, b.y1) for a, b in moved] == [(700, 100, 703, 94)]
    assert snap_chain(gen.chain, 64) == (gen.chain, [])  # the model's own chains are on its grid already

    def drawn(chain):
        gens = sampler.generate([gen.prompt], SamplingConfig(), chains=[[chain] * 8], num_generations=8, seed=100)
        x1, y1, x2, y2 = (round(v * 64 / 1000) for v in (703, 94, 906, 297))
        red = [np.asarray(g.images[0], dtype=int)[y1:y2, x1:x2] for g in gens]
        return sum(((r[..., 0] > 150) & (r[..., 1] < 100) & (r[..., 2] < 100)).mean() > 0.3 for r in red)

    assert drawn(typed) <= 1 and drawn(snapped) >= 7
    plan = edit(sampler, EditSource.from_generation(gen), chain=typed, seed=100, num_images=8).plan
    assert plan.chain == snapped and len(plan.snapped) == 1


def test_words_the_edited_boxes_contradict_are_named():
    from gotr1.chain import relation_contradictions

    chain = _chain(("red circle", (0, 0, 250, 250)))
    left = chain + " to the left of " + _chain(("blue square", (600, 0, 850, 250)))
    assert relation_contradictions(left) == []
    moved = left.replace("(0,0),(250,250)", "(750,500),(1000,750)")
    assert relation_contradictions(moved) == [
        "the chain says 'red circle' is to the left of 'blue square', but their boxes do not"
    ]
    assert relation_contradictions(moved.replace("to the left of", "below")) == []
