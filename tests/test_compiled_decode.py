"""The compiled decode path (model/static_decode.py) against the eager one, the shared unconditional
prefill, and the CPU decoding attention."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gotr1.model.attention import DECODING_ATTENTION, decoding_attention, segmented_attention
from gotr1.model.kv_cache import PreallocatedCache
from gotr1.model.loading import JanusBundle
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler, _left_pad, _positions
from gotr1.model.static_decode import (
    CAPACITY_BUCKET,
    LENGTH_BUCKETS,
    Segment,
    SegmentShape,
    StaticDecoder,
    bucketed,
    length_bucket,
)
from gotr1.model.teacher_forcing import unconditional_ids
from gotr1.model.tiny import build_tiny_janus
from gotr1.model.tokens import SpecialTokenIds, encode_prompt
from gotr1.train.grpo import GRPOConfig, GRPOTrainer, TrainerSetupError

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
    "filtered, 2 images per chain": dict(text_top_k=40, text_top_p=0.9, image_top_k=50),
    "no CFG": dict(cfg_weight=1.0, text_temperature=0.7),
}


IMAGES_PER_CHAIN = {"filtered, 2 images per chain": 2}  # the call's shape, beside the settings


@pytest.mark.parametrize("name", list(SETTINGS))
def test_static_steps_give_the_eager_paths_tokens(tiny_bundle, name):
    settings = SETTINGS[name]
    config = SamplingConfig(max_reasoning_tokens=40, **settings)
    call = dict(num_generations=3, images_per_chain=IMAGES_PER_CHAIN.get(name, 1), decode_images=False, seed=5)
    sampler = TwoPhaseSampler(tiny_bundle)
    eager = sampler.generate(PROMPTS, config, **call)
    if settings is SETTINGS["sampled"]:  # chains that close at different steps, and at the cap
        assert len({len(g.text_ids) for g in eager}) > 1 and any(g.hit_token_cap for g in eager)
    static = sampler.generate(PROMPTS, dataclasses.replace(config, compile="static"), **call)
    _assert_same_samples(eager, static)


def test_static_steps_give_the_eager_paths_images_for_fixed_chains(tiny_bundle):
    config = SamplingConfig(max_reasoning_tokens=30)
    call = dict(num_generations=2, decode_images=False)
    sampler = TwoPhaseSampler(tiny_bundle)
    chains = [[g.chain for g in sampler.generate(PROMPTS, config, **call)[i * 2 : i * 2 + 2]] for i in range(2)]
    eager = sampler.generate(PROMPTS, config, chains=chains, **call)
    static = sampler.generate(PROMPTS, dataclasses.replace(config, compile="static"), chains=chains, **call)
    _assert_same_samples(eager, static)


@pytest.mark.parametrize("path", ["none", "static"])
def test_a_chain_shared_by_a_group_is_prefilled_once_with_the_same_samples(tiny_bundle, path):
    """G copies of one fixed chain (one plan drawn G times) take one prefill per prompt; each sample is still
    the one it would be beside a different chain (same prompt, seed and index)."""
    config = SamplingConfig(max_reasoning_tokens=20, compile=path)
    call = dict(num_generations=2, decode_images=False)
    sampler = TwoPhaseSampler(tiny_bundle)
    chain, other = (g.chain for g in sampler.generate(PROMPTS[:1], config, **call))
    shared = sampler.generate(PROMPTS, config, chains=[[chain, chain], [other, other]], **call)
    mixed = sampler.generate(PROMPTS, config, chains=[[chain, other], [chain, other]], **call)
    _assert_same_samples([shared[0], shared[3]], [mixed[0], mixed[3]])
    assert not torch.equal(shared[0].image_ids, shared[1].image_ids)  # the two samples still differ


def test_compiled_steps_give_the_eager_paths_tokens(tiny_bundle):
    """torch.compile (inductor on the CPU): greedy and sampled with the same keys, float32."""
    sampler = TwoPhaseSampler(tiny_bundle)
    call = dict(num_generations=2, decode_images=False)
    for settings in (SETTINGS["greedy"], SETTINGS["sampled"]):
        config = SamplingConfig(max_reasoning_tokens=24, **settings)
        eager = sampler.generate(PROMPTS, config, **call)
        compiled = sampler.generate(PROMPTS, dataclasses.replace(config, compile="default"), **call)
        _assert_same_samples(eager, compiled)
        # A second call reuses the compilation and the workspaces (their buffers stay where they were).
        buffers = [t.data_ptr() for t in sampler.static_decoder("default")._workspaces["image"].step.keys]
        again = sampler.generate(PROMPTS, dataclasses.replace(config, compile="default"), **call)
        _assert_same_samples(eager, again)
        assert [t.data_ptr() for t in sampler.static_decoder("default")._workspaces["image"].step.keys] == buffers
    # Freed workspaces (GRPO frees them before training) are made anew, with the same results.
    sampler.release_workspaces()
    assert sampler.static_decoder("default")._workspaces == {}
    _assert_same_samples(eager, sampler.generate(PROMPTS, dataclasses.replace(config, compile="default"), **call))


def test_frozen_weights_give_the_eager_paths_tokens_and_follow_a_weight_change(tiny_tokenizer):
    """Inductor's freezing bakes the weights in: the decoder compiles anew when a weight changes in place,
    and GRPO, which changes them every step, refuses it."""
    model, tokenizer = build_tiny_janus(tiny_tokenizer, seed=0)
    bundle = JanusBundle(model.requires_grad_(False), tokenizer, SpecialTokenIds.from_tokenizer(tokenizer))
    sampler = TwoPhaseSampler(bundle)
    config = SamplingConfig(max_reasoning_tokens=16, **SETTINGS["greedy"])
    call = dict(num_generations=2, decode_images=False)
    frozen = dataclasses.replace(config, compile="frozen")
    _assert_same_samples(sampler.generate(PROMPTS, config, **call), sampler.generate(PROMPTS, frozen, **call))
    with torch.no_grad():
        model.model.generation_head.vision_head.weight.mul_(-1.0)
    changed = sampler.generate(PROMPTS, config, **call)
    _assert_same_samples(changed, sampler.generate(PROMPTS, frozen, **call))
    with pytest.raises(TrainerSetupError, match="frozen.*GRPO trains"):
        GRPOTrainer(bundle, GRPOConfig(), lambda *a: ([], {}), lambda s, r: [], sampling=frozen)


def test_static_path_closes_chains_at_the_cap_and_stops_checking_after_all_close(tiny_bundle):
    sampler = TwoPhaseSampler(tiny_bundle)
    capped = SamplingConfig(max_reasoning_tokens=5, compile="static")
    for gen in sampler.generate(PROMPTS, capped, num_generations=2, decode_images=False):
        assert gen.hit_token_cap and len(gen.text_ids) == 6
        assert int(gen.text_ids[-1]) == tiny_bundle.ids.begin_of_image


def test_static_path_runs_under_autocast(tiny_bundle):
    """GRPO samples under accelerate's autocast: the cache then holds bf16 keys while hidden states are float32."""
    config = SamplingConfig(max_reasoning_tokens=12, compile="static")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = TwoPhaseSampler(tiny_bundle).generate(PROMPTS, config, num_generations=2, decode_images=False)
    assert len(got) == 4
    for gen in got:
        assert gen.image_ids.shape == (1, tiny_bundle.num_image_tokens)
        assert torch.isfinite(gen.image_logprobs).all() and torch.isfinite(gen.text_logprobs).all()


