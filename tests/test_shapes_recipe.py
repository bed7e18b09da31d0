"""The shapes-world recipe and evaluation, end to end at toy scale (plumbing, not quality)."""

import json

import pytest
import torch
from transformers import JanusVQVAE

from gotr1.cli import main
from gotr1.model.image_tokens import decode_codes, encode_codes
from gotr1.model.loading import load_janus
from gotr1.train.sft import SFTConfig
from gotr1.worlds.shapes.grammar import ShapesGrammar
from gotr1.worlds.shapes.recipe import pretrain, sft_records
from gotr1.worlds.shapes.text_tokenizer import build_text_tokenizer
from gotr1.worlds.shapes.vq import VQSpec


@pytest.fixture(scope="module")
def tokenizers_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes") / "tokenizers"
    build_text_tokenizer(ShapesGrammar()).save_pretrained(out / "tokenizer")
    torch.manual_seed(0)
    JanusVQVAE(VQSpec(codebook_size=64).config()).save_pretrained(out / "vq")
    return out


@pytest.fixture(scope="module")
def tiny_shapes_model(tokenizers_dir):
    out = tokenizers_dir.parent / "model"
    report = pretrain(tokenizers_dir, out, examples=24, sft=SFTConfig(steps=2, batch_size=4, log_every=1))
    assert report["examples"] == 24
    return out


def test_text_tokenizer_round_trips_chains_and_keeps_numbers_whole(tokenizers_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizers_dir / "tokenizer"))
    chain = (
        "The image shows <|obj_start|>small red circle<|obj_end|> <|box_start|>(94,312),(406,688)<|box_end|>"
        " to the left of <|obj_start|>large cyan square<|obj_end|> <|box_start|>(500,0),(1000,375)<|box_end|>."
    )
    ids = tok.encode(chain, add_special_tokens=False)
    assert tok.decode(ids) == chain
    pieces = tok.convert_ids_to_tokens(ids)
    for number in ("94", "312", "406", "688", "1000", "375"):
        assert number in pieces


def test_vq_codes_decode_through_transformers(tokenizers_dir):
    vq = JanusVQVAE.from_pretrained(str(tokenizers_dir / "vq"))
    import random

    from gotr1.worlds.shapes.render import layout_scene

    scene = layout_scene(ShapesGrammar().prompts("train", 1)[0].meaning, random.Random(0))
    codes = encode_codes(vq, [scene.image()])
    assert codes.shape == (1, 64) and int(codes.max()) < 64
    (image,) = decode_codes(vq, codes)
    assert image.size == (64, 64)


def test_sft_records_hold_prompt_chain_and_codes(tokenizers_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizers_dir / "tokenizer"))
    vq = JanusVQVAE.from_pretrained(str(tokenizers_dir / "vq"))
    records = sft_records(ShapesGrammar(), tok, vq, 5)
    boi = tok.convert_tokens_to_ids("<begin_of_image>")
    for r in records:
        assert r.prompt_ids[0] == tok.bos_token_id and r.text_ids[-1] == boi
        assert "<|box_start|>" in tok.decode(r.text_ids) and len(r.image_ids) == 64


def test_pretrained_model_loads_and_samples_64px_images(tiny_shapes_model):
    bundle = load_janus(tiny_shapes_model, device="cpu")
    assert bundle.num_image_tokens == 64 and bundle.image_size == 64
    report = json.loads((tiny_shapes_model / "pretrain.json").read_text())
    assert report["sft"]["steps_done"] == 2


def test_pretrain_reuses_a_checkpoints_vq_and_tokenizer(tiny_shapes_model, tmp_path, capsys):
    """`--tokenizers CHECKPOINT`: a new model shares the old one's image codes and text vocabulary."""
    out = tmp_path / "again"
    rc = main(
        [
            "shapes",
            "pretrain",
            "--tokenizers",
            str(tiny_shapes_model),
            "--out",
            str(out),
            "--examples",
            "8",
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--mixed-precision",
            "no",
            "--hidden-size",
            "32",
        ]
    )
    assert rc == 0
    old, new = load_janus(tiny_shapes_model, device="cpu"), load_janus(out, device="cpu")
    old_vq, new_vq = old.model.model.vqmodel.state_dict(), new.model.model.vqmodel.state_dict()
    assert old_vq.keys() == new_vq.keys() and all(torch.equal(old_vq[k], new_vq[k]) for k in old_vq)
    assert old.tokenizer.get_vocab() == new.tokenizer.get_vocab()
    assert new.model.config.text_config.hidden_size == 32
    assert json.loads((out / "pretrain.json").read_text())["device"] == "cpu"


def test_pretrain_names_what_it_expected_in_a_wrong_directory(tmp_path, capsys):
    assert main(["shapes", "pretrain", "--tokenizers", str(tmp_path), "--out", str(tmp_path / "m")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "build-tokenizer" in err[0]


def test_shapes_eval_command_scores_a_trained_model(tiny_shapes_model, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(
        [
            "shapes",
            "eval",
            "--model",
            str(tiny_shapes_model),
            "--categories",
            "heldout/all,val/spatial",
            "--limit",
            "4",
            "--batch-size",
            "4",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    results = json.loads((out / "results" / "shapes.json").read_text())
    for category in ("heldout/all", "val/spatial"):
        summary = results["summary"]["categories"][category]
        assert summary["images"] == 4 and 0.0 <= summary["score"] <= 1.0
    lines = [json.loads(line) for line in (out / "scores" / "shapes.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and {"r_sem", "r_spa", "r_ri", "r_pi", "product"} <= set(lines[0]["details"])
    assert (out / lines[0]["record"].replace(".json", ".png")).is_file()  # the plan drawn over the image
    assert "heldout/all" in capsys.readouterr().out
