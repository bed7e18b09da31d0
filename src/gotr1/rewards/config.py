"""Reward settings as typed config, and building judges and reward pipelines from them.

YAML (a run's ``reward:`` section, or the file given to ``gotr1 reward --judge``)::

    source: judge                  # default source of every component: judge | detector | a suite (shapes)
    components: [r_sem, r_spa, r_ri, r_pi]
    sources: {r_ri: detector}      # per component: judge | detector (r_ri) | a suite | package.module:factory
    combine: product               # product | mean_product | v2 | sum
    weights: {}                    # for combine: sum
    max_missing_fraction: 0.5      # a batch with more missing totals stops training
    judge:
      backend: openai              # openai | transformers
      openai: {base_urls: [http://127.0.0.1:8000/v1], model: Qwen/Qwen2.5-VL-7B-Instruct}
      box_format: pixels           # how the judge writes boxes: pixels | relative_1000 | relative_1
      cache: outputs/judge_cache.sqlite
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import registry
from ..config import FieldError, check_choice, check_range
from .base import Reward
from .cache import CachedJudge
from .combine import COMBINERS
from .judge import DEFAULT_JUDGE_PIXELS, Judge
from .openai_judge import OpenAIJudge, OpenAIJudgeConfig
from .prompts import BOX_FORMATS, JudgePrompts
from .scoring import RewardPipeline

__all__ = ["JudgeSettings", "RewardSettings", "build_judge", "build_reward"]

COMPONENT_NAMES = ("r_sem", "r_spa", "r_ri", "r_pi")
SOURCES = ("judge", "detector")  # besides these: any registered suite with reward components (gotr1.registry)


@dataclass
class JudgeSettings:
    backend: str = "openai"  # openai: any OpenAI-compatible server (vLLM); transformers: a local VLM
    openai: OpenAIJudgeConfig = field(default_factory=OpenAIJudgeConfig)
    model: str | None = None  # transformers backend: a local path or hub id
    batch_size: int = 8  # transformers backend
    device: str | None = None
    dtype: str | None = None  # transformers backend: bfloat16 | float16 | float32
    box_format: str = "pixels"  # Qwen2.5-VL answers in pixels of the image it was sent
    image_pixels: int = DEFAULT_JUDGE_PIXELS  # images are resized to about this many pixels for the judge
    max_tokens: int = 256
    cache: str | None = None  # SQLite file of answers keyed by question content
    prompts: dict[str, str] = field(default_factory=dict)  # system|semantic|spatial|grounding|image -> text file

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, ("openai", "transformers"))
        check_choice("box_format", self.box_format, BOX_FORMATS)
        check_range("batch_size", self.batch_size, low=1)
        check_range("image_pixels", self.image_pixels, low=28 * 28)
        check_range("max_tokens", self.max_tokens, low=1)
        if self.dtype is not None:
            check_choice("dtype", self.dtype, ("bfloat16", "float16", "float32"))


@dataclass
class RewardSettings:
    source: str = "judge"  # where every component comes from unless `sources` says otherwise
    components: list[str] = field(default_factory=lambda: list(COMPONENT_NAMES))  # the rewards computed
    sources: dict[str, str] = field(default_factory=dict)  # per component: judge | detector | a suite | module:factory
    combine: str = "product"  # product | mean_product | v2 | sum (rewards/combine.py)
    weights: dict[str, float] = field(default_factory=dict)  # per component, for combine: sum
    max_missing_fraction: float = 0.5  # a batch with more missing totals stops training
    judge: JudgeSettings = field(default_factory=JudgeSettings)  # the VLM judge, for judged components

    def __post_init__(self) -> None:
        check_choice("combine", self.combine, COMBINERS)
        if not self.components:
            raise FieldError("components", "name at least one reward component")
        if len(set(self.components)) != len(self.components):
            raise FieldError("components", f"a component is named twice in {self.components}")
        check_range("max_missing_fraction", self.max_missing_fraction, low=0, high=1)
        for name, weight in self.weights.items():
            check_range(f"weights.{name}", weight, low=0)

    def source_of(self, component: str) -> str:
        """Where a component comes from: its entry in ``sources``, else ``source``."""
        return self.sources.get(component, self.source)

    def uses(self, source: str) -> bool:
        return any(self.source_of(name) == source for name in self.components)

    def suites(self) -> list[str]:
        """The worlds or benchmarks (registry suites) whose exact rewards this config uses."""
        named = {self.source_of(name) for name in self.components}
        return sorted(n for n in named if n not in SOURCES and ":" not in n)


def _relative(path: str, base_dir: Path | None) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or base_dir is None else base_dir / candidate


def judge_prompts(settings: JudgeSettings, base_dir: Path | None = None) -> JudgePrompts:
    """The default questions, with any replaced by the text files named in ``settings.prompts``."""
    known = {f.name for f in fields(JudgePrompts)}
    texts = {}
    for key, path in settings.prompts.items():
        if key not in known:
            raise ValueError(f"judge.prompts.{key}: unknown prompt (choose from {', '.join(sorted(known))})")
        file = _relative(path, base_dir)
        if not file.is_file():
            raise ValueError(f"judge.prompts.{key}: {file}: no such file")
        texts[key] = file.read_text()
    return JudgePrompts(**texts)


def build_judge(settings: JudgeSettings, base_dir: Path | None = None) -> Judge:
    """The configured backend, behind the answer cache if one is named."""
    if settings.backend == "openai":
        judge: Judge = OpenAIJudge(settings.openai)
    elif settings.backend == "transformers":
        if not settings.model:
            raise ValueError("judge.model: the transformers backend needs a model path or hub id")
        from .local_judge import TransformersJudge

        judge = TransformersJudge.from_pretrained(
            settings.model, device=settings.device, dtype=settings.dtype, batch_size=settings.batch_size
        )
    else:
        raise ValueError(f"judge.backend must be openai or transformers, got {settings.backend!r}")
    if settings.cache:
        judge = CachedJudge(judge, _relative(settings.cache, base_dir))
    return judge


def _plugin(spec: str, name: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"sources.{name}: cannot import {spec!r} ({exc})") from None
    # A class is instantiated without arguments; a Reward instance or plain function is used as it is.
    return factory() if isinstance(factory, type) else factory


def build_reward(
    settings: RewardSettings,
    base_dir: Path | None = None,
    *,
    judge: Judge | None = None,
    max_missing_fraction: float | None = None,
) -> RewardPipeline:
    """The components named in ``settings`` from their sources, combined as configured.

    ``judge`` replaces the configured backend (tests, or a judge shared with other code). Errors are
    ValueError with a one-line message naming the setting.
    """
    components: dict[str, Any] = {}
    judged_prompts: JudgePrompts | None = None
    for name in settings.components:
        source = settings.source_of(name)
        if ":" in source:
            components[name] = _plugin(source, name)
            continue
        if name not in COMPONENT_NAMES:
            raise ValueError(f"components: {name!r} needs a plug-in source (sources.{name}: package.module:factory)")
        if source == "detector":
            if name != "r_ri":
                raise ValueError(f"sources.{name}: the detector can only ground objects (r_ri)")
            from .detector import DetectorLocator, YoloDetector
            from .grounding import LocatorGroundingReward

            components[name] = LocatorGroundingReward(DetectorLocator(YoloDetector(input_size=(256, 320, 416))))
        elif source == "judge":
            if settings.judge.box_format not in BOX_FORMATS:
                raise ValueError(f"judge.box_format must be one of {', '.join(BOX_FORMATS)}")
            if judge is None:
                judge = build_judge(settings.judge, base_dir)
            if judged_prompts is None:
                judged_prompts = judge_prompts(settings.judge, base_dir)
            components[name] = _judge_reward(name, judge, judged_prompts, settings.judge)
        elif source in registry.names() and name in registry.get(source).reward_components:
            components[name] = registry.get(source).reward_components[name]()
        else:
            suites = [n for n in registry.names() if registry.get(n).reward_components]
            raise ValueError(
                f"sources.{name}: unknown source {source!r} (choose from {', '.join([*SOURCES, *suites])} "
                "or package.module:factory)"
            )
    limit = settings.max_missing_fraction if max_missing_fraction is None else max_missing_fraction
    return RewardPipeline(components, settings.combine, settings.weights, max_missing_fraction=limit)


def _judge_reward(name: str, judge: Judge, prompts: JudgePrompts, settings: JudgeSettings) -> Reward:
    from .grounding import GroundingReward
    from .image_prompt import ImagePromptReward
    from .semantic import SemanticReward
    from .spatial import SpatialReward

    common = dict(prompts=prompts, image_pixels=settings.image_pixels, max_tokens=settings.max_tokens)
    if name == "r_ri":
        return GroundingReward(judge, box_format=settings.box_format, **common)
    cls = {"r_sem": SemanticReward, "r_spa": SpatialReward, "r_pi": ImagePromptReward}[name]
    return cls(judge, **common)
