"""Loading both checkpoint layouts, conversion, and parity with the original module tree."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gotr1.chain import LAYOUT_TOKENS
from gotr1.model.loading import CheckpointError, convert_checkpoint, load_janus
from gotr1.model.original_layout import convert_original_state_dict, map_original_key
from gotr1.model.reference import ReferenceParts, reference_generate
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.model.tiny import build_tiny_tokenizer
from gotr1.model.tokens import SpecialTokenIds, encode_prompt, prepare_tokenizer

from .original_janus import OriginalJanus


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A tiny checkpoint in DeepSeek's original layout, its tokenizer lacking the four layout tokens."""
    raw = build_tiny_tokenizer(add_layout_tokens=False)
    ids = dict(bos_token_id=raw.bos_token_id, eos_token_id=raw.eos_token_id, pad_token_id=raw.pad_token_id)
    torch.manual_seed(1)
    net = OriginalJanus(vocab_size=len(raw) + 12, ids=ids).eval()
    with torch.no_grad():  # non-trivial norms and biases so a misplaced tensor shows in the numbers
        for _name, p in net.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    directory = net.save_checkpoint(tmp_path_factory.mktemp("orig") / "ckpt", raw)
    return net, raw, directory


def test_key_map_covers_every_original_tensor(original):
    net, _, _ = original
    converted = convert_original_state_dict(net.state_dict())
    assert "lm_head.weight" in converted
    assert "model.vision_model.encoder.layers.0.self_attn.q_proj.weight" in converted
    assert not any("attn_pool" in k or "codebook_used" in k for k in converted)
    assert (
        map_original_key("gen_vision_model.decoder.conv_blocks.1.upsample.conv.weight")
        == "model.vqmodel.decoder.up.1.upsample.conv.weight"
    )
    assert map_original_key("gen_vision_model.encoder.mid.1.q.bias") == "model.vqmodel.encoder.mid.attn_1.q.bias"
    assert map_original_key("gen_aligner.layers.2.weight") == "model.generation_aligner.hidden_layers.0.weight"


def test_unknown_original_keys_are_listed():
    with pytest.raises(ValueError, match="surprise.weight"):
        convert_original_state_dict({"surprise.weight": torch.zeros(1), "gen_embed.weight": torch.zeros(2, 2)})


def test_original_layout_loads_with_release_token_ids(original):
    _, raw, directory = original
    bundle = load_janus(directory, device="cpu")
    assert bundle.layout == "original"
    vocab = bundle.tokenizer.get_vocab()
    # The release calls add_tokens([box_start, box_end, obj_start, obj_end]) on the stock tokenizer.
    assert [vocab[t] for t in LAYOUT_TOKENS] == list(range(len(raw), len(raw) + 4))
    assert bundle.ids == SpecialTokenIds.from_tokenizer(bundle.tokenizer)
    assert bundle.ids.pad == raw.convert_tokens_to_ids("<｜▁pad▁｜>")
    assert bundle.num_image_tokens == 16 and bundle.image_size == 16


def test_original_layout_numbers_match_the_original_tree(original):
    net, raw, directory = original
    bundle = load_janus(directory, device="cpu")
    model = bundle.model
    ours, theirs = ReferenceParts.from_janus(model), net.parts()
    tokenizer = bundle.tokenizer
    ids = torch.tensor([encode_prompt(tokenizer, "a red <|obj_start|>vase<|obj_end|> (1,2)", bundle.ids.bos)])
    with torch.no_grad():
        h_ours = ours.backbone(inputs_embeds=ours.embed_tokens(ids)).last_hidden_state
        h_theirs = theirs.backbone(inputs_embeds=theirs.embed_tokens(ids)).last_hidden_state
        torch.testing.assert_close(ours.lm_head(h_ours), theirs.lm_head(h_theirs))  # text logits
        torch.testing.assert_close(ours.gen_head(h_ours), theirs.gen_head(h_theirs))  # image-head logits
        codes = torch.randint(0, 64, (2, 16))
        torch.testing.assert_close(ours.gen_embed(codes), theirs.gen_embed(codes))
        torch.testing.assert_close(ours.decode(codes), theirs.decode(codes), atol=1e-5, rtol=1e-4)  # pixels
        pixels = torch.randn(1, 3, 8, 8)
        vision = model.model.vision_model(pixels).last_hidden_state
        torch.testing.assert_close(vision, net.vision_model.vision_tower(pixels), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.model.aligner(vision), net.aligner.layers(vision))


