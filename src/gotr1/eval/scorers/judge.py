"""The ``judge`` scorer: the project's VLM judge answers one question per image, for either benchmark.

This is NOT either benchmark's official metric. It is the same multimodal judge the rewards use (any backend
:func:`gotr1.rewards.config.build_judge` makes: an OpenAI-compatible server such as vLLM, or a local
transformers model), asked one question per image whose focus follows the category: attribute binding for
T2I-CompBench's color / shape / texture, the relation for spatial / 3d_spatial / non_spatial, counting for
numeracy, everything for complex; for GenEval, a checklist built from the prompt's metadata line (objects,
counts, colours, relations). The questions are our own wording.

Scales: T2I-CompBench questions ask for a 0..10 rating, divided by 10. GenEval questions ask for 1 (every
requirement holds) or 0 (any fails); anything but 0 or 1 is an unreadable answer. Both are read with
:func:`gotr1.rewards.parsing.read_score`.

The plan check: when a sample has a record, a second question shows the judge the plan drawn as labelled
boxes on a blank canvas (as R_spa's judge sees it) with the prompt, and asks whether that layout satisfies it,
on the same scale: ``plan_score``. A plan with no box scores 0 without asking.

Configuration (``ScorerOptions.judge_config``): a YAML file that is either a reward config (the file
``gotr1 reward --judge`` reads, e.g. ``configs/judge_vllm.yaml``; its ``judge:`` section is used and the
rest ignored) or a bare judge section (``backend:``, ``openai:``, ``model:`` ... at the top level). Relative
paths in it (``cache:``, ``prompts:``) are relative to the file. Without one: an OpenAI-compatible server at
``http://127.0.0.1:8000/v1`` serving Qwen/Qwen2.5-VL-7B-Instruct. The ``system`` text of ``judge.prompts``
applies here too; the reward questions do not.

Failures: an image the judge cannot answer for (no reply, an unreadable answer) scores None with the reason,
never 0. If no image of a category gets a score, :class:`~gotr1.eval.records.ScorerError` names the judge
and the first reason; this is checked after every batch, so a judge that is down stops the run after the
first batch instead of retrying for hours.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from ...chain import PlannedObject
from ...config import ConfigError, load_config
from ...layout import draw_plan
from ...progress import progress
from ...rewards.config import JudgeSettings, RewardSettings, build_judge, judge_prompts
from ...rewards.judge import (
    PATCH_MULTIPLE,
    Judge,
    JudgeAnswer,
    JudgeRequest,
    judge_view,
)
from ...rewards.parsing import extract_json, read_score
from ..records import EvalImage, ImageScore, ScorerError

__all__ = [
    "BENCHMARKS",
    "GENEVAL_FOCUS",
    "GENEVAL_SCHEMA",
    "T2I_FOCUS",
    "T2I_SCHEMA",
    "JudgeScorer",
    "geneval_requirements",
    "load_judge_settings",
]

logger = logging.getLogger(__name__)

BENCHMARKS = ("t2i-compbench", "geneval")

# --------------------------------------------------------------------------------------------------------
# The questions (our own wording)

# What each T2I-CompBench category tests, as the one thing the judge should look at.
T2I_FOCUS: dict[str, str] = {
    "color": "Check colour binding: every object the request names must be there, each in the colour the "
    "request gives to that object (a colour that belongs to another object in the request counts as "
    "wrong).",
    "shape": "Check shape binding: every object the request names must be there, each with the shape or form the "
    "request gives to that object (round, square, oblong, tall, ...), not another object's shape.",
    "texture": "Check material and texture binding: every object the request names must be there, each made of "
    "or covered in the material or texture the request gives to that object (wooden, metallic, "
    "fluffy, glass, leather, ...).",
    "spatial": "Check the 2D arrangement: both objects must be there, placed as the request says (left of, right "
    "of, on top of / above, below, next to, near), read from the viewer's side of the picture.",
    "non_spatial": "Check the interaction: the subjects must be there and doing what the request says to or with "
    "each other (holding, riding, watching, playing with, ...), not merely standing side by side.",
    "complex": "Check everything the request asks for: every object, each object's own attributes (colour, "
    "shape, material), and the relations and actions between the objects.",
    "3d_spatial": "Check depth: both objects must be there and ordered in depth as the request says (in front of, "
    "behind, hidden by), as seen from the camera; overlap should show which one is nearer.",
    "numeracy": "Check the counts: each object the request names must appear exactly as many times as the request "
    "says. Count every instance carefully; one too many or one too few is wrong.",
}

# GenEval's tags: what to pay attention to besides the checklist of requirements.
GENEVAL_FOCUS: dict[str, str] = {
    "single_object": "The point is presence: the object must be clearly recognisable as what it is.",
    "two_object": "The point is presence: both objects must be clearly recognisable in the same image.",
    "counting": "The point is the count: count every instance; one more or one fewer than asked fails.",
    "colors": "The point is colour: the object's main colour must be the requested one.",
    "position": "The point is placement: both objects present and in the requested relation, read from the "
    "viewer's side of the picture.",
    "color_attr": "The point is colour binding: each object must have its own requested colour, not the other "
    "object's.",
}

T2I_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
}
GENEVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"score": {"type": "integer", "enum": [0, 1]}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
}

_T2I_IMAGE = """Request: "{prompt}"

