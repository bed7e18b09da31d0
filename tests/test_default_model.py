"""The shipped shapes-world model: loads offline, writes valid plans that name what the prompt asks."""

import pytest

from gotr1.cli import DEFAULT_MODEL
from gotr1.model.loading import load_janus
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.worlds.shapes.grammar import ShapesGrammar
from gotr1.worlds.shapes.rewards import RSem, RSpa

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL / "config.json").is_file(), reason="no shipped model")


@pytest.fixture(scope="module")
def bundle():
    return load_janus(DEFAULT_MODEL, device="cpu")


def test_shipped_model_is_small_safetensors():
    weights = DEFAULT_MODEL / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size < 30 * 2**20


def test_plans_name_the_prompts_objects_most_of_the_time(bundle):
    prompt = "a red circle to the left of a blue square"
    gens = TwoPhaseSampler(bundle).generate([prompt], SamplingConfig(num_generations=8, cfg_weight=3.0,
                                                                     max_reasoning_tokens=200), seeds=[0])
    assert all(g.images[0].size == (64, 64) for g in gens)
    named = [g for g in gens if {o.name.split(" ", 1)[-1] for o in g.objects} == {"red circle", "blue square"}]
    assert len(named) >= 6
    assert sum(g.parsed.is_valid for g in gens) >= 7


def test_plans_score_well_on_semantics_and_layout(bundle):
    prompts = ShapesGrammar().prompts("val", 16)
    gens = TwoPhaseSampler(bundle).generate([p.text for p in prompts], SamplingConfig(cfg_weight=3.0,
                                                                                       max_reasoning_tokens=200))
    chains = [g.chain for g in gens]
    sem = RSem()(prompts, chains, [None] * len(chains))
    spa = RSpa()(prompts, chains, [None] * len(chains))
    assert sum(sem) / len(sem) > 0.7 and sum(spa) / len(spa) > 0.5
