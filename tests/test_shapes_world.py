"""Tests for the shapes world's prompt grammar and renderer, as the rewards rely on them."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gotr1.chain import parse_chain
from gotr1.worlds.shapes.grammar import SPLITS, ShapesGrammar
from gotr1.worlds.shapes.render import SIZE_RANGES, LayoutError, Scene, layout_scene
from gotr1.worlds.shapes.vocabulary import COLORS, SHAPES, relation_holds


def scenes(n: int, seed: int = 0, image_size: int = 64) -> list[Scene]:
    rng = random.Random(seed)
    out = []
    for prompt in ShapesGrammar(seed).prompts("train", n):
        try:
            out.append(layout_scene(prompt.meaning, rng, image_size))
        except LayoutError:
            pass
    return out


@pytest.mark.parametrize("split", SPLITS)
def test_the_same_seed_gives_the_same_prompts(split: str) -> None:
    assert ShapesGrammar(3).prompts(split, 40) == ShapesGrammar(3).prompts(split, 40)
    assert ShapesGrammar(3).prompts(split, 40) != ShapesGrammar(4).prompts(split, 40)


def test_splits_differ() -> None:
    grammar = ShapesGrammar()
    texts = {split: {p.text for p in grammar.prompts(split, 100)} for split in SPLITS}
    assert texts["train"] != texts["val"]


def test_heldout_prompts_always_contain_a_heldout_pair_and_the_others_never() -> None:
    grammar = ShapesGrammar(seed=1)
    assert all(grammar.is_heldout(p.meaning) for p in grammar.prompts("heldout", 300))
    for split in ("train", "val"):
        assert not any(grammar.is_heldout(p.meaning) for p in grammar.prompts(split, 300))


def test_rl_prompts_hold_heldout_pairs_but_never_an_evaluation_meaning() -> None:
    from gotr1.worlds.shapes.rl import EVAL_RESERVE, heldout_pair_prompts, prompt_source

    grammar = ShapesGrammar()
    prompts = heldout_pair_prompts(grammar, 400)
    assert all(grammar.is_heldout(p.meaning) for p in prompts)
    evaluation = {p.meaning for p in grammar.prompts("heldout", EVAL_RESERVE)}
    assert not any(p.meaning in evaluation for p in prompts)
    assert len({p.meaning for p in prompts}) > 300  # a varied set, not one meaning repeated
    source = prompt_source(grammar, 8, split="heldout-pairs", pool=400)
    assert {p.text for p in source(0, random.Random(0))} <= {p.text for p in prompts}
    with pytest.raises(ValueError, match="unknown shapes prompt set 'test'"):
        prompt_source(grammar, 8, split="test")


def test_every_colour_and_shape_is_still_trained_on() -> None:
    for seed in range(5):
        grammar = ShapesGrammar(seed)
        assert {c for c, _ in grammar.train_pairs} == set(COLORS)
        assert {s for _, s in grammar.train_pairs} == set(SHAPES)


def test_unknown_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        ShapesGrammar().prompts("test", 1)


@pytest.mark.parametrize("image_size", [32, 64, 96])
def test_scenes_satisfy_their_meaning(image_size: int) -> None:
    for scene in scenes(60, seed=2, image_size=image_size):
        meaning = scene.meaning
        assert len(scene.objects) == meaning.num_objects
        for index, group in enumerate(meaning.groups):
            members = [o for o in scene.objects if o.group == index]
            assert len(members) == group.count
            assert all((o.color, o.shape) == group.pair for o in members)
            assert group.size is None or all(o.size == group.size for o in members)
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.box
            low, high = SIZE_RANGES[obj.size]
            assert x2 - x1 == y2 - y1
            assert round(low * image_size) <= x2 - x1 <= round(high * image_size)
            assert 0 <= x1 and 0 <= y1 and x2 <= image_size and y2 <= image_size
        for rel in meaning.relations:
            for a in scene.objects:
                for b in scene.objects:
                    if a.group == rel.subject and b.group == rel.object:
                        assert relation_holds(rel.relation, a.box, b.box)


def test_the_true_chain_gives_back_exactly_the_scenes_boxes() -> None:
    for scene in scenes(100):
        parsed = parse_chain(scene.chain())
        assert parsed.is_valid, parsed.problems
        planned = Counter((o.name, o.box) for o in parsed.objects)
        true = Counter((o.name, o.grid_box(scene.image_size)) for o in scene.objects)
        assert planned == true
