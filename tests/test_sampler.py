"""The two-phase sampler: parity with the published algorithm and with transformers, batching, seeds."""

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from gotr1.model.reference import ReferenceParts, reference_generate
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.model.tokens import encode_prompt

PROMPTS = ["a red circle", "two small blue squares above a large yellow star, and a green heart"]
GREEDY = dict(text_temperature=0, image_temperature=0)


class _Recorder(LogitsProcessor):
    def __init__(self):
        self.steps = []

    def __call__(self, input_ids, scores):
        self.steps.append(scores.clone())
        return scores


def _reference(bundle, prompt, **kw):
    return reference_generate(
        ReferenceParts.from_janus(bundle.model),
        encode_prompt(bundle.tokenizer, prompt, bundle.ids.bos),
        begin_of_image=bundle.ids.begin_of_image,
        pad=bundle.ids.pad,
        num_image_tokens=bundle.num_image_tokens,
        **kw,
    )


@pytest.mark.parametrize("cfg_weight", [5.0, 1.0])
def test_greedy_batch_matches_published_algorithm_row_by_row(tiny_bundle, cfg_weight):
    config = SamplingConfig(max_reasoning_tokens=20, cfg_weight=cfg_weight, **GREEDY)
    got = TwoPhaseSampler(tiny_bundle).generate(PROMPTS, config, record_logits=True)
    for gen, prompt in zip(got, PROMPTS):
        ref = _reference(
            tiny_bundle,
            prompt,
            max_text_tokens=20,
            cfg_weight=cfg_weight,
            record_logits=True,
            text_temperature=0,
            image_temperature=0,
        )
        assert torch.equal(gen.text_ids, ref["text_ids"])
        assert torch.equal(gen.image_ids, ref["image_ids"])
        torch.testing.assert_close(gen.text_logits[: len(ref["text_logits"])], ref["text_logits"])
        torch.testing.assert_close(gen.image_logits, ref["image_logits"], atol=1e-4, rtol=1e-4)
        assert np.array_equal(np.asarray(gen.images[0]), ref["pixels"][0])


def test_image_phase_matches_transformers_generate(tiny_bundle):
    """Given the chains, our image tokens and CFG step logits equal transformers' Janus generate."""
    model, ids = tiny_bundle.model, tiny_bundle.ids
    sampler = TwoPhaseSampler(tiny_bundle)
    chains = [
        ["A <|obj_start|>red circle<|obj_end|> <|box_start|>(10,20),(300,400)<|box_end|> sits left."],
        ["Nothing much."],
    ]
    got = sampler.generate(PROMPTS, SamplingConfig(**GREEDY), chains=chains, record_logits=True)
    for gen in got:
        sequence = torch.cat([gen.prompt_ids, gen.text_ids])[None]
        recorder = _Recorder()
        with torch.no_grad():
            tokens = model.generate(
                sequence,
                attention_mask=torch.ones_like(sequence),
                generation_mode="image",
                do_sample=False,
                guidance_scale=5.0,
                logits_processor=LogitsProcessorList([recorder]),
            )
        assert torch.equal(gen.image_ids, tokens)
        assert int(gen.text_ids[-1]) == ids.begin_of_image
        with torch.no_grad():  # teacher-forced chains carry the model's log-probs of their tokens
            logits = model(input_ids=sequence).logits[0, -len(gen.text_ids) - 1 : -1]
        expected = torch.log_softmax(logits, -1).gather(-1, gen.text_ids[:, None]).squeeze(-1)
        torch.testing.assert_close(gen.text_logprobs, expected, atol=1e-5, rtol=1e-5)
        # The recorder sees transformers' raw [cond; uncond] head logits; combine them as CFG does.
        raw = torch.stack(recorder.steps, 1)
        combined = raw[1:] + 5.0 * (raw[:1] - raw[1:])
        torch.testing.assert_close(gen.image_logits, combined, atol=1e-4, rtol=1e-4)


def test_sampled_rows_do_not_depend_on_their_batch(tiny_bundle):
    sampler = TwoPhaseSampler(tiny_bundle)
    config = SamplingConfig(max_reasoning_tokens=16)
    together = sampler.generate(PROMPTS, config, num_generations=2, seeds=[7, 8])
    alone = sampler.generate(PROMPTS[1:], config, num_generations=2, seeds=[8])
    for a, b in zip(together[2:], alone):
        assert torch.equal(a.text_ids, b.text_ids)
        assert torch.equal(a.image_ids, b.image_ids)
        torch.testing.assert_close(a.text_logprobs, b.text_logprobs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.image_logprobs, b.image_logprobs, atol=1e-5, rtol=1e-5)


def test_seeds_reproduce_and_group_members_differ(tiny_bundle):
    sampler = TwoPhaseSampler(tiny_bundle)
    config = SamplingConfig(max_reasoning_tokens=16)
    first, second = (sampler.generate(PROMPTS[:1], config, num_generations=3, seed=3) for _ in range(2))
    assert [g.chain for g in first] == [g.chain for g in second]
    assert all(torch.equal(a.image_ids, b.image_ids) for a, b in zip(first, second))
    assert len({g.chain for g in first}) == 3  # G samples share the prefix, not the draws
    assert all(torch.equal(g.prompt_ids, first[0].prompt_ids) for g in first)
    other = sampler.generate(PROMPTS[:1], config, num_generations=3, seed=4)
    assert [g.chain for g in other] != [g.chain for g in first]