{focus}

Rate how well this image fulfils that, from 0 to 10: 10 when it holds completely and unmistakably; around 5 \
when it holds only in part (one object or attribute missing or wrong, or the relation unclear); 0 when it does \
not hold at all or the image does not show the request. Answer only with JSON: \
{{"score": <0-10>, "reason": "<one sentence>"}}"""

_GENEVAL_IMAGE = """Request: "{prompt}"

Requirements:
{requirements}

{focus}

Answer 1 only if every requirement holds in this image clearly enough that a careful viewer would agree; \
answer 0 if any one of them fails (an object missing or unrecognisable, a wrong count, a wrong colour, the wrong \
side). Answer only with JSON: {{"score": <1 or 0>, "reason": "<one sentence>"}}"""

_PLAN_INTRO = """The picture is a layout sketch, not a photograph: each rectangle marks where an object will \
be drawn, and its label names the object (with any attribute the label states).

Request: "{prompt}"
"""

_T2I_PLAN = (
    _PLAN_INTRO
    + """
{focus}

Does this layout satisfy the request? Judge only what a layout can show: which objects are planned, how many \
of each, what their labels say about them, and where the rectangles sit relative to each other, read from the \
viewer's side ("left of" means further left, "above" means higher up). Ignore the drawing style. Rate from 0 \
(the layout contradicts the request) to 10 (the layout is exactly what the request describes). Answer only with \
JSON: {{"score": <0-10>, "reason": "<one sentence>"}}"""
)

_GENEVAL_PLAN = (
    _PLAN_INTRO
    + """
Requirements:
{requirements}

Does this layout satisfy every requirement? Judge only what a layout can show: which objects are planned, how \
many of each, what their labels say about them, and where the rectangles sit relative to each other, read from \
the viewer's side ("left of" means further left, "above" means higher up). Answer 1 if every requirement holds \
in the layout, 0 if any fails. Answer only with JSON: {{"score": <1 or 0>, "reason": "<one sentence>"}}"""
)

_RELATION_WORDS = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above (higher up in the picture than)",
    "below": "below (lower down in the picture than)",
}
_PLURAL_EXCEPTIONS = {
    "person": "people",
    "mouse": "mice",
    "knife": "knives",
    "skis": "skis",
    "scissors": "scissors",
    "sheep": "sheep",
    "hair drier": "hair driers",
    "wine glass": "wine glasses",
    "bus": "buses",
}


