"""The four judge rewards, the combiners, the pipeline and the cache, with a scripted judge.

The scripted judge answers from the question it is given, so each test states exactly what the
judge says and checks what the reward makes of it: perfect, partial, wrong, malformed chains,
missing images, unreadable answers and judge failures.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from gotr1.chain import Box, PlannedObject, format_chain
from gotr1.rewards import (
    GroundingReward,
    ImagePromptReward,
    JudgeAnswer,
    JudgeSettings,
    JudgeStats,
    LocatorGroundingReward,
    RewardPipeline,
    RewardSettings,
    RewardsUnavailable,
    SemanticReward,
    SpatialReward,
    build_reward,
    combine,
)
from gotr1.rewards.cache import CachedJudge
from gotr1.rewards.combine import check_combiner
from gotr1.rewards.config import judge_prompts


class ScriptedJudge:
    """Answers each request with ``script(request)`` (text, or a JudgeAnswer); records requests."""

    model_id = "scripted"

    def __init__(self, script):
        self.script = script
        self.stats = JudgeStats()
        self.requests = []

    def ask(self, requests):
        self.requests.extend(requests)
        answers = []
        for request in requests:
            answer = self.script(request)
            answers.append(answer if isinstance(answer, JudgeAnswer) else JudgeAnswer(answer))
        self.stats.add_answers(answers)
        return answers


def score(value):
    return json.dumps({"score": value, "reason": "scripted"})


def chain(*objects):
    return format_chain(["The picture shows ", *[PlannedObject(n, Box(*b)) for n, b in objects], "."])


RED_LEFT = chain(("red circle", (50, 300, 350, 600)), ("blue square", (600, 300, 900, 600)))
IMAGE = Image.new("RGB", (64, 64), "white")


# --- R_sem -----------------------------------------------------------------------------------------


def test_semantic_reward_scores_what_the_judge_says_and_shows_it_the_plan():
    judge = ScriptedJudge(lambda r: score(10 if '"blue square"' in r.prompt else 3))
    reward = SemanticReward(judge)
    values = reward(
        ["a red circle left of a blue square"] * 2,
        [RED_LEFT, chain(("green triangle", (0, 0, 500, 500)))],
        [None, None],
    )
    assert values == [1.0, 0.3]
    question = judge.requests[0]
    assert "a red circle left of a blue square" in question.prompt
    assert '"red circle", "blue square"' in question.prompt and not question.images
    assert question.schema is not None and question.system


def test_semantic_reward_defined_for_empty_and_malformed_chains():
    judge = ScriptedJudge(lambda r: score(6))
    reward = SemanticReward(judge)
    empty, malformed = "", "a <|obj_start|>red circle<|box_start|>(10,20),(30"  # unclosed tags
    results = reward.evaluate(["p", "p"], [empty, malformed], [None, None])
    assert results[0].value == 0.0 and results[0].reason == "empty chain"
    assert results[1].value == 0.6  # judged on the recovered text
    assert len(judge.requests) == 1  # the empty chain was not sent


def test_failed_and_unreadable_answers_are_missing_not_zero():
    answers = iter([JudgeAnswer(None, error="timeout: no reply", attempts=5), "I refuse to rate this.", score(14)])
    judge = ScriptedJudge(lambda r: next(answers))
    results = SemanticReward(judge).evaluate(["p"] * 3, [RED_LEFT] * 3, [None] * 3)
    assert results[0].value is None and "timeout" in results[0].reason
    assert results[1].value is None and "unreadable" in results[1].reason
    assert results[1].raw == ["I refuse to rate this."]
    assert results[2].value == 1.0 and results[2].details == {"clamped": True}
    assert (judge.stats.failed, judge.stats.unreadable, judge.stats.clamped, judge.stats.retries) == (1, 1, 1, 4)


# --- R_spa -----------------------------------------------------------------------------------------


def test_spatial_reward_shows_the_drawn_plan_not_coordinates():
    judge = ScriptedJudge(lambda r: score(8))
    reward = SpatialReward(judge)
    results = reward.evaluate(
        ["a red circle left of a blue square"] * 2, [RED_LEFT, "a red circle and a blue square, no boxes"], [None, None]
    )
    assert results[0].value == 0.8
    assert results[1].value == 0.0 and results[1].reason == "no boxes in chain"
    (request,) = judge.requests
    (canvas,) = request.images
    assert canvas.size == (448, 448) and "(50" not in request.prompt
    # the red circle's box is drawn on the left, the blue square's on the right
    left, right = canvas.crop((0, 0, 224, 448)), canvas.crop((224, 0, 448, 448))
    assert left.getcolors(1 << 16) != right.getcolors(1 << 16)
    assert len(canvas.getcolors(1 << 16)) > 2


# --- R_RI ------------------------------------------------------------------------------------------


def boxes_answer(*pixel_boxes):
    return json.dumps([{"bbox_2d": list(b), "label": "x"} for b in pixel_boxes])


def test_grounding_reward_perfect_partial_wrong_and_missing():
    # The judge sees the 64 px image enlarged to 448 px; it answers in those pixels.
    def script(request):
        name = request.prompt.split("Find every ")[1].split(" in this image")[0]
        assert "448x448" in request.prompt and request.images[0].size == (448, 448)
        return {
            "red circle": boxes_answer((22.4, 134.4, 156.8, 268.8)),  # exactly the plan
            "blue square": boxes_answer((0, 0, 44.8, 44.8)),
        }[name]  # somewhere else

    judge = ScriptedJudge(script)
    results = GroundingReward(judge).evaluate(["p"] * 3, [RED_LEFT, "no boxes", RED_LEFT], [IMAGE, IMAGE, None])
    assert results[0].value == pytest.approx(0.5, abs=1e-3)  # mean of IoU 1 and IoU 0
    assert results[0].details["ious"] == pytest.approx([1.0, 0.0], abs=1e-3)
    assert results[0].details["grounded"]["red circle"] == [[50, 300, 350, 600]]
    assert results[1].value == 0.0
    assert results[2].value is None and results[2].reason == "missing image"
    assert len(judge.requests) == 2  # one question per distinct name


def test_grounding_reward_matches_repeated_names_one_to_one():
    two_dogs = chain(("dog", (0, 0, 500, 500)), ("dog", (500, 500, 1000, 1000)))
    answers = {
        "both, swapped": boxes_answer((224, 224, 448, 448), (0, 0, 224, 224)),
        "one": boxes_answer((0, 0, 224, 224)),
        "none": "[]",
    }
    for case, expected in (("both, swapped", 1.0), ("one", 0.5), ("none", 0.0)):
        judge = ScriptedJudge(lambda r, case=case: answers[case])
        (result,) = GroundingReward(judge).evaluate(["two dogs"], [two_dogs], [IMAGE])
        assert result.value == pytest.approx(expected), case
        assert len(judge.requests) == 1


@pytest.mark.parametrize(
    "box_format, answer", [("relative_1000", [500, 0, 1000, 1000]), ("relative_1", [0.5, 0.0, 1.0, 1.0])]
)
def test_grounding_reward_other_coordinate_conventions(box_format, answer):
    plan = chain(("cat", (500, 0, 1000, 1000)))
    judge = ScriptedJudge(lambda r: json.dumps({"bbox_2d": answer}))
    (value,) = GroundingReward(judge, box_format=box_format)(["a cat"], [plan], [Image.new("RGB", (64, 128))])
    assert value == pytest.approx(1.0)
    assert (
        "0-1000" in judge.requests[0].prompt
        if box_format == "relative_1000"
        else "fractions" in judge.requests[0].prompt
    )


def test_grounding_reward_non_square_image_keeps_its_frame():
    wide = Image.new("RGB", (128, 64))
    plan = chain(("cat", (0, 0, 500, 1000)))  # left half

    def script(request):
        width, height = request.images[0].size
        assert width % 28 == 0 and height % 28 == 0 and width > height
        return boxes_answer((0, 0, width / 2, height))

    (value,) = GroundingReward(ScriptedJudge(script))(["a cat"], [plan], [wide])
    assert value == pytest.approx(1.0, abs=0.01)


def test_grounding_reward_unreadable_or_failed_answer_makes_the_sample_missing():
    judge = ScriptedJudge(lambda r: "the red circle is near the middle" if "red" in r.prompt else "[]")
    (result,) = GroundingReward(judge).evaluate(["p"], [RED_LEFT], [IMAGE])
    assert result.value is None and "unreadable" in result.reason and len(result.raw) == 2
    judge = ScriptedJudge(lambda r: JudgeAnswer(None, error="connection: refused") if "blue" in r.prompt else "[]")
    (result,) = GroundingReward(judge).evaluate(["p"], [RED_LEFT], [IMAGE])
    assert result.value is None and "connection" in result.reason


def test_grounding_with_a_locator_instead_of_the_judge():
    class Locator:
        def locate(self, image, name):
            return [Box(50, 300, 350, 600)] if name == "red circle" else []

    results = LocatorGroundingReward(Locator()).evaluate(["p"] * 2, [RED_LEFT, RED_LEFT], [IMAGE, None])
    assert results[0].value == pytest.approx(0.5) and results[1].value is None


# --- R_PI ------------------------------------------------------------------------------------------


def test_image_prompt_reward():
    judge = ScriptedJudge(lambda r: score(10 if r.images[0].getpixel((0, 0)) == (255, 0, 0) else 0))
    red, white = Image.new("RGB", (64, 64), "red"), IMAGE
    results = ImagePromptReward(judge).evaluate(["a red picture"] * 3, ["", "", ""], [red, white, None])
    assert [r.value for r in results] == [1.0, 0.0, None]
    assert results[2].reason == "missing image"
    assert judge.requests[0].images[0].size == (448, 448)


# --- combining and the pipeline --------------------------------------------------------------------


def test_combiners():
    row = {"r_sem": 0.5, "r_spa": 0.25, "r_ri": 0.8, "r_pi": 0.5}
    assert combine("product", row) == pytest.approx(0.3)
    assert combine("mean_product", row) == pytest.approx(0.15)
    assert combine("v2", {**row, "r_hps": 0.5}) == pytest.approx(0.075)
    assert combine("sum", row) == pytest.approx(2.05)
    assert combine("sum", row, {"r_ri": 2.0, "r_pi": 0.0}) == pytest.approx(2.35)
    assert combine("product", {**row, "r_ri": None}) is None
    assert combine("sum", {"r_ri": None}) is None
    assert combine("product", {**row, "r_ri": 0.0}) == 0.0
    with pytest.raises(ValueError, match="needs component"):
        check_combiner("product", ["r_sem", "r_spa"])
    with pytest.raises(ValueError, match="r_hps"):
        check_combiner("v2", ["r_sem", "r_spa", "r_ri", "r_pi"])
    with pytest.raises(ValueError, match="not configured"):
        check_combiner("sum", ["r_ri"], {"r_pi": 1.0})
    with pytest.raises(ValueError, match="combine must be"):
        check_combiner("max", ["r_ri"])


def four_judged(judge):
    return {
        "r_sem": SemanticReward(judge),
        "r_spa": SpatialReward(judge),
        "r_ri": GroundingReward(judge),
        "r_pi": ImagePromptReward(judge),
    }


def test_pipeline_totals_components_and_missing_counts():
    def script(request):
        if "Find every" in request.prompt:
            return boxes_answer((22.4, 134.4, 156.8, 268.8), (268.8, 134.4, 403.2, 268.8))
        return score(10)

    judge = ScriptedJudge(script)
    pipeline = RewardPipeline(four_judged(judge), "product")
    totals, components = pipeline(["p"] * 3, [RED_LEFT, RED_LEFT, ""], [IMAGE, None, IMAGE])
    # the judge finds both planned boxes exactly (each name's one-to-one match picks its own)
    assert totals[0] == pytest.approx(2.0)
    assert totals[1] is None  # no image: R_RI and R_PI missing
    assert totals[2] == 0.0  # empty chain: R_sem = R_spa = 0 and no boxes
    assert components["r_pi"] == [1.0, None, 1.0]
    report = pipeline.report()
    assert report["samples"] == 3 and report["missing_total"] == 1
    assert report["missing"] == {"r_sem": 0, "r_spa": 0, "r_ri": 1, "r_pi": 1}
    assert report["judges"]["scripted"]["requests"] == len(judge.requests)


def test_pipeline_refuses_to_train_on_a_dead_judge():
    judge = ScriptedJudge(lambda r: JudgeAnswer(None, error="connection: refused", attempts=5))
    pipeline = RewardPipeline(four_judged(judge), "product", max_missing_fraction=0.5)
    with pytest.raises(RewardsUnavailable, match=r"4 of 4 samples have no reward.*connection: refused"):
        pipeline(["p"] * 4, [RED_LEFT] * 4, [IMAGE] * 4)


def test_pipeline_takes_plain_callables():
    pipeline = RewardPipeline(
        {"r_ri": lambda p, c, i: [0.5] * len(c), "len": lambda p, c, i: [len(x) / 10 for x in c]}, "sum", {"len": 2.0}
    )
    totals, components = pipeline(["a", "b"], ["abc", "abcde"], [None, None])
    assert totals == pytest.approx([1.1, 1.5]) and components["r_ri"] == [0.5, 0.5]


# --- config and cache ------------------------------------------------------------------------------


def test_build_reward_from_settings(tmp_path):
    judge = ScriptedJudge(lambda r: score(5))
    pipeline = build_reward(RewardSettings(source="judge"), judge=judge)
    assert list(pipeline.components) == ["r_sem", "r_spa", "r_ri", "r_pi"]
    assert all(getattr(part, "judge", None) is judge for part in pipeline.components.values())
    mixed = build_reward(
        RewardSettings(
            source="judge",
            sources={"r_ri": "tests.test_judge_rewards:FixedRewardFn"},
            combine="sum",
            components=["r_sem", "r_ri"],
        ),
        judge=judge,
    )
    totals, _ = mixed(["p"], [RED_LEFT], [IMAGE])
    assert totals == [pytest.approx(0.5 + 0.25)]
    for bad, message in (
        ({"source": "oracle"}, "unknown source"),
        ({"sources": {"r_sem": "detector"}}, "only ground"),
        ({"combine": "max"}, "combine: must be one of"),
        ({"components": ["r_x"]}, "plug-in source"),
    ):
        with pytest.raises(ValueError, match=message):
            build_reward(RewardSettings(**{"source": "judge", **bad}), judge=judge)


class FixedRewardFn:
    """A plug-in reward: a class named in config as package.module:Class."""

    def __call__(self, prompts, chains, images):
        return [0.25] * len(chains)


def test_judge_prompts_can_be_replaced_from_files(tmp_path):
    (tmp_path / "sem.txt").write_text("Rate {prompt} vs {plan} ({objects}) as JSON score.")
    prompts = judge_prompts(JudgeSettings(prompts={"semantic": "sem.txt"}), tmp_path)
    judge = ScriptedJudge(lambda r: score(4))
    SemanticReward(judge, prompts=prompts)(["a cat"], [chain(("cat", (0, 0, 9, 9)))], [None])
    assert judge.requests[0].prompt.startswith('Rate a cat vs The picture shows cat. ("cat")')
    with pytest.raises(ValueError, match="judge.prompts.semantics: unknown prompt"):
        judge_prompts(JudgeSettings(prompts={"semantics": "sem.txt"}), tmp_path)
    with pytest.raises(ValueError, match="no such file"):
        judge_prompts(JudgeSettings(prompts={"semantic": "missing.txt"}), tmp_path)


def test_cache_answers_repeat_questions_and_never_stores_failures(tmp_path):
    calls = []

    def script(request):
        calls.append(request)
        return JudgeAnswer(None, error="server_error: HTTP 500") if "flaky" in request.prompt else score(9)

    cached = CachedJudge(ScriptedJudge(script), tmp_path / "cache.sqlite")
    reward = ImagePromptReward(cached)
    first = reward(["a cat", "flaky"], ["", ""], [IMAGE, IMAGE])
    again = ImagePromptReward(CachedJudge(ScriptedJudge(script), tmp_path / "cache.sqlite"))
    second = again(["a cat", "flaky"], ["", ""], [IMAGE, IMAGE])
    assert first == second == [0.9, None]
    assert len(calls) == 3  # "a cat" once, "flaky" twice (failures are not cached)
    assert again.judge.stats.cached == 1
    other_image = again(["a cat"], [""], [Image.new("RGB", (64, 64), "black")])
    assert other_image == [0.9] and len(calls) == 4  # different pixels: a miss