def test_original_layout_greedy_two_phase_matches_original_code(original):
    net, _, directory = original
    bundle = load_janus(directory, device="cpu")
    prompt = "a red circle to the left of a blue square"
    expected = reference_generate(
        net.parts(),
        encode_prompt(bundle.tokenizer, prompt, bundle.ids.bos),
        begin_of_image=bundle.ids.begin_of_image,
        pad=bundle.ids.pad,
        num_image_tokens=16,
        text_temperature=0,
        image_temperature=0,
        max_text_tokens=24,
        record_logits=True,
    )
    config = SamplingConfig(text_temperature=0, image_temperature=0, max_reasoning_tokens=24)
    got = TwoPhaseSampler(bundle).generate([prompt], config, record_logits=True)[0]
    assert torch.equal(got.text_ids, expected["text_ids"])
    assert torch.equal(got.image_ids, expected["image_ids"])
    n = len(expected["text_logits"])
    torch.testing.assert_close(got.text_logits[:n], expected["text_logits"])
    torch.testing.assert_close(got.image_logits, expected["image_logits"], atol=1e-4, rtol=1e-4)  # CFG logits
    assert np.abs(np.asarray(got.images[0], dtype=int) - expected["pixels"][0].astype(int)).max() <= 1


def test_convert_writes_a_direct_transformers_checkpoint(original, tmp_path):
    _, _, directory = original
    src = load_janus(directory, device="cpu")
    out = convert_checkpoint(directory, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "janus"
    assert (out / "model.safetensors").is_file()
    dst = load_janus(out, device="cpu")
    assert dst.layout == "transformers"
    assert dst.tokenizer.get_vocab() == src.tokenizer.get_vocab()
    ids = torch.tensor([[dst.ids.bos, 5, 6, 7, dst.ids.begin_of_image]])
    with torch.no_grad():
        torch.testing.assert_close(dst.model(input_ids=ids).logits, src.model(input_ids=ids).logits, rtol=0, atol=0)


def test_transformers_layout_round_trip(tiny_bundle, tmp_path):
    tiny_bundle.save(tmp_path / "ckpt")
    loaded = load_janus(tmp_path / "ckpt", device="cpu")
    ids = torch.tensor([[loaded.ids.bos, 10, 11, loaded.ids.begin_of_image]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, tiny_bundle.model(input_ids=ids).logits)
    assert loaded.ids == tiny_bundle.ids


def test_missing_weights_are_an_error_not_random_init(tiny_bundle, tmp_path):
    path = tiny_bundle.save(tmp_path / "ckpt") / "model.safetensors"
    state = load_file(str(path))
    state.pop("model.generation_head.vision_head.weight")
    save_file(state, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="generation_head.vision_head.weight"):
        load_janus(tmp_path / "ckpt", device="cpu")


def test_original_layout_missing_weight_is_listed(original, tmp_path):
    net, raw, _ = original
    directory = net.save_checkpoint(tmp_path / "broken", raw)
    state = load_file(str(directory / "model.safetensors"))
    state.pop("gen_vision_model.decoder.conv_out.bias")
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="decoder.conv_out.bias"):
        load_janus(directory, device="cpu")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such checkpoint directory"),
        (lambda p: p.mkdir(), "no config.json"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{bad json")), "invalid JSON"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text('{"model_type": "bert"}')), "neither"),
    ],
)
def test_bad_paths_give_one_line_errors(tmp_path, make, message):
    path = tmp_path / "ckpt"
    make(path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_janus(path, device="cpu")
    assert "\n" not in str(info.value)


def test_prepare_tokenizer_is_idempotent():
    tok = build_tiny_tokenizer(add_layout_tokens=False)
    first = prepare_tokenizer(tok)
    assert prepare_tokenizer(tok) == first
    assert tok.convert_ids_to_tokens(first) == list(LAYOUT_TOKENS)