def _plural(name: str) -> str:
    if name in _PLURAL_EXCEPTIONS:
        return _PLURAL_EXCEPTIONS[name]
    last = name.split()[-1]
    if last in _PLURAL_EXCEPTIONS:
        return name[: -len(last)] + _PLURAL_EXCEPTIONS[last]
    if name.endswith(("s", "x", "ch", "sh")):
        return name + "es"
    if name.endswith("y") and name[-2:-1] not in "aeiou":
        return name[:-1] + "ies"
    return name + "s"


def geneval_requirements(metadata: dict[str, Any]) -> list[str]:
    """The metadata line as plain requirements ("exactly 2 clocks", "the dog is to the right of the teddy
    bear"), so the judge checks what GenEval checks rather than its own reading of the prompt."""
    includes = [c for c in metadata.get("include") or [] if isinstance(c, dict) and "class" in c]
    excludes = {
        c["class"]: int(c.get("count", 1))
        for c in metadata.get("exclude") or []
        if isinstance(c, dict) and "class" in c
    }
    lines: list[str] = []
    for clause in includes:
        name, count = str(clause["class"]), int(clause.get("count", 1))
        colour = clause.get("color")
        noun = name if count == 1 else _plural(name)
        thing = f"{colour} {noun}" if colour else noun
        if excludes.get(name) == count + 1:
            lines.append(f"exactly {count} {thing}" + (", no more and no fewer" if count > 1 else ""))
            excludes.pop(name)
        elif count == 1:
            article = "an" if thing[0] in "aeiou" else "a"
            lines.append(f"{article} {thing}")
        else:
            lines.append(f"at least {count} {thing}")
        position = clause.get("position")
        if position and 0 <= int(position[1]) < len(includes):
            target = includes[int(position[1])]["class"]
            relation = _RELATION_WORDS.get(str(position[0]), str(position[0]))
            lines.append(f"the {name} is {relation} the {target}")
    for name, count in excludes.items():
        lines.append(f"fewer than {count} {_plural(name) if count > 1 else name}")
    return lines


# --------------------------------------------------------------------------------------------------------
# Configuration


def load_judge_settings(path: str | Path | None) -> tuple[JudgeSettings, Path | None]:
    """The judge settings and the folder relative paths in them refer to.

    ``path`` is a reward config (its ``judge:`` section is used) or a bare judge section; None gives the
    defaults (an OpenAI-compatible server at 127.0.0.1:8000). Any problem is a one-line ScorerError naming
    the file.
    """
    if path is None:
        return JudgeSettings(), None
    file = Path(path).expanduser()
    try:
        if not file.is_file():
            raise ConfigError(f"{file}: no such file")
        try:
            top = yaml.safe_load(file.read_text())
        except yaml.YAMLError:
            top = None  # load_config names the line
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: unreadable ({exc})") from None
        reward_keys = {f for f in RewardSettings.__dataclass_fields__} - {f for f in JudgeSettings.__dataclass_fields__}
        if isinstance(top, dict) and ("judge" in top or reward_keys & set(top)):
            settings = load_config(file, RewardSettings).judge
        else:
            settings = load_config(file, JudgeSettings)
        judge_prompts(settings, file.parent)  # a prompts: entry naming a missing file fails here, not mid-run
    except (ConfigError, ValueError) as exc:
        message = " ".join(str(exc).split())
        if str(file) not in message:
            message = f"{file}: {message}"
        raise ScorerError(f"cannot use the judge config: {message}") from None
    return settings, file.parent


def _describe(settings: JudgeSettings) -> tuple[str, str]:
    """(model, where it runs) for notes and errors."""
    if settings.backend == "openai":
        return settings.openai.model, "OpenAI-compatible server " + ", ".join(settings.openai.base_urls)
    return str(settings.model), "local transformers model"