def test_logprobs_are_those_of_the_sampling_distribution(tiny_bundle):
    config = SamplingConfig(max_reasoning_tokens=12, text_temperature=0.7, image_temperature=1.3)
    for gen in TwoPhaseSampler(tiny_bundle).generate(PROMPTS, config, num_generations=2, record_logits=True):
        sampled = gen.text_ids[:12] if gen.hit_token_cap else gen.text_ids
        text_lp = torch.log_softmax(gen.text_logits[: len(sampled)] / 0.7, -1)
        torch.testing.assert_close(
            gen.text_logprobs[: len(sampled)], text_lp.gather(-1, sampled[:, None]).squeeze(-1), atol=1e-5, rtol=1e-5
        )
        image_lp = torch.log_softmax(gen.image_logits / 1.3, -1)
        torch.testing.assert_close(
            gen.image_logprobs, image_lp.gather(-1, gen.image_ids[..., None]).squeeze(-1), atol=1e-5, rtol=1e-5
        )


def test_token_cap_appends_begin_of_image(tiny_bundle):
    gen = TwoPhaseSampler(tiny_bundle).generate(PROMPTS[:1], SamplingConfig(max_reasoning_tokens=5, **GREEDY))[0]
    assert gen.hit_token_cap
    assert len(gen.text_ids) == 6 and int(gen.text_ids[-1]) == tiny_bundle.ids.begin_of_image
    assert gen.parsed.ended_with_image_start


def test_rows_that_stop_early_are_masked_not_padded_into_the_chain(tiny_bundle):
    """A chain that ends early keeps stepping masked; its numbers equal running it alone."""
    sampler = TwoPhaseSampler(tiny_bundle)
    boi = tiny_bundle.ids.begin_of_image
    # Top-k over a biased head: make <begin_of_image> likely so rows end at different lengths.
    lm_head = tiny_bundle.model.lm_head
    saved = lm_head.weight.data[boi].clone()
    try:
        lm_head.weight.data[boi] *= 6.0
        config = SamplingConfig(max_reasoning_tokens=30)
        together = sampler.generate(PROMPTS, config, num_generations=4, seeds=[1, 2])
        lengths = {len(g.text_ids) for g in together}
        assert len(lengths) > 1, "expected chains of different lengths"
        for g in together:
            alone = sampler.generate([g.prompt], config, num_generations=4, seeds=[g.seed])[g.sample_index]
            assert torch.equal(alone.text_ids, g.text_ids) and torch.equal(alone.image_ids, g.image_ids)
            assert (g.text_ids == boi).sum() == 1
    finally:
        lm_head.weight.data[boi] = saved


def test_images_per_chain_and_top_k_one_is_greedy(tiny_bundle):
    sampler = TwoPhaseSampler(tiny_bundle)
    gen = sampler.generate(PROMPTS[:1], SamplingConfig(max_reasoning_tokens=8), images_per_chain=3)[0]
    assert gen.image_ids.shape == (3, tiny_bundle.num_image_tokens) and len(gen.images) == 3
    assert len({tuple(r.tolist()) for r in gen.image_ids}) == 3
    greedy = sampler.generate(PROMPTS[:1], SamplingConfig(max_reasoning_tokens=8, **GREEDY))[0]
    top1 = sampler.generate(PROMPTS[:1], SamplingConfig(max_reasoning_tokens=8, text_top_k=1, image_top_k=1))[0]
    assert torch.equal(greedy.text_ids, top1.text_ids) and torch.equal(greedy.image_ids, top1.image_ids)


def test_bad_arguments_are_rejected(tiny_bundle):
    sampler = TwoPhaseSampler(tiny_bundle)
    with pytest.raises(ValueError, match="seeds"):
        sampler.generate(PROMPTS, seeds=[1])
    with pytest.raises(ValueError, match="chains"):
        sampler.generate(PROMPTS, chains=[["x"]])
    with pytest.raises(ValueError):
        sampler.generate(PROMPTS, num_generations=0)
    with pytest.raises(ValueError, match="seeds must fit in 64 bits"):
        sampler.generate(PROMPTS, seeds=[1, 2**63])
    for settings in ({"cfg_weight": 1e308}, {"text_temperature": float("nan")}, {"image_temperature": 101}):
        with pytest.raises(ValueError, match=f"^{next(iter(settings))}: "):
            SamplingConfig(**settings)
    with pytest.raises(ValueError, match="seed"):
        sampler.generate(PROMPTS, seed=2**63)


def test_cuda_forwards_leave_out_cudnn_attention_and_cpu_ones_are_untouched():
    """cuDNN's SDPA plans every new sequence shape (KV-cached decoding makes one per step): on an H100
    under bf16 it made a GRPO step 5x slower, so CUDA forwards allow every backend but that one."""
    import torch.backends.cuda as cuda_backends

    from gotr1.model.attention import attention_backends

    before = (
        cuda_backends.cudnn_sdp_enabled(),
        cuda_backends.flash_sdp_enabled(),
        cuda_backends.mem_efficient_sdp_enabled(),
        cuda_backends.math_sdp_enabled(),
    )
    with attention_backends(torch.device("cuda", 0)):
        assert not cuda_backends.cudnn_sdp_enabled()
        assert cuda_backends.flash_sdp_enabled() and cuda_backends.mem_efficient_sdp_enabled()
        assert cuda_backends.math_sdp_enabled()
    with attention_backends("cpu"):
        assert cuda_backends.cudnn_sdp_enabled() == before[0]
    assert (
        cuda_backends.cudnn_sdp_enabled(),
        cuda_backends.flash_sdp_enabled(),
        cuda_backends.mem_efficient_sdp_enabled(),
        cuda_backends.math_sdp_enabled(),
    ) == before
