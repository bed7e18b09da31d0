"""`gotr1 eval shapes`: categories, exact scoring of images and plans, agreement with training's evaluation,
and the registry through which train, rewards and eval find the world."""

import json
import random

import pytest

from gotr1 import registry
from gotr1.cli import main
from gotr1.eval.records import EvalImage, ImageJob
from gotr1.model.sampler import SamplingConfig
from gotr1.models import load_model
from gotr1.worlds.shapes.benchmark import ExactScorer, ShapesBenchmark, category_of
from gotr1.worlds.shapes.evaluate import ShapesEvalConfig, evaluate
from gotr1.worlds.shapes.grammar import ShapesGrammar
from gotr1.worlds.shapes.render import layout_scene, write_chain
from gotr1.worlds.shapes.vocabulary import Group, Meaning, Relation


def _meaning(*groups, relations=()):
    return Meaning(tuple(Group(*g) for g in groups), tuple(Relation(*r) for r in relations))


@pytest.mark.parametrize(
    "meaning, category",
    [
        (_meaning(("red", "circle")), "shape"),
        (_meaning(("red", "circle", 1, "small")), "size"),
        (_meaning(("red", "circle"), ("blue", "square")), "color"),
        (_meaning(("red", "circle", 2), ("blue", "square")), "counting"),
        (_meaning(("red", "circle"), ("blue", "square"), relations=[(0, "left of", 1)]), "spatial"),
        (_meaning(("red", "circle", 1, "large"), ("blue", "square"), relations=[(0, "above", 1)]), "spatial"),
        (_meaning(("red", "circle", 2), ("blue", "square"), relations=[(0, "left of", 1)]), "complex"),
        (
            _meaning(
                ("red", "circle"),
                ("blue", "square"),
                ("green", "diamond"),
                relations=[(0, "left of", 1), (2, "below", 1)],
            ),
            "complex",
        ),
    ],
)
def test_categories_partition_meanings(meaning, category):
    assert category_of(meaning) == category


def test_every_category_has_its_prompts_and_seeds_follow_the_split_index():
    bench = ShapesBenchmark()
    jobs = bench.jobs(bench.categories, images_per_prompt=2, limit=30)
    assert len(jobs) == len(bench.categories) * 30 * 2
    for job in jobs:
        kind = job.category.split("/")[1]
        meaning = Meaning.from_dict(job.metadata["meaning"])
        assert kind == "all" or category_of(meaning) == kind
        assert job.seed == job.prompt_index + job.image_index * 1_000_003
    # "all" is the split's first prompts, in order: the prompts training evaluates on
    first = [j.prompt for j in jobs if j.category == "heldout/all" and j.image_index == 0]
    assert first == [p.text for p in ShapesGrammar().prompts("heldout", 30)]


def _scene_image(tmp_path, meaning, chain_for_record, name):
    scene = layout_scene(meaning, random.Random(0))
    path = tmp_path / f"{name}.png"
    scene.image().save(path)
    job = ImageJob(
        "heldout/spatial",
        "p",
        0,
        0,
        0,
        f"{name}.png",
        f"{name}.json",
        metadata={"split": "heldout", "meaning": meaning.to_dict()},
    )
    return EvalImage(job, tmp_path, {"chain": chain_for_record(scene)})


def test_exact_scorer_scores_the_image_and_the_plan(tmp_path):
    meaning = _meaning(("red", "circle"), ("blue", "square"), relations=[(0, "left of", 1)])
    right = _scene_image(tmp_path, meaning, write_chain, "right")
    # the same image, but its chain planned the circle on the right: the plan fails, the image passes
    swapped = _scene_image(
        tmp_path,
        meaning,
        lambda scene: (
            write_chain(scene)
            .replace("red circle", "tmp")
            .replace("blue square", "red circle")
            .replace("tmp", "blue square")
        ),
        "swapped",
    )
    no_plan = _scene_image(tmp_path, meaning, lambda scene: "I will draw it.", "none")
    scores = ExactScorer().score("heldout/spatial", [right, swapped, no_plan], tmp_path)
    assert [s.score for s in scores] == [1.0, 1.0, 1.0]
    assert [s.plan_score for s in scores] == [1.0, 0.0, 0.0]
    assert scores[0].details["r_pi"] == 1.0 and scores[2].details["r_sem"] == 0.0


def test_eval_shapes_on_the_shipped_model_agrees_with_training_evaluation(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "eval",
                "shapes",
                "--categories",
                "heldout/all,val/spatial",
                "--limit",
                "6",
                "--out",
                str(out),
                "--max-reasoning-tokens",
                "200",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "heldout/all" in printed and "val/spatial" in printed and "plan wrong" in printed
    results = json.loads((out / "results" / "shapes.json").read_text())
    assert set(results["summary"]["categories"]) == {"heldout/all", "val/spatial"}
    lines = [json.loads(line) for line in (out / "scores" / "shapes.jsonl").read_text().splitlines()]
    benchmark_correct = [line["score"] == 1.0 for line in lines if line["category"] == "heldout/all"]
    # training's held-out evaluation draws the same samples (same prompts, seeds, settings)
    bundle = load_model(None)
    cfg = json.loads((out / "run.json").read_text())["sampling"]["cfg_weight"]
    sampling = SamplingConfig(cfg_weight=cfg, max_reasoning_tokens=200)
    _, records, _ = evaluate(bundle, ShapesEvalConfig(num_prompts=6, sampling=sampling))
    assert benchmark_correct == [r["correct"] for r in records]


def test_shapes_eval_is_an_alias(tmp_path):
    assert (
        main(
            [
                "shapes",
                "eval",
                "--categories",
                "val/shape",
                "--limit",
                "2",
                "--out",
                str(tmp_path / "a"),
                "--max-reasoning-tokens",
                "50",
            ]
        )
        == 0
    )
    assert (tmp_path / "a" / "results" / "shapes.json").is_file()


def test_registry_finds_the_suites_and_names_unknown_ones():
    assert {"shapes", "t2i-compbench", "geneval"} <= set(registry.names())
    shapes = registry.get("shapes")
    assert set(shapes.reward_components) == {"r_sem", "r_spa", "r_ri", "r_pi"}
    assert "heldout-pairs" in shapes.prompt_sets
    with pytest.raises(registry.UnknownSuite, match="unknown suite 'nope'; known: .*shapes"):
        registry.get("nope")
    assert registry.split_prompt_spec("prompts/file.txt") is None
    assert registry.split_prompt_spec("shapes:val")[1] == "val"


def test_a_suite_registered_at_run_time_serves_rewards_and_prompts(tmp_path):
    from gotr1.rewards.config import RewardSettings, build_reward
    from gotr1.rewards.scoring import CallableReward

    registry.register(
        registry.Suite(
            name="toy",
            prompt_sets=("all",),
            prompt_source=lambda prompt_set, n: lambda step, rng: ["a toy"] * n,
            reward_components={"r_pi": lambda: CallableReward("r_pi", lambda p, c, i: [0.25] * len(p))},
        )
    )
    try:
        reward = build_reward(RewardSettings(source="toy", components=["r_pi"], combine="sum"))
        totals, parts = reward(["a toy"], ["chain"], [None])
        assert parts["r_pi"] == [0.25]
        assert RewardSettings(source="toy", components=["r_pi"]).suites() == ["toy"]
        from gotr1.train.run import _prompts

        source = _prompts("toy:all", 3, tmp_path)
        assert source(0, random.Random(0)) == ["a toy"] * 3
    finally:
        registry._SUITES.pop("toy")
