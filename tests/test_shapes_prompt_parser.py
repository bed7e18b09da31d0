"""Tests for reading typed prompts back into meanings (gotr1.worlds.shapes.parse)."""

from __future__ import annotations

import random

import pytest

from gotr1 import registry
from gotr1.worlds.shapes.grammar import RELATION_PHRASES, SPLITS, WITH_PHRASES, Prompt, ShapesGrammar, describe
from gotr1.worlds.shapes.parse import read_prompt, same_scene
from gotr1.worlds.shapes.render import try_layout_scene
from gotr1.worlds.shapes.rewards import score_all
from gotr1.worlds.shapes.vocabulary import RELATIONS, Group, Meaning, Relation

GRAMMAR = ShapesGrammar()
MEANINGS = [p.meaning for split in SPLITS for p in GRAMMAR.prompts(split, 150)]


def test_every_surface_form_of_every_split_reads_back_as_the_same_scene():
    texts = set()
    for index, meaning in enumerate(MEANINGS):
        rng = random.Random(index)
        for _ in range(6):
            text = describe(meaning, rng)
            texts.add(text)
            prompt = read_prompt(text)
            assert prompt is not None, text
            assert prompt.text == text
            assert same_scene(prompt.meaning, meaning), (text, prompt.meaning, meaning)
    # The draws cover every form describe has.
    joined = "\n".join(texts)
    for form in (" with ", "on its", "their", "above it", "them", ", and ", " the ", "an image of", "white background"):
        assert form in joined, form
    for phrase in (p for phrases in RELATION_PHRASES.values() for p in phrases):
        assert f" {phrase} " in joined, phrase


def test_groups_follow_first_mention_and_relations_point_at_them():
    prompt = read_prompt(
        "two blue squares with a small red circle on their left, and a green triangle over the blue squares"
    )
    assert prompt.meaning == Meaning(
        (Group("blue", "square", 2), Group("red", "circle", 1, "small"), Group("green", "triangle")),
        (Relation(1, "left of", 0), Relation(2, "above", 0)),
    )
    listed = read_prompt("an image of three small yellow diamonds")
    assert listed.meaning == Meaning((Group("yellow", "diamond", 3, "small"),))


@pytest.mark.parametrize("relation", RELATIONS)
def test_every_relation_phrase_and_with_form(relation):
    for phrase in RELATION_PHRASES[relation]:
        meaning = read_prompt(f"a red circle {phrase} two blue squares").meaning
        assert meaning.relations == (Relation(0, relation, 1),)
    for count, pronouns in ((1, {"its": "its", "it": "it"}), (2, {"its": "their", "it": "them"})):
        b = "a blue square" if count == 1 else "two blue squares"
        text = f"{b} with a red circle {WITH_PHRASES[relation].format(**pronouns)}"
        assert read_prompt(text).meaning == Meaning(
            (Group("blue", "square", count), Group("red", "circle")), (Relation(1, relation, 0),)
        )


def test_same_scene_ignores_group_order_and_the_side_a_relation_is_stated_from():
    red, blue, green = Group("red", "circle"), Group("blue", "square", 2), Group("green", "triangle", 1, "large")
    a = Meaning((red, blue, green), (Relation(0, "left of", 1), Relation(2, "above", 1)))
    b = Meaning((blue, green, red), (Relation(0, "right of", 2), Relation(1, "above", 0)))
    assert same_scene(a, b)
    for changed in (
        Meaning((red, blue, green), (Relation(0, "right of", 1), Relation(2, "above", 1))),
        Meaning((red, blue, green), (Relation(0, "left of", 1),)),
        Meaning((red, blue, Group("green", "triangle")), a.relations),
        Meaning((red, Group("blue", "square", 3), green), a.relations),
    ):
        assert not same_scene(a, changed)


def test_rewards_score_a_read_prompt_as_the_original():
    rng = random.Random(0)
    originals, scenes = [], []
    for prompt in GRAMMAR.prompts("val", 40):
        scene = try_layout_scene(prompt.meaning, rng)
        if scene is not None:
            originals.append(prompt)
            scenes.append(scene)
    read = [read_prompt(p.text) for p in originals]
    # Each prompt against its own reference scene, and against the next prompt's (imperfect scores).
    for shift in (0, 1):
        chains = [scenes[(i + shift) % len(scenes)].chain() for i in range(len(scenes))]
        images = [scenes[(i + shift) % len(scenes)].image() for i in range(len(scenes))]
        expected, got = score_all(originals, chains, images), score_all(read, chains, images)
        assert got == [pytest.approx(row) for row in expected]
    assert any(row["product"] < 1 for row in expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        ".",
        "a dog",
        "a purple circle",
        "a red circle left of",
        "three red circles and",
        "and a red circle",
        "a red circles",
        "two red circle",
        "a red circle left of the blue square",  # refers back to nothing
        "a red circle left of a blue square, and a green triangle above the blue squares",  # wrong number
        "a red circle left of a red circle",
        "a red circle and two red circles",  # one colour and shape, two groups
        "two blue squares with a red circle on its left",  # pronoun disagrees
        "a blue square with a red circle",
        "four red circles and a blue square",  # more objects than a scene holds
        "red circle",
        "a circle",
        "a red small circle",
        "a red circle, on a white background, please",
    ],
)
def test_text_outside_the_language_is_none(text):
    assert read_prompt(text) is None


@pytest.mark.parametrize("value", [None, 3, b"a red circle"])
def test_non_text_is_none(value):
    assert read_prompt(value) is None


def test_case_spacing_and_a_trailing_period_do_not_matter():
    plain = read_prompt("a small red circle to the left of two blue squares").meaning
    for text in (
        "A small red circle to the left of two blue squares.",
        "  a SMALL red   circle to the LEFT of two blue squares .  ",
        "A Small Red Circle To The Left Of Two Blue Squares.\n",
    ):
        prompt = read_prompt(text)
        assert prompt.text == text and prompt.meaning == plain
    listed = read_prompt("A red circle ,a blue square and a green triangle On a white background.")
    assert len(listed.meaning.groups) == 3


def test_the_shapes_suite_reads_prompts():
    prompt = registry.get("shapes").read_prompt("a red circle to the left of a blue square")
    assert isinstance(prompt, Prompt)
    assert len(prompt.meaning.groups) == 2 and len(prompt.meaning.relations) == 1
    assert registry.get("shapes").read_prompt("a dog") is None
