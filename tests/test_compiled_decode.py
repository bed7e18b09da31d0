"""The compiled decode path (model/static_decode.py) against the eager one, the shared unconditional
prefill, and the CPU decoding attention."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gotr1.model.attention import DECODING_ATTENTION, decoding_attention, single_query_attention
from gotr1.model.kv_cache import PreallocatedCache
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler, _left_pad, _positions
from gotr1.model.static_decode import CAPACITY_BUCKET, StaticDecoder, bucketed
from gotr1.model.teacher_forcing import unconditional_ids

# Prompts of different lengths, so rows are left-padded and chains close at different steps.
PROMPTS = ["a red circle", "two small blue squares above a large yellow star, and a green heart"]


def _assert_same_samples(expected, got):
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        assert torch.equal(a.text_ids, b.text_ids), (a.text_ids, b.text_ids)
        assert torch.equal(a.image_ids, b.image_ids), int((a.image_ids != b.image_ids).sum())
        torch.testing.assert_close(a.text_logprobs, b.text_logprobs, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a.image_logprobs, b.image_logprobs, rtol=1e-4, atol=1e-4)
        assert a.hit_token_cap == b.hit_token_cap


SETTINGS = {
    "greedy": dict(text_temperature=0, image_temperature=0),
    "sampled": dict(),
    "filtered, 2 images per chain": dict(text_top_k=40, text_top_p=0.9, image_top_k=50, images_per_chain=2),
    "no CFG": dict(cfg_weight=1.0, text_temperature=0.7),
}


@pytest.mark.parametrize("settings", list(SETTINGS.values()), ids=list(SETTINGS))
def test_static_steps_give_the_eager_paths_tokens(tiny_bundle, settings):
    config = SamplingConfig(num_generations=3, max_reasoning_tokens=40, decode_images=False, seed=5, **settings)
    sampler = TwoPhaseSampler(tiny_bundle)
    eager = sampler.generate(PROMPTS, config)
    if settings is SETTINGS["sampled"]:  # chains that close at different steps, and at the cap
        assert len({len(g.text_ids) for g in eager}) > 1 and any(g.hit_token_cap for g in eager)
    static = sampler.generate(PROMPTS, dataclasses.replace(config, compile="static"))
    _assert_same_samples(eager, static)


def test_static_steps_give_the_eager_paths_images_for_fixed_chains(tiny_bundle):
    config = SamplingConfig(num_generations=2, max_reasoning_tokens=30, decode_images=False)
    sampler = TwoPhaseSampler(tiny_bundle)
    chains = [[g.chain for g in sampler.generate(PROMPTS, config)[i * 2 : i * 2 + 2]] for i in range(2)]
    eager = sampler.generate(PROMPTS, config, chains=chains)
    static = sampler.generate(PROMPTS, dataclasses.replace(config, compile="static"), chains=chains)
    _assert_same_samples(eager, static)


def test_compiled_steps_give_the_eager_paths_tokens(tiny_bundle):
    """torch.compile (inductor on the CPU): greedy and sampled with the same keys, float32."""
    sampler = TwoPhaseSampler(tiny_bundle)
    for settings in (SETTINGS["greedy"], SETTINGS["sampled"]):
        config = SamplingConfig(num_generations=2, max_reasoning_tokens=24, decode_images=False, **settings)
        eager = sampler.generate(PROMPTS, config)
        compiled = sampler.generate(PROMPTS, dataclasses.replace(config, compile="default"))
        _assert_same_samples(eager, compiled)
        # A second call reuses the compilation and the workspaces (their buffers stay where they were).
        buffers = [t.data_ptr() for t in sampler.static_decoder("default")._workspaces["image"].keys]
        again = sampler.generate(PROMPTS, dataclasses.replace(config, compile="default"))
        _assert_same_samples(eager, again)
        assert [t.data_ptr() for t in sampler.static_decoder("default")._workspaces["image"].keys] == buffers
    # Freed workspaces (GRPO frees them before training) are made anew, with the same results.
    sampler.release_workspaces()
    assert sampler.static_decoder("default")._workspaces == {}
    _assert_same_samples(eager, sampler.generate(PROMPTS, dataclasses.replace(config, compile="default")))


def test_static_path_closes_chains_at_the_cap_and_stops_checking_after_all_close(tiny_bundle):
    sampler = TwoPhaseSampler(tiny_bundle)
    capped = SamplingConfig(num_generations=2, max_reasoning_tokens=5, decode_images=False, compile="static")
    for gen in sampler.generate(PROMPTS, capped):
        assert gen.hit_token_cap and len(gen.text_ids) == 6
        assert int(gen.text_ids[-1]) == tiny_bundle.ids.begin_of_image


def test_static_path_runs_under_autocast(tiny_bundle):
    """GRPO samples under accelerate's autocast: the cache then holds bf16 keys while hidden states are float32."""
    config = SamplingConfig(num_generations=2, max_reasoning_tokens=12, decode_images=False, compile="static")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = TwoPhaseSampler(tiny_bundle).generate(PROMPTS, config)
    assert len(got) == 4
    for gen in got:
        assert gen.image_ids.shape == (1, tiny_bundle.num_image_tokens)
        assert torch.isfinite(gen.image_logprobs).all() and torch.isfinite(gen.text_logprobs).all()