def test_decode_path_settings_are_checked(tiny_bundle):
    with pytest.raises(ValueError, match="compile: must be one of"):
        SamplingConfig(compile="fast")
    with pytest.raises(ValueError, match="record_logits"):
        TwoPhaseSampler(tiny_bundle).generate(PROMPTS, SamplingConfig(compile="default"), record_logits=True)


def test_cli_offers_every_decode_path():
    from gotr1.arguments import COMPILE_CHOICES
    from gotr1.model.static_decode import COMPILE_MODES

    assert COMPILE_CHOICES == COMPILE_MODES


def test_capacities_are_bucketed():
    assert bucketed(1) == CAPACITY_BUCKET
    assert bucketed(CAPACITY_BUCKET) == CAPACITY_BUCKET
    assert bucketed(CAPACITY_BUCKET + 1) == 2 * CAPACITY_BUCKET
    assert [length_bucket(n) for n in (1, 16, 17, 100, 129, 600, 700, 1024, 1025, 1300)] == [
        16, 16, 32, 128, 256, 640, 768, 1024, 1280, 1536,
    ]  # fmt: skip


def test_typical_calls_meet_only_the_listed_shapes(tiny_bundle, monkeypatch):
    """Prompts of other lengths and chains of other lengths, 1-4 images each: every workspace's text-dependent
    segment lengths are buckets, and a prompt's length within a bucket changes no shape."""
    seen = []
    workspace = StaticDecoder.workspace

    def record(self, phase, rows, shared, steps, dtype, device):
        seen.append((phase, rows, tuple((s.groups, s.group_size, s.length) for s in shared), steps))
        return workspace(self, phase, rows, shared, steps, dtype, device)

    monkeypatch.setattr(StaticDecoder, "workspace", record)
    sampler = TwoPhaseSampler(tiny_bundle)
    sampling = SamplingConfig(max_reasoning_tokens=40, compile="static")
    prompts = [  # 70, 77 and 97 tokens with the chat template: two 16-column buckets, one length bucket
        "two small blue squares",
        "a red circle beside a blue square",
        "a large yellow star above a green heart on the left of a small red circle",
    ]
    for prompt in prompts:
        for images in (1, 2, 4):
            sampler.generate([prompt], sampling, num_generations=images, seed=len(prompt))
    assert {length for *_, shared, _ in seen for *_, length in shared} <= set(LENGTH_BUCKETS)
    lengths = {len(encode_prompt(tiny_bundle.tokenizer, p, tiny_bundle.ids.bos)) for p in prompts}
    assert len(lengths) == 3
    assert len({length_bucket(n) for n in lengths}) == 1  # the prompts share one bucket ...
    for images in (1, 2, 4):  # ... so each image count meets one text-phase shape, whatever the prompt
        assert len({s for s in seen if s[0] == "text" and s[1] == images}) == 1


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


