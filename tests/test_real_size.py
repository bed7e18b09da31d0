"""Janus-Pro-1B / -7B with published shapes and random weights (`model.real_size`, `random:<size>`).

Full-size models are only laid out on the meta device (no memory); real-device checks use a model shrunk
in depth and width that keeps the vocabulary, the codebook and the 24 x 24 image grid.
"""

import pytest
import torch

from gotr1.chain import LAYOUT_TOKENS
from gotr1.model.real_size import (
    REAL_VOCAB_SIZE,
    _allocate,
    _initialize,
    _layout,
    build_random_janus,
    build_real_size_tokenizer,
    parameter_counts,
    real_size_config,
)
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.model.tokens import SpecialTokenIds, encode_prompt
from gotr1.models import load_model

# (hidden, layers, heads, intermediate) from deepseek-ai/Janus-Pro-{1B,7B} config.json language_config.
PUBLISHED = {"janus-pro-1b": (2048, 24, 16, 5632), "janus-pro-7b": (4096, 30, 32, 11008)}
# Total parameters: the hub lists 2.09B / 7.42B for the original checkpoints, which also hold SigLIP's unused
# attention-pooling head (~12.6M) that transformers' layout drops.
TOTAL_RANGE = {"janus-pro-1b": (2.06e9, 2.09e9), "janus-pro-7b": (7.39e9, 7.42e9)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small CPU ops are faster on one thread than on two contended ones; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return build_real_size_tokenizer()


@pytest.fixture(scope="module")
def small_fp32(tokenizer):
    return build_random_janus(
        "janus-pro-1b", dtype="float32", device="cpu", layers=1, shrink=16, seed=0, tokenizer=tokenizer
    )


@pytest.mark.parametrize("size", sorted(PUBLISHED))
def test_meta_build_has_published_shapes(size, tokenizer):
    bundle = build_random_janus(size, device="meta", dtype=torch.bfloat16, tokenizer=tokenizer)
    config = bundle.model.config
    text, vision, vq = config.text_config, config.vision_config, config.vq_config
    hidden, layers, heads, intermediate = PUBLISHED[size]
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (hidden, layers, heads)
    assert (text.intermediate_size, text.num_key_value_heads, text.head_dim) == (intermediate, heads, 128)
    assert text.vocab_size == REAL_VOCAB_SIZE == 102400
    assert text.max_position_embeddings == 16384
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (1024, 24, 16)
    assert (vision.image_size, vision.patch_size, vision.projection_dim) == (384, 16, hidden)
    assert (vq.num_embeddings, vq.embed_dim, list(vq.channel_multiplier)) == (16384, 8, [1, 1, 2, 2, 4])
    assert (vq.projection_dim, vq.image_token_embed_dim) == (hidden, hidden)
    assert (bundle.image_size, bundle.image_grid, bundle.num_image_tokens) == (384, 24, 576)
    assert bundle.model.generation_config.max_new_tokens == 576
    assert bundle.preferred_cfg_weight() == 5.0
    assert bundle.device.type == "meta"
    assert {p.dtype for p in bundle.model.parameters()} == {torch.bfloat16}
    lm = bundle.model.model.language_model
    assert bundle.model.lm_head.weight is not lm.embed_tokens.weight  # untied, as in the checkpoints
    assert bundle.model.model.generation_head.vision_head.out_features == 16384

    counts = parameter_counts(bundle.model)
    embed = REAL_VOCAB_SIZE * hidden
    per_layer = 4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden  # attention, SwiGLU MLP, 2 norms
    assert counts["language_model"] == embed + layers * per_layer + hidden
    assert counts["lm_head"] == embed
    assert 3.0e8 < counts["vision"] < 3.3e8  # SigLIP-L (~303M) + aligner
    assert 7.0e7 < counts["vq"] < 7.4e7  # LlamaGen VQ-16 (~72M)
    lo, hi = TOTAL_RANGE[size]
    assert lo < counts["total"] < hi
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_tokenizer_has_the_real_vocabulary_size_and_valid_special_ids(tokenizer):
    assert len(tokenizer) == REAL_VOCAB_SIZE
    ids = SpecialTokenIds.from_tokenizer(tokenizer)
    bundle_ids = build_random_janus("janus-pro-1b", device="meta", tokenizer=tokenizer).ids
    assert bundle_ids == ids
    for token_id in (ids.bos, ids.pad, ids.begin_of_image, ids.eos):
        assert 0 <= token_id < REAL_VOCAB_SIZE
    layout = tokenizer.convert_tokens_to_ids(list(LAYOUT_TOKENS))
    assert layout == list(range(REAL_VOCAB_SIZE - len(LAYOUT_TOKENS), REAL_VOCAB_SIZE))
    chain = "a red circle<|obj_start|>circle<|obj_end|><|box_start|>(1,2),(3,4)<|box_end|>"
    encoded = tokenizer.encode(chain, add_special_tokens=False)
    assert set(layout) <= set(encoded) and max(encoded) < REAL_VOCAB_SIZE
    assert tokenizer.decode(encoded) == chain
    assert tokenizer.decode([50_000]) == "<|reserved_50000|>"  # every id decodes
    assert encode_prompt(tokenizer, "a cat", ids.bos)[0] == ids.bos


def test_unknown_size_and_bad_shrink_are_errors(tokenizer):
    with pytest.raises(ValueError, match="janus-pro-1b, janus-pro-7b"):
        build_random_janus("janus-pro-3b", device="meta", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="shrink"):
        real_size_config("janus-pro-1b", tokenizer, shrink=3)
    with pytest.raises(ValueError, match="layers"):
        real_size_config("janus-pro-1b", tokenizer, layers=0)


def test_load_model_random_spec(tokenizer):
    with pytest.raises(ValueError) as err:
        load_model("random:nope")
    message = str(err.value)
    assert "\n" not in message
    assert "'nope'" in message and "random:janus-pro-1b" in message and "random:janus-pro-7b" in message
    bundle = load_model("random:janus-pro-7b", dtype="bfloat16", device="meta")
    assert bundle.source == "random:janus-pro-7b"
    assert bundle.model.config.text_config.hidden_size == 4096
    assert next(bundle.model.parameters()).dtype == torch.bfloat16


def test_allocation_and_init_cover_every_tensor(tokenizer):
    """Poison the freshly allocated storage: transformers' init must overwrite every parameter and buffer."""
    model = _layout(real_size_config("janus-pro-1b", tokenizer, layers=1, shrink=16), torch.float32)
    _allocate(model, torch.device("cpu"))
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.fill_(float("nan") if t.is_floating_point() else -7)
    _initialize(model, seed=0)
    stale = [
        name
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if (t.isnan().any() if t.is_floating_point() else (t == -7).any())
    ]
    assert stale == []
    q = model.model.language_model.layers[0].self_attn.q_proj.weight
    assert 0.015 < float(q.detach().std()) < 0.025  # normal(0, initializer_range=0.02)


def test_seeded_and_built_in_the_target_dtype(small_fp32, tokenizer):
    same = build_random_janus("janus-pro-1b", dtype="float32", device="cpu", layers=1, shrink=16, tokenizer=tokenizer)
    other = build_random_janus(
        "janus-pro-1b", dtype="float32", device="cpu", layers=1, shrink=16, seed=1, tokenizer=tokenizer
    )
    a, b, c = (x.model.state_dict() for x in (small_fp32, same, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["lm_head.weight"], c["lm_head.weight"])
    assert small_fp32.model.config.text_config.num_hidden_layers == 1
    assert small_fp32.num_image_tokens == 576
    assert {p.dtype for p in small_fp32.model.parameters()} == {torch.float32}


def test_shrunk_model_samples_a_chain_and_576_image_tokens(small_fp32):
    config = SamplingConfig(max_reasoning_tokens=4)
    (gen,) = TwoPhaseSampler(small_fp32).generate(["a red circle left of a blue square"], config, decode_images=False)
    assert 1 <= len(gen.text_ids) <= 5 and int(gen.text_ids[-1]) == small_fp32.ids.begin_of_image
    assert gen.image_ids.shape == (1, 576)
    assert 0 <= int(gen.image_ids.min()) and int(gen.image_ids.max()) < 16384
    assert torch.isfinite(gen.image_logprobs).all()


def _prefill_logits(bundle):
    ids = torch.tensor([encode_prompt(bundle.tokenizer, "a red circle", bundle.ids.bos)])
    with torch.inference_mode():
        hidden = bundle.model.model.language_model(input_ids=ids).last_hidden_state[:, -1]
        return bundle.model.lm_head(hidden), bundle.model.model.generation_head(hidden)


def test_shrunk_bfloat16_model_prefills(tokenizer):
    """bfloat16 runs a prefill only: 576 image steps in bfloat16 on CPU take too long for the fast suite."""
    bundle = build_random_janus(
        "janus-pro-1b", dtype=torch.bfloat16, device="cpu", layers=1, shrink=16, tokenizer=tokenizer
    )
    assert {p.dtype for p in bundle.model.parameters()} == {torch.bfloat16}
    text_logits, image_logits = _prefill_logits(bundle)
    assert text_logits.shape == (1, REAL_VOCAB_SIZE) and image_logits.shape == (1, 16384)
    assert text_logits.dtype == torch.bfloat16
    assert torch.isfinite(text_logits.float()).all() and torch.isfinite(image_logits.float()).all()


@pytest.mark.slow
def test_shrunk_bfloat16_model_samples(tokenizer):
    bundle = build_random_janus(
        "janus-pro-1b", dtype=torch.bfloat16, device="cpu", layers=1, shrink=16, tokenizer=tokenizer
    )
    (gen,) = TwoPhaseSampler(bundle).generate(["a cat"], SamplingConfig(max_reasoning_tokens=4), decode_images=False)
    assert gen.image_ids.shape == (1, 576)


def test_a_smaller_image_grid_is_sampled_and_decoded(tiny_tokenizer):
    """Benchmarks time fewer image steps than a whole image: the sampler, transformers and the VQ decoder
    all follow `set_image_grid`."""
    from gotr1.model.image_tokens import set_image_grid
    from gotr1.model.loading import JanusBundle
    from gotr1.model.tiny import build_tiny_janus

    model, tok = build_tiny_janus(tiny_tokenizer, seed=0)
    bundle = JanusBundle(model, tok, SpecialTokenIds.from_tokenizer(tok))
    side = model.config.vq_config.num_patches
    with torch.inference_mode():
        full = model.decode_image_tokens(torch.zeros((1, side * side), dtype=torch.long))
    pixels_per_token = full.shape[1] // side
    set_image_grid(model, 4)
    (gen,) = TwoPhaseSampler(bundle).generate(["a red circle"], SamplingConfig(max_reasoning_tokens=3))
    assert bundle.num_image_tokens == 4 and gen.image_ids.shape == (1, 4)
    assert gen.images[0].size == (2 * pixels_per_token, 2 * pixels_per_token)
    with pytest.raises(ValueError, match="square"):
        set_image_grid(model, 8)