def test_decode_path_settings_are_checked():
    with pytest.raises(ValueError, match="compile must be one of"):
        SamplingConfig(compile="fast")
    with pytest.raises(ValueError, match="record_logits"):
        SamplingConfig(compile="default", record_logits=True)


def test_cli_offers_every_decode_path():
    from gotr1.cli import COMPILE_CHOICES
    from gotr1.model.static_decode import COMPILE_MODES

    assert COMPILE_CHOICES == COMPILE_MODES


def test_capacities_are_bucketed():
    assert bucketed(1) == CAPACITY_BUCKET
    assert bucketed(CAPACITY_BUCKET) == CAPACITY_BUCKET
    assert bucketed(CAPACITY_BUCKET + 1) == 2 * CAPACITY_BUCKET


def test_static_decoder_refuses_attention_without_boolean_masks(tiny_bundle):
    model = tiny_bundle.model
    config = model.model.language_model.config
    before = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        with pytest.raises(ValueError, match="sdpa"):
            StaticDecoder(model, "static")
    finally:
        config._attn_implementation = before
    with pytest.raises(ValueError, match="mode"):
        StaticDecoder(model, "none")


def test_shared_unconditional_prefill_equals_prefilling_every_row(tiny_bundle):
    """One prefill of [first, pad, ...] plus a per-row <begin_of_image> step gives each row's whole
    unconditional prefill (keys, values and the hidden state at <begin_of_image>)."""
    sampler = TwoPhaseSampler(tiny_bundle)
    ids = tiny_bundle.ids
    lengths, firsts, width = [7, 12, 12, 4], [ids.bos, ids.bos, 17, 17], 12
    rows = type("Rows", (), {})()
    rows.mask = torch.ones((4, width), dtype=torch.long)
    rows.next_pos = torch.tensor(lengths)
    rows.first_token = torch.tensor(firsts)
    with torch.inference_mode():
        cache, mask, hidden = sampler._unconditional_prefix(rows, 1, 3)
        seqs = [unconditional_ids(f, n, ids.pad, ids.begin_of_image) for f, n in zip(firsts, lengths)]
        tokens, full_mask = _left_pad(seqs, ids.pad, "cpu", width=width)
        expected_cache = PreallocatedCache(len(cache.layers), width)
        expected = sampler._forward(sampler.embed(tokens), full_mask, _positions(full_mask), expected_cache)
    assert torch.equal(mask, full_mask)
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-5)
    held = full_mask.bool()[:, None, :, None]
    for got, want in zip(cache.layers, expected_cache.layers):
        assert got.length == width and got.capacity == width + 3
        torch.testing.assert_close(got.keys * held, want.keys * held, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.values * held, want.values * held, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 4])
def test_single_query_attention_equals_sdpa(groups):
    torch.manual_seed(0)
    module = type("Attention", (), {"num_key_value_groups": groups})()
    query = torch.randn(3, 8, 1, 16)
    key, value = torch.randn(3, 8 // groups, 10, 16), torch.randn(3, 8 // groups, 10, 16)
    mask = torch.rand(3, 1, 1, 10) > 0.3
    mask[..., -1] = True
    got, _ = single_query_attention(module, query, key, value, mask, scaling=0.25)
    repeat = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    want = F.scaled_dot_product_attention(query, *repeat, attn_mask=mask, scale=0.25).transpose(1, 2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(single_query_attention(module, query, key, value, additive, scaling=0.25)[0], want)


def test_decoding_attention_is_set_for_the_cpu_and_always_restored(tiny_bundle):
    lm = tiny_bundle.model.model.language_model
    assert lm.config._attn_implementation == "sdpa"
    with decoding_attention(lm, "cpu"):
        assert lm.config._attn_implementation == DECODING_ATTENTION
    assert lm.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="boom"):
        with decoding_attention(lm, "cpu"):
            raise RuntimeError("boom")
    assert lm.config._attn_implementation == "sdpa"
    with decoding_attention(lm, torch.device("cuda", 0)):
        assert lm.config._attn_implementation == "sdpa"


def test_cpu_decoding_takes_the_matmul_route_only_over_a_contiguous_cache(monkeypatch):
    """A cache view shorter than its buffer (the eager path's) stays with SDPA: CPU bmm would copy it per call."""
    import gotr1.model.attention as attention

    calls = []
    monkeypatch.setattr(attention, "single_query_attention", lambda *a, **k: calls.append("matmul") or (None, None))
    monkeypatch.setattr(attention, "sdpa_attention_forward", lambda *a, **k: calls.append("sdpa") or (None, None))
    module = type("Attention", (), {"num_key_value_groups": 1})()
    query = torch.randn(2, 4, 1, 8)
    buffer = torch.randn(2, 4, 10, 8)
    attention._decoding_attention(module, query, buffer, buffer, None)
    attention._decoding_attention(module, query, buffer[:, :, :6], buffer[:, :, :6], None)
    attention._decoding_attention(module, torch.randn(2, 4, 3, 8), buffer, buffer, None)  # a prefill
    assert calls == ["matmul", "sdpa", "sdpa"]
