"""The judge scorer with a scripted in-process judge (and, for the error path, a real OpenAI client pointed at a
closed port): the questions it asks per category, the scales, the plan question, failures and notes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gotr1.chain import Box, PlannedObject
from gotr1.eval.benchmark import ScorerOptions
from gotr1.eval.records import EvalImage, ImageJob, ScorerError
from gotr1.eval.scorers.judge import (
    GENEVAL_FOCUS,
    T2I_FOCUS,
    JudgeScorer,
    geneval_requirements,
    load_judge_settings,
)
from gotr1.layout import draw_plan
from gotr1.rewards import JudgeAnswer, JudgeSettings, JudgeStats
from gotr1.rewards.openai_judge import OpenAIJudgeConfig

REPO = Path(__file__).resolve().parents[1]


class ScriptedJudge:
    """Answers each request with ``script(request)`` (text or a JudgeAnswer); records every ask call."""

    model_id = "scripted-vlm"

    def __init__(self, script):
        self.script = script
        self.stats = JudgeStats()
        self.calls: list[list] = []

    @property
    def requests(self):
        return [r for call in self.calls for r in call]

    def ask(self, requests):
        self.calls.append(list(requests))
        answers = []
        for request in requests:
            answer = self.script(request)
            answers.append(answer if isinstance(answer, JudgeAnswer) else JudgeAnswer(answer))
        self.stats.add_answers(answers)
        return answers

    def __repr__(self) -> str:
        return "ScriptedJudge(http://judge.test:8000/v1)"


def score(value, reason="scripted"):
    return json.dumps({"score": value, "reason": reason})


def is_plan(request) -> bool:
    return "layout sketch" in request.prompt


def make_image(
    root: Path, category: str, prompt: str, index: int, *, record=None, metadata=None, size=(64, 48)
) -> EvalImage:
    path = f"{category}/samples/{index:04d}.png"
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 40 + index, 40)).save(root / path)
    job = ImageJob(
        category=category,
        prompt=prompt,
        prompt_index=index,
        image_index=0,
        seed=42,
        path=path,
        record=f"{category}/plans/{index:04d}.json",
        metadata=metadata,
    )
    return EvalImage(job, root, record)


def plan_record(*objects):
    return {"chain": "...", "objects": [{"name": n, "box": list(b)} for n, b in objects]}


DOG_LEFT = plan_record(("dog", (50, 300, 400, 700)), ("cat", (600, 300, 950, 700)))


# ---------------------------------------------------------------------------------------------------------
# T2I-CompBench: one question per image, its focus by category, 0..10 scaled


@pytest.mark.parametrize("category", list(T2I_FOCUS))
def test_each_t2i_category_asks_its_own_question_about_the_image(tmp_path, category):
    judge = ScriptedJudge(lambda r: score(7))
    scorer = JudgeScorer("t2i-compbench", judge=judge)
    prompt = "a red book and a yellow vase"
    [result] = scorer.score(category, [make_image(tmp_path, category, prompt, 0)], tmp_path)
    [request] = judge.requests  # no record: no plan question
    assert f'"{prompt}"' in request.prompt and T2I_FOCUS[category] in request.prompt
    assert "0 to 10" in request.prompt and request.schema["properties"]["score"]["maximum"] == 10
    assert request.system and len(request.images) == 1
    width, height = request.images[0].size  # judge_view: sides multiples of 28, aspect kept
    assert width % 28 == 0 and height % 28 == 0 and width > height
    assert result.score == pytest.approx(0.7) and result.plan_score is None
    assert result.reason == "scripted" and result.details["answer"] == score(7)


def test_t2i_focus_differs_by_category_and_names_what_it_checks():
    assert len(set(T2I_FOCUS.values())) == len(T2I_FOCUS)
    assert "colour" in T2I_FOCUS["color"] and "shape" in T2I_FOCUS["shape"]
    assert "texture" in T2I_FOCUS["texture"] and "left of" in T2I_FOCUS["spatial"]
    assert "in front of" in T2I_FOCUS["3d_spatial"] and "exactly as many" in T2I_FOCUS["numeracy"]


def test_t2i_scores_scale_and_clamp(tmp_path):
    answers = iter([score(10), score(0), "Score: 4/5", score(12)])
    judge = ScriptedJudge(lambda r: next(answers))
    scorer = JudgeScorer("t2i-compbench", judge=judge)
    images = [make_image(tmp_path, "color", "a red book", i) for i in range(4)]
    results = scorer.score("color", images, tmp_path)
    assert [r.score for r in results] == [1.0, 0.0, pytest.approx(0.8), 1.0]
    assert results[3].details.get("clamped") is True


# ---------------------------------------------------------------------------------------------------------
# GenEval: the metadata line as requirements, 1 or 0


COUNTING = {
    "tag": "counting",
    "include": [{"class": "clock", "count": 2}],
    "exclude": [{"class": "clock", "count": 3}],
    "prompt": "a photo of two clocks",
}
POSITION = {
    "tag": "position",
    "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}],
    "prompt": "a photo of a dog right of a teddy bear",
}
COLOR_ATTR = {
    "tag": "color_attr",
    "include": [
        {"class": "wine glass", "count": 1, "color": "purple"},
        {"class": "apple", "count": 1, "color": "black"},
    ],
    "prompt": "a photo of a purple wine glass and a black apple",
}


def test_geneval_requirements_follow_the_metadata_line():
    assert geneval_requirements(COUNTING) == ["exactly 2 clocks, no more and no fewer"]
    assert geneval_requirements(POSITION) == ["a teddy bear", "a dog", "the dog is to the right of the teddy bear"]
    assert geneval_requirements(COLOR_ATTR) == ["a purple wine glass", "a black apple"]
    assert geneval_requirements({"include": [{"class": "person", "count": 3}]}) == ["at least 3 people"]


def test_geneval_asks_for_one_or_zero_and_reads_nothing_else(tmp_path):
    answers = {0: score(1), 1: score(0), 2: score(7), 3: '{"score": "yes"}'}
    judge = ScriptedJudge(lambda r: answers[int(r.prompt.split("#")[1][0])])
    scorer = JudgeScorer("geneval", judge=judge)
    images = [make_image(tmp_path, "counting", f"a photo of two clocks #{i}", i, metadata=COUNTING) for i in range(4)]
    results = scorer.score("counting", images, tmp_path)
    assert [r.score for r in results] == [1.0, 0.0, None, None]
    assert "expected a score of 1 or 0" in results[2].reason
    assert results[3].reason.startswith("judge answer unreadable")
    question = judge.requests[0].prompt
    assert "- exactly 2 clocks" in question and GENEVAL_FOCUS["counting"] in question
    assert judge.requests[0].schema["properties"]["score"]["enum"] == [0, 1]
    assert judge.stats.unreadable == 2


def test_geneval_without_metadata_falls_back_to_the_prompt(tmp_path):
    judge = ScriptedJudge(lambda r: score(1))
    JudgeScorer("geneval", judge=judge).score("colors", [make_image(tmp_path, "colors", "a blue car", 0)], tmp_path)
    assert "- everything the request describes: a blue car" in judge.requests[0].prompt


# ---------------------------------------------------------------------------------------------------------
# The plan question


def test_plan_question_shows_the_plan_drawn_on_a_blank_canvas(tmp_path):
    judge = ScriptedJudge(lambda r: score(3 if is_plan(r) else 9))
    scorer = JudgeScorer("t2i-compbench", judge=judge)
    image = make_image(tmp_path, "spatial", "a dog on the left of a cat", 0, record=DOG_LEFT)
    [result] = scorer.score("spatial", [image], tmp_path)
    assert len(judge.calls) == 1 and len(judge.calls[0]) == 2  # image and plan asked together
    plan = next(r for r in judge.requests if is_plan(r))
    assert '"a dog on the left of a cat"' in plan.prompt and T2I_FOCUS["spatial"] in plan.prompt
    [canvas] = plan.images
    expected = draw_plan(
        [PlannedObject("dog", Box(50, 300, 400, 700)), PlannedObject("cat", Box(600, 300, 950, 700))], canvas.size[0]
    )
    assert canvas.size == (448, 448) and np.array_equal(np.asarray(canvas), np.asarray(expected))
    pixels = np.asarray(canvas)
    assert (pixels[:100] == 255).all()  # white above the boxes: a blank canvas, not the image
    assert result.score == pytest.approx(0.9) and result.plan_score == pytest.approx(0.3)
    assert result.details["plan_answer"] == score(3)


def test_geneval_plan_question_lists_the_requirements(tmp_path):
    judge = ScriptedJudge(lambda r: score(0 if is_plan(r) else 1))
    record = plan_record(("teddy bear", (600, 300, 900, 700)), ("dog", (50, 300, 400, 700)))
    image = make_image(tmp_path, "position", POSITION["prompt"], 0, record=record, metadata=POSITION)
    [result] = JudgeScorer("geneval", judge=judge).score("position", [image], tmp_path)
    plan = next(r for r in judge.requests if is_plan(r))
    assert "- the dog is to the right of the teddy bear" in plan.prompt
    assert result.score == 1.0 and result.plan_score == 0.0


def test_plan_without_boxes_scores_zero_without_asking_and_failed_plan_is_none(tmp_path):
    judge = ScriptedJudge(lambda r: JudgeAnswer(None, error="timeout: no reply in time") if is_plan(r) else score(8))
    scorer = JudgeScorer("t2i-compbench", judge=judge)
    empty = make_image(tmp_path, "spatial", "a dog on the left of a cat", 0, record={"chain": "a dog", "objects": []})
    failing = make_image(tmp_path, "spatial", "a dog on the left of a cat", 1, record=DOG_LEFT)
    first, second = scorer.score("spatial", [empty, failing], tmp_path)
    assert first.plan_score == 0.0 and first.details["plan_reason"] == "the plan has no boxes"
    assert second.score == pytest.approx(0.8) and second.plan_score is None
    assert second.details["plan_reason"] == "judge failed: timeout: no reply in time"
    assert sum(is_plan(r) for r in judge.requests) == 1


# ---------------------------------------------------------------------------------------------------------
# Failures


def test_a_failed_or_unreadable_answer_is_none_with_the_reason_never_zero(tmp_path):
    answers = iter([score(6), JudgeAnswer(None, error="server_error: HTTP 500"), "looks nice to me"])
    judge = ScriptedJudge(lambda r: next(answers))
    images = [make_image(tmp_path, "texture", "a wooden table", i) for i in range(3)]
    good, failed, unreadable = JudgeScorer("t2i-compbench", judge=judge).score("texture", images, tmp_path)
    assert good.score == pytest.approx(0.6)
    assert failed.score is None and failed.reason == "judge failed: server_error: HTTP 500"
    assert unreadable.score is None and unreadable.reason == "judge answer unreadable: no score in answer"


def test_an_unreadable_image_file_is_none_and_not_asked(tmp_path):
    judge = ScriptedJudge(lambda r: score(5))
    images = [make_image(tmp_path, "shape", "a round clock", i) for i in range(2)]
    (tmp_path / images[1].job.path).write_bytes(b"not a png")
    results = JudgeScorer("t2i-compbench", judge=judge).score("shape", images, tmp_path)
    assert results[0].score == 0.5
    assert results[1].score is None and results[1].reason.startswith("cannot read shape/samples/0001.png")
    assert len(judge.requests) == 1


def test_all_failed_raises_naming_the_judge_and_first_reason_after_the_first_batch(tmp_path):
    judge = ScriptedJudge(lambda r: JudgeAnswer(None, error="connection: ConnectError"))
    scorer = JudgeScorer("t2i-compbench", judge=judge, batch_size=2)
    images = [make_image(tmp_path, "color", "a red book", i) for i in range(5)]
    with pytest.raises(ScorerError, match=r"http://judge\.test:8000/v1.*first failure: judge failed: connection"):
        scorer.score("color", images, tmp_path)
    assert len(judge.calls) == 1  # stopped after the first batch, not after retrying every image


def test_some_failures_do_not_raise(tmp_path):
    answers = iter([JudgeAnswer(None, error="timeout: x"), JudgeAnswer(None, error="timeout: x"), score(5)])
    judge = ScriptedJudge(lambda r: next(answers))
    images = [make_image(tmp_path, "color", "a red book", i) for i in range(3)]
    results = JudgeScorer("t2i-compbench", judge=judge, batch_size=3).score("color", images, tmp_path)
    assert [r.score for r in results] == [None, None, 0.5]


def test_unreachable_server_raises_one_line_with_its_url(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    settings = JudgeSettings(openai=OpenAIJudgeConfig(base_urls=[url], max_retries=0, timeout_s=5))
    scorer = JudgeScorer("geneval", settings)
    image = make_image(tmp_path, "colors", "a blue car", 0)
    with pytest.raises(ScorerError) as info:
        scorer.score("colors", [image], tmp_path)
    message = str(info.value)
    assert url in message and "first failure: judge failed: connection" in message and "\n" not in message


def test_batches_are_asked_together(tmp_path):
    judge = ScriptedJudge(lambda r: score(5))
    images = [make_image(tmp_path, "complex", "a dog on the left of a cat", i, record=DOG_LEFT) for i in range(5)]
    JudgeScorer("t2i-compbench", judge=judge, batch_size=2).score("complex", images, tmp_path)
    assert [len(call) for call in judge.calls] == [4, 4, 2]


def test_unknown_category_and_benchmark(tmp_path):
    with pytest.raises(ScorerError, match="not 'counting'"):
        JudgeScorer("t2i-compbench", judge=ScriptedJudge(lambda r: score(1))).score("counting", [], tmp_path)
    with pytest.raises(ScorerError, match="not 'color'"):
        JudgeScorer("geneval", judge=ScriptedJudge(lambda r: score(1))).score("color", [], tmp_path)
    with pytest.raises(ScorerError, match="not 'drawbench'"):
        JudgeScorer("drawbench")


# ---------------------------------------------------------------------------------------------------------
# Configuration and notes


def test_default_is_a_local_openai_server_and_notes_say_it_is_not_official():
    scorer = JudgeScorer.from_options("t2i-compbench", ScorerOptions())
    assert scorer.settings.backend == "openai" and scorer.settings.openai.base_urls == ["http://127.0.0.1:8000/v1"]
    notes = " ".join(scorer.notes)
    assert "MLLM judge" in notes and "NOT the official T2I-CompBench metric" in notes
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in notes and "http://127.0.0.1:8000/v1" in notes
    assert "0-10 rating / 10" in notes and "plan_score" in notes
    geneval = " ".join(JudgeScorer.from_options("geneval", ScorerOptions()).notes)
    assert "NOT the official GenEval metric" in geneval and "else 0" in geneval


def test_config_is_a_reward_yaml_or_a_bare_judge_section(tmp_path):
    settings, base = load_judge_settings(REPO / "configs" / "judge_vllm.yaml")
    assert settings.openai.max_concurrency == 64 and settings.cache == "judge_cache.sqlite"
    assert base == REPO / "configs"
    bare = tmp_path / "judge.yaml"
    bare.write_text("backend: openai\nopenai:\n  base_urls: [http://gpu-7:9000/v1]\n  model: my/vlm\n")
    scorer = JudgeScorer.from_options("geneval", ScorerOptions(judge_config=str(bare), batch_size=4))
    assert scorer.settings.openai.base_urls == ["http://gpu-7:9000/v1"] and scorer.batch_size == 4
    notes = " ".join(scorer.notes)
    assert "my/vlm" in notes and "http://gpu-7:9000/v1" in notes and str(bare) in notes
    local = tmp_path / "local.yaml"
    local.write_text("judge:\n  backend: transformers\n  model: /models/qwen\n")
    assert "/models/qwen via local transformers model" in " ".join(
        JudgeScorer.from_options("geneval", ScorerOptions(judge_config=str(local))).notes
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("backend: openai\nopenaii: {}\n", r"judge\.yaml:2: openaii: unknown key"),
        ("judge:\n  backend: [1\n", r"judge\.yaml:\d+: invalid YAML"),
        ("judge:\n  max_tokens: lots\n", r"judge\.yaml:2: judge\.max_tokens: expected an integer"),
        (
            "judge:\n  prompts: {system: missing.txt}\n",
            r"judge\.yaml: judge\.prompts\.system: .*missing\.txt: no such file",
        ),
    ],
)
def test_a_bad_config_is_one_line_naming_the_file(tmp_path, text, expected):
    path = tmp_path / "judge.yaml"
    path.write_text(text)
    with pytest.raises(ScorerError, match=expected) as info:
        JudgeScorer.from_options("geneval", ScorerOptions(judge_config=str(path)))
    assert "\n" not in str(info.value) and str(info.value).startswith("cannot use the judge config")


def test_a_missing_config_file_names_it(tmp_path):
    with pytest.raises(ScorerError, match=r"nope\.yaml: no such file"):
        JudgeScorer.from_options("geneval", ScorerOptions(judge_config=str(tmp_path / "nope.yaml")))


def test_a_judge_that_cannot_be_built_is_one_line(tmp_path):
    settings = JudgeSettings(backend="transformers", model=str(tmp_path / "no-model"))
    scorer = JudgeScorer("geneval", settings)
    with pytest.raises(ScorerError, match="cannot build the judge") as info:
        scorer.score("colors", [make_image(tmp_path, "colors", "a blue car", 0)], tmp_path)
    assert "\n" not in str(info.value)