def _judge_reason(answer: JudgeAnswer | None) -> str:
    """The judge's own one-sentence reason, shown beside the score in reports."""
    value = extract_json(answer.text or "") if answer is not None else None
    reason = value.get("reason") if isinstance(value, dict) else None
    return " ".join(reason.split()) if isinstance(reason, str) and reason.strip() else "judged"


# --------------------------------------------------------------------------------------------------------
# The scorer


@dataclass
class _Asked:
    """One image's questions within a batch: indices into the batch's requests."""

    question: int | None = None
    plan: int | None = None
    plan_score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    unreadable_file: str | None = None


class JudgeScorer:
    """One judge question per image (and one per plan), for T2I-CompBench or GenEval (see the module doc).

    ``judge`` is any :class:`~gotr1.rewards.judge.Judge` (tests pass a scripted one); without it the judge is
    built from ``settings`` on first use, so building the scorer loads no model.
    """

    name = "judge"

    def __init__(
        self,
        benchmark: str,
        settings: JudgeSettings | None = None,
        *,
        judge: Judge | None = None,
        base_dir: Path | None = None,
        batch_size: int = 16,
        config_source: str | None = None,
    ) -> None:
        if benchmark not in BENCHMARKS:
            raise ScorerError(f"the judge scorer scores {' and '.join(BENCHMARKS)}, not {benchmark!r}")
        if batch_size < 1:
            raise ScorerError(f"batch_size must be at least 1, got {batch_size}")
        self.benchmark = benchmark
        self.settings = settings or JudgeSettings()
        self.base_dir = base_dir
        self.batch_size = batch_size
        self.config_source = config_source
        self._judge = judge
        try:
            self._system = judge_prompts(self.settings, base_dir).system
        except ValueError as exc:
            raise ScorerError(f"judge settings: {exc}") from None
        self.notes = self._notes()

    @classmethod
    def from_options(cls, benchmark: str, options: Any) -> JudgeScorer:
        """From the CLI's ScorerOptions: ``judge_config`` (see the module doc) and ``batch_size``."""
        path = getattr(options, "judge_config", None)
        settings, base_dir = load_judge_settings(path)
        device = getattr(options, "device", None)
        if device and settings.backend == "transformers" and settings.device is None:
            settings.device = device
        return cls(
            benchmark,
            settings,
            base_dir=base_dir,
            batch_size=getattr(options, "batch_size", 16),
            config_source=None if path is None else str(path),
        )

    # -- the judge ------------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """The judge as an error message should name it (the server URLs, or the local model)."""
        if self._judge is not None:
            return repr(self._judge)
        model, place = _describe(self.settings)
        return f"{model} ({place})"

    def judge(self) -> Judge:
        if self._judge is None:
            try:
                self._judge = build_judge(self.settings, self.base_dir)
            except Exception as exc:  # any failure to build is the user's to fix, in one line
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                raise ScorerError(
                    f"cannot build the judge {self.where}: {lines[0] if lines else type(exc).__name__}"
                ) from exc
            logger.info("judge: %r", self._judge)
        return self._judge

    def _notes(self) -> list[str]:
        official = "T2I-CompBench" if self.benchmark == "t2i-compbench" else "GenEval"
        if self._judge is not None and not self.config_source:
            model, place = getattr(self._judge, "model_id", type(self._judge).__name__), repr(self._judge)
        else:
            model, place = _describe(self.settings)
        scale = (
            "score = the judge's 0-10 rating / 10"
            if self.benchmark == "t2i-compbench"
            else "score = 1 when the judge answers that every requirement of the metadata line holds, else 0"
        )
        notes = [
            f"MLLM judge, NOT the official {official} metric: {model} via {place}; numbers are not comparable "
            "with published results",
            f"one question per image in our own words, its focus set by the category; {scale}; an unanswered or "
            "unreadable question leaves the image unscored (never 0)",
            f"images resized to about {self.settings.image_pixels} pixels (sides multiples of {PATCH_MULTIPLE}) "
            "before the judge sees them",
            "plan_score: the same judge shown the plan drawn as labelled boxes on a blank canvas (as R_spa's judge "
            "sees it) with the prompt, asked whether that layout satisfies it; a plan without boxes scores 0",
        ]
        if self.config_source:
            notes.append(f"judge settings from {self.config_source}")
        if self.settings.cache:
            notes.append(f"answers cached in {self.settings.cache} (delete it to ask again)")
        return notes

    # -- questions ------------------------------------------------------------------------------------

    def _scale(self) -> float:
        return 10.0 if self.benchmark == "t2i-compbench" else 1.0

    def _schema(self) -> dict[str, Any]:
        return T2I_SCHEMA if self.benchmark == "t2i-compbench" else GENEVAL_SCHEMA

    def _requirements(self, image: EvalImage) -> str:
        metadata = image.job.metadata
        lines = geneval_requirements(metadata) if isinstance(metadata, dict) else []
        if not lines:  # no usable metadata line: the prompt is all there is
            lines = [f"everything the request describes: {image.prompt}"]
        return "\n".join(f"- {line}" for line in lines)

    def image_question(self, category: str, image: EvalImage) -> str:
        """The text asked about the image itself."""
        if self.benchmark == "t2i-compbench":
            return _T2I_IMAGE.format(prompt=image.prompt, focus=T2I_FOCUS[category])
        return _GENEVAL_IMAGE.format(
            prompt=image.prompt, requirements=self._requirements(image), focus=GENEVAL_FOCUS[category]
        )

    def plan_question(self, category: str, image: EvalImage) -> str:
        """The text asked about the drawn plan."""
        if self.benchmark == "t2i-compbench":
            return _T2I_PLAN.format(prompt=image.prompt, focus=T2I_FOCUS[category])
        return _GENEVAL_PLAN.format(prompt=image.prompt, requirements=self._requirements(image))

    def plan_canvas(self, objects: Sequence[PlannedObject]) -> Image.Image:
        """The plan as R_spa's judge sees it: labelled boxes on a white square of about ``image_pixels``."""
        side = max(PATCH_MULTIPLE, round(math.sqrt(self.settings.image_pixels) / PATCH_MULTIPLE) * PATCH_MULTIPLE)
        return draw_plan(objects, side)

    def _request(self, text: str, picture: Image.Image) -> JudgeRequest:
        return JudgeRequest(
            text, (picture,), system=self._system, max_tokens=self.settings.max_tokens, schema=self._schema()
        )

    def _read(self, answer: JudgeAnswer) -> tuple[float | None, str | None, bool]:
        """(score in [0, 1], why there is none, was it clamped)."""
        if not answer.ok:
            return None, f"judge failed: {answer.error or 'no answer'}", False
        reading = read_score(answer.text, scale=self._scale())
        if reading.value is None:
            return None, f"judge answer unreadable: {reading.error}", False
        if self.benchmark == "geneval" and (reading.clamped or reading.value not in (0.0, 1.0)):
            return None, "judge answer unreadable: expected a score of 1 or 0", False
        return reading.value, None, reading.clamped

    # -- scoring --------------------------------------------------------------------------------------

    def _categories(self) -> tuple[str, ...]:
        return tuple(T2I_FOCUS) if self.benchmark == "t2i-compbench" else tuple(GENEVAL_FOCUS)

    def score(self, category: str, images: Sequence[EvalImage], out_dir: Path) -> list[ImageScore]:
        """One score per image, in order (nothing is written to ``out_dir``: there is no official file for a
        judge's numbers). ScorerError when no image of the category gets a score."""
        if category not in self._categories():
            raise ScorerError(
                f"the judge scorer for {self.benchmark} scores {', '.join(self._categories())}, not {category!r}"
            )
        if not images:
            return []
        judge = self.judge()
        scores: list[ImageScore] = []
        first_failure: str | None = None
        scored = 0
        with progress(len(images), f"judge {category}", "image") as bar:
            for start in range(0, len(images), self.batch_size):
                batch = list(images[start : start + self.batch_size])
                found = self._score_batch(judge, category, batch)
                for item in found:
                    if item.score is not None:
                        scored += 1
                    elif first_failure is None and item.details.get("judge_failed"):
                        first_failure = item.reason
                scores.extend(found)
                bar.update(len(batch))
                if scored == 0 and first_failure is not None:
                    break  # nothing has worked yet: the judge is down or misconfigured
        if scored == 0 and first_failure is not None:
            raise ScorerError(
                f"the judge {self.where} scored none of the {len(scores)} {category} image(s) asked "
                f"so far; first failure: {first_failure}"
            )
        stats = getattr(judge, "stats", None)
        if stats is not None:
            logger.info(
                "judge %s: %d answered, %d failed, %d unreadable so far",
                category,
                stats.answered,
                stats.failed,
                stats.unreadable,
            )
        return scores

    def _score_batch(self, judge: Judge, category: str, batch: Sequence[EvalImage]) -> list[ImageScore]:
        """Every question of the batch in one ``ask``: the image questions and the plan questions."""
        requests: list[JudgeRequest] = []
        asked: list[_Asked] = []
        for image in batch:
            item = _Asked()
            try:
                picture = image.image()
            except (OSError, ValueError) as exc:
                item.unreadable_file = f"cannot read {image.job.path}: {' '.join(str(exc).split())}"
                asked.append(item)
                continue
            item.question = len(requests)
            requests.append(
                self._request(self.image_question(category, image), judge_view(picture, self.settings.image_pixels))
            )
            if image.record is not None:
                boxed = [obj for obj in image.objects if obj.box is not None]
                if boxed:
                    item.plan = len(requests)
                    requests.append(self._request(self.plan_question(category, image), self.plan_canvas(boxed)))
                else:
                    item.plan_score = 0.0
                    item.details["plan_reason"] = "the plan has no boxes"
            asked.append(item)
        answers = judge.ask(requests) if requests else []
        if len(answers) != len(requests):
            raise ScorerError(f"the judge {self.where} returned {len(answers)} answers for {len(requests)} questions")
        out = []
        for item, image in zip(asked, batch):
            out.append(self._conclude(item, image, answers, judge))
        return out

    def _conclude(self, item: _Asked, image: EvalImage, answers: Sequence[JudgeAnswer], judge: Judge) -> ImageScore:
        details = {"judge": getattr(judge, "model_id", None), **item.details}
        if item.unreadable_file is not None:
            logger.warning("%s", item.unreadable_file)
            return ImageScore(
                image.job.path,
                image.category,
                image.prompt,
                None,
                None,
                item.unreadable_file,
                image.job.record,
                details,
            )
        plan_score = item.plan_score
        if item.plan is not None:
            plan_answer = answers[item.plan]
            plan_score, why, _ = self._read(plan_answer)
            details["plan_answer"] = plan_answer.text
            if why is not None:
                details["plan_reason"] = why
        answer = answers[item.question] if item.question is not None else None
        score, why, clamped = (None, "not asked", False) if answer is None else self._read(answer)
        details["answer"] = None if answer is None else answer.text
        stats = getattr(judge, "stats", None)
        if clamped:
            details["clamped"] = True
            if stats is not None:
                stats.clamped += 1
        if why is not None:
            details["judge_failed"] = True
            if why.startswith("judge answer unreadable") and stats is not None:
                stats.unreadable += 1
            logger.debug("%s: %s", image.job.path, why)
        return ImageScore(
            image.job.path,
            image.category,
            image.prompt,
            score,
            plan_score,
            why if why is not None else _judge_reason(answer),
            image.job.record,
            details,
        )

    def __repr__(self) -> str:
        return f"JudgeScorer({self.benchmark!r}, judge={self.where})"