def test_unconditional_steps_read_one_shared_prefix_and_equal_prefilling_every_row(tiny_bundle):
    """The compiled path's unconditional rows: one [first, pad, ...] prefix per first token, kept once, and each
    row's <begin_of_image> step read over it give what prefilling each row whole gives (its step's keys and
    values, its hidden state), and the prefix columns are the longest row's."""
    sampler = TwoPhaseSampler(tiny_bundle)
    ids = tiny_bundle.ids
    lengths, firsts, width = [7, 12, 12, 4], [ids.bos, ids.bos, 17, 17], 12
    rows = type("Rows", (), {})()
    rows.next_pos = torch.tensor(lengths)
    rows.first_token = torch.tensor(firsts)
    with torch.inference_mode():
        prefixes, step_keys, step_values, hidden = sampler._unconditional_steps(rows)
        seqs = [unconditional_ids(f, n, ids.pad, ids.begin_of_image) for f, n in zip(firsts, lengths)]
        tokens, full_mask = _left_pad(seqs, ids.pad, "cpu", width=width)
        expected_cache = PreallocatedCache(len(step_keys), width)
        expected = sampler._forward(sampler.embed(tokens), full_mask, _positions(full_mask), expected_cache)
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-5)
    assert set(prefixes) == {ids.bos, 17}
    for i, want in enumerate(expected_cache.layers):
        torch.testing.assert_close(step_keys[i], want.keys[:, :, -1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step_values[i], want.values[:, :, -1], rtol=1e-5, atol=1e-5)
        for first, longest in ((ids.bos, 1), (17, 2)):  # rows 1 and 2 are 12 long: no left padding
            shared = prefixes[first].layers[i]
            assert shared.prefix_keys.shape[0] == 1 and shared.prefix_keys.shape[2] == 11  # once, not per row
            torch.testing.assert_close(shared.prefix_keys[0], want.keys[longest, :, :11], rtol=1e-5, atol=1e-5)


def test_the_compiled_image_phase_builds_no_per_row_unconditional_cache(tiny_bundle, monkeypatch):
    """With CFG, the compiled path reads the unconditional prefix once per prompt: the per-row left-padded
    cache (the eager path's) is never built, and the tokens are the eager path's."""
    sampling = SamplingConfig(max_reasoning_tokens=12, compile="static")
    eager_sampling = dataclasses.replace(sampling, compile="none")
    eager = TwoPhaseSampler(tiny_bundle).generate(["a red circle"], eager_sampling, num_generations=3)

    def refuse(*args, **kwargs):
        raise AssertionError("the compiled path built a per-row unconditional cache")

    monkeypatch.setattr(TwoPhaseSampler, "_unconditional_prefix", refuse)
    compiled = TwoPhaseSampler(tiny_bundle).generate(["a red circle"], sampling, num_generations=3)
    assert all(torch.equal(a.image_ids, b.image_ids) for a, b in zip(eager, compiled))


@pytest.mark.parametrize("per_kv", [1, 4])
def test_segmented_attention_equals_sdpa_over_each_rows_whole_cache(per_kv):
    """Rows reading a prefix shared by their group, a segment of their own and a per-row step segment get
    what SDPA gives over each row's keys laid end to end (with grouped-query heads)."""
    torch.manual_seed(0)
    kv_heads, dim, rows = 2, 16, 6
    module = type("Attention", (), {"layer_idx": 0})()
    shapes = [SegmentShape(2, 3, 0, 5), SegmentShape(3, 1, 0, 4), SegmentShape(rows, 1, 0, 7)]
    segments = [Segment(s, kv_heads, dim, 1, torch.float32, "cpu") for s in shapes]
    for seg in segments:
        seg.keys[0].normal_(), seg.values[0].normal_()
        seg.mask.copy_(torch.rand(seg.mask.shape) > 0.3)
    segments[-1].mask[:, :, 0] = True  # every row sees at least its own token
    query = torch.randn(rows, kv_heads * per_kv, 1, dim)
    got = segmented_attention(module, query, segments, scaling=0.25)
    for r in range(rows):
        keys, values, seen = [], [], []
        for seg in segments:
            group, member = divmod(r - seg.first_row, seg.group_size)
            if 0 <= r - seg.first_row < seg.mask.shape[0] * seg.group_size:
                keys.append(seg.keys[0][group]), values.append(seg.values[0][group])
                seen.append(seg.mask[group, member])
        key = torch.cat(keys, 1).repeat_interleave(per_kv, 0)
        value = torch.cat(values, 1).repeat_interleave(per_kv, 0)
        want = F.scaled_dot_product_attention(query[r], key, value, attn_mask=torch.cat(seen)[None], scale=0.25)
        torch.testing.assert_close(got[r, 0], want[:, 0], rtol=1e-5, atol=1e-5)


def test_decoding_attention_is_set_while_sampling_and_always_restored(tiny_bundle):
    lm = tiny_bundle.model.model.language_model
    assert lm.config._attn_implementation == "sdpa"
    for device in ("cpu", torch.device("cuda", 0)):
        with decoding_attention(lm, device):
            assert lm.config._attn_implementation == DECODING_ATTENTION
        assert lm.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="boom"):
        with decoding_attention(lm, "cpu"):
            raise RuntimeError("boom")
    assert lm.config._attn_implementation == "sdpa"


def test_decoding_attention_reads_segments_only_when_a_step_passes_them(monkeypatch):
    """Prefills and the eager path's cache views stay with transformers' SDPA."""
    import gotr1.model.attention as attention

    calls = []
    monkeypatch.setattr(attention, "segmented_attention", lambda *a, **k: calls.append("segments"))
    monkeypatch.setattr(attention, "sdpa_attention_forward", lambda *a, **k: calls.append("sdpa") or (None, None))
    module = type("Attention", (), {"layer_idx": 0})()
    query, buffer = torch.randn(2, 4, 1, 8), torch.randn(2, 4, 10, 8)
    attention._decoding_attention(module, query, buffer, buffer, None, segments=[object()], scaling=0.3)
    attention._decoding_attention(module, query, buffer[:, :, :6], buffer[:, :, :6], None)
    attention._decoding_attention(module, torch.randn(2, 4, 3, 8), buffer, buffer, None)  # a prefill
    assert calls == ["segments", "sdpa", "sdpa"]
