"""The engine shared by the demo and the server: batched jobs draw what they would alone, given chains are
rendered as given, and rewards score typed prompts or say why they could not."""

import numpy as np
import pytest

from gotr1.model.loading import PromptTooLong
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.models import builtin_model, load_model
from gotr1.rewards.config import RewardSettings, build_reward
from gotr1.serving.engine import Engine, Job
from gotr1.worlds.shapes.parse import read_prompt

pytestmark = pytest.mark.skipif(builtin_model() is None, reason="no shipped model")
PROMPT = "a red circle to the left of a blue square"
CHAIN = "<|obj_start|>green triangle<|obj_end|> <|box_start|>(100,100),(500,600)<|box_end|>"


@pytest.fixture(scope="module")
def bundle():
    return load_model(None, device="cpu")


def _pixels(image):
    return np.asarray(image)


def test_rows_of_several_requests_draw_what_each_draws_alone(bundle):
    sampling = SamplingConfig(cfg_weight=3.0, max_reasoning_tokens=120)
    group = TwoPhaseSampler(bundle).generate([PROMPT], sampling, num_generations=3, seeds=[5])
    engine = Engine(bundle, name="m", sampling=sampling)
    jobs = [Job("two green squares", 9, 0), Job(PROMPT, 5, 2), Job(PROMPT, 5, 0), Job("a blue star", 1, 0, chain=CHAIN)]
    samples = engine.run(jobs)
    assert [s.job for s in samples] == jobs
    assert samples[1].chain == group[2].chain and samples[2].chain == group[0].chain
    assert np.array_equal(_pixels(samples[1].image), _pixels(group[2].images[0]))
    alone = engine.run([Job("two green squares", 9, 0)])[0]
    assert alone.chain == samples[0].chain and np.array_equal(_pixels(alone.image), _pixels(samples[0].image))
    assert samples[3].chain == CHAIN and samples[3].record()["objects"] == [
        {"name": "green triangle", "box": [100, 100, 500, 600]}
    ]


def test_sample_indices_need_one_generation_per_prompt(bundle):
    with pytest.raises(ValueError, match="sample_indices"):
        TwoPhaseSampler(bundle).generate([PROMPT], SamplingConfig(), num_generations=2, sample_indices=[0])


def test_rewards_score_prompts_in_the_worlds_language_and_say_why_not_otherwise(bundle):
    rewards = build_reward(RewardSettings(source="shapes"))
    engine = Engine(bundle, name="m", rewards=rewards, read_prompt=read_prompt, rewards_name="shapes")
    scored, unreadable = engine.run([Job(PROMPT, 1), Job("a photo of a cat", 1)])
    assert set(scored.scores.components) == {"r_sem", "r_spa", "r_ri", "r_pi"}
    assert scored.scores.total is not None and "rewards" in scored.record()
    assert unreadable.scores is None and "not in the shapes" in unreadable.score_note


def test_a_failing_judge_is_reported_on_each_sample_never_a_zero(bundle):
    class Down:
        def evaluate(self, prompts, chains, images):
            raise ConnectionError("judge at 127.0.0.1:9 refused the connection")

    sample = Engine(bundle, name="m", rewards=Down()).run([Job(PROMPT, 1)])[0]
    assert sample.scores is None and "refused the connection" in sample.score_note


def test_a_prompt_too_long_for_the_context_is_a_one_line_error(bundle):
    engine = Engine(bundle, name="m")
    engine.check_prompt(PROMPT)
    with pytest.raises(PromptTooLong, match="context of 1024 tokens"):
        engine.check_prompt("a red circle " * 400)
