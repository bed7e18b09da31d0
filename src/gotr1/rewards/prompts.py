"""What the judge is asked, for each of the four rewards (our own wording).

Each question names one thing to check, says how strict to be and asks for a single JSON object,
because a narrow question with a fixed answer shape is what small judges answer most reliably.
Scores are on 0..10 (normalised to [0, 1] by :func:`gotr1.rewards.parsing.read_score`). Any text
can be replaced from a run's config (``judge.prompts``) without touching code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BOXES_SCHEMA", "BOX_FORMATS", "JudgePrompts", "SCORE_SCHEMA"]

# How a judge writes box coordinates: absolute pixels of the image it was sent (Qwen2.5-VL),
# a 0..1000 grid (Qwen2-VL, GoT's own convention) or fractions of the side.
BOX_FORMATS = ("pixels", "relative_1000", "relative_1")

# The answer shapes, as JSON schemas: servers with structured output (vLLM, llama.cpp) can be asked
# to enforce them, which makes small judges far more reliable; others just read the prompt.
SCORE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
}
BOXES_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "bbox_2d": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
            "label": {"type": "string"},
        },
        "required": ["bbox_2d", "label"],
    },
}

_SYSTEM = (
    "You are a meticulous evaluator of text-to-image generation. You compare what was requested "
    "with what was produced, and you answer with one JSON object and nothing else."
)

_SEMANTIC = """A text-to-image system wrote a plan before drawing.

Request: "{prompt}"

Plan: "{plan}"

Objects the plan will draw: {objects}

Check the plan against the request. Every object the request mentions must be planned, with the \
requested number, colour, shape, material, texture and other attributes. Nothing in the plan may \
contradict the request, and the plan should be clear and coherent. Positions do not matter here.

Rate from 0 (unrelated or contradicting) to 10 (complete and faithful). Subtract for each missing \
or wrong object or attribute. Answer only with JSON: {{"score": <0-10>, "reason": "<one sentence>"}}"""

_SPATIAL = """The picture is a layout plan for an image: each labelled rectangle marks where the \
named object will be drawn.

Request: "{prompt}"

Judge only the arrangement: are the positions, relative sizes and numbers of the rectangles what \
the request describes? Read spatial words literally from the viewer's side ("left of" means further \
left in the picture, "above" means higher up). Objects that should be separate should not overlap \
heavily.

Rate from 0 (arrangement contradicts the request) to 10 (arrangement exactly as requested). Answer \
only with JSON: {{"score": <0-10>, "reason": "<one sentence>"}}"""

_GROUNDING = """Find every {name} in this image.

Answer only with a JSON list, one entry per {name} you can see: \
[{{"bbox_2d": [x1, y1, x2, y2], "label": "{name}"}}], where {coordinates}. \
If there is no {name} in the image, answer []."""

_COORDINATES = {
    "pixels": "the numbers are pixel coordinates in this {width}x{height} image (top-left, bottom-right)",
    "relative_1000": "the numbers are coordinates on a 0-1000 scale of the image's width and height "
    "(top-left, bottom-right)",
    "relative_1": "the numbers are fractions between 0 and 1 of the image's width and height (top-left, bottom-right)",
}

_IMAGE = """Request: "{prompt}"

Check this image strictly against the request. Every requested object must be visible, in the \
requested number, with the requested colour, shape, texture and other attributes, and every spatial \
relation must hold as written, seen from the viewer ("left of" means further left in the image). \
Extra objects that contradict the request count against it.

Give 10 only when everything holds. Subtract for each missing object, wrong count, wrong attribute \
or broken relation; give 0 when the image does not show the request at all. Answer only with JSON: \
{{"score": <0-10>, "reason": "<one sentence>"}}"""


@dataclass
class JudgePrompts:
    """The texts of the four questions; ``{...}`` fields are filled per sample."""

    system: str = _SYSTEM
    semantic: str = _SEMANTIC  # {prompt}, {plan}, {objects}
    spatial: str = _SPATIAL  # {prompt}; the plan is the image
    grounding: str = _GROUNDING  # {name}, {coordinates}
    image: str = _IMAGE  # {prompt}

    def semantic_question(self, prompt: str, plan: str, objects: list[str]) -> str:
        listed = ", ".join(f'"{name}"' for name in objects) if objects else "(none)"
        return self.semantic.format(prompt=prompt, plan=plan, objects=listed)

    def spatial_question(self, prompt: str) -> str:
        return self.spatial.format(prompt=prompt)

    def grounding_question(self, name: str, box_format: str, size: tuple[int, int]) -> str:
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        coordinates = _COORDINATES[box_format].format(width=size[0], height=size[1])
        return self.grounding.format(name=name, coordinates=coordinates)

    def image_question(self, prompt: str) -> str:
        return self.image.format(prompt=prompt)
