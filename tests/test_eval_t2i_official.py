"""The official T2I-CompBench scorer's model paths on tiny random models (built here, nothing downloaded):
BLIP-VQA's [ENC]/[DEC] handling and P(yes) normalisation, CLIPScore, the OWLv2 stand-in for UniDet, DPT depth,
and the official result files each category writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gotr1.eval.records import EvalImage, ImageJob, ScorerError
from gotr1.eval.rules.t2i_compbench import Detection
from gotr1.eval.scorers.blip_vqa import BlipVqa
from gotr1.eval.scorers.clip_score import ClipScore, center_crop, resize_short_side
from gotr1.eval.scorers.depth import DepthEstimator, official_depth_map
from gotr1.eval.scorers.open_vocab import OpenVocabDetector, non_max_suppression
from gotr1.eval.scorers.t2i_official import RESULT_FILES, T2IOfficialScorer

transformers = pytest.importorskip("transformers")

WORDS = (
    "a an the green blue red bench bowl car cat dog girl frog person hat rack coat apple plate on top of left "
    "right next to near in front behind hidden two three cats dogs and is was yes no photo"
).split()


# ---------------------------------------------------------------------------------------------------------
# tiny models


@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", ".", ",", "'", "s", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"))
    # BLIP's tokenizer: BERT's vocabulary, then [DEC] (bos), then [ENC]
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def _blip_model(vocab_size: int, bos: int, seed: int = 0):
    config = transformers.BlipConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            encoder_hidden_size=32,
            bos_token_id=bos,
            sep_token_id=3,
            pad_token_id=0,
            max_position_embeddings=64,
        ),
        vision_config=dict(
            hidden_size=32,
            image_size=32,
            patch_size=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
        ),
    )
    torch.manual_seed(seed)
    return transformers.BlipForQuestionAnswering(config).eval()


@pytest.fixture(scope="module")
def blip(bert_tokenizer):
    model = _blip_model(len(bert_tokenizer), bert_tokenizer.convert_tokens_to_ids("[DEC]"))
    processor = transformers.BlipProcessor(
        image_processor=transformers.BlipImageProcessorPil(), tokenizer=bert_tokenizer
    )
    # 48 px against the config's 32: the position-embedding interpolation path runs, as 480 vs 384 does for real
    return BlipVqa(model, processor, image_size=48, batch_size=2, model_id="tiny-blip")


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    letters = "abcdefghijklmnopqrstuvwxyz"
    # id 0 is a plain letter: OWLv2 masks queries whose first id is 0, and the start token must not be
    tokens = [
        *letters,
        *(c + "</w>" for c in letters),
        *(w + "</w>" for w in WORDS),
        ".</w>",
        "'</w>",
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


@pytest.fixture(scope="module")
def clip(clip_tokenizer):
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=len(clip_tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=16,
        ),
        projection_dim=16,
    )
    torch.manual_seed(1)
    model = transformers.CLIPModel(config).eval()
    processor = transformers.CLIPProcessor(
        image_processor=transformers.CLIPImageProcessorPil(), tokenizer=clip_tokenizer
    )
    return ClipScore(model, processor, batch_size=2, model_id="tiny-clip")


@pytest.fixture(scope="module")
def detector(clip_tokenizer):
    config = transformers.Owlv2Config(
        text_config=dict(
            vocab_size=len(clip_tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id,
            pad_token_id=clip_tokenizer.eos_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=32,
    )
    torch.manual_seed(2)
    model = transformers.Owlv2ForObjectDetection(config).eval()
    processor = transformers.Owlv2Processor(
        image_processor=transformers.Owlv2ImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=clip_tokenizer
    )
    # threshold 0: every one of the 16 patch boxes survives scoring, so the geometry is always exercised
    return OpenVocabDetector(model, processor, threshold=0.0, batch_size=3, model_id="tiny-owlv2")


@pytest.fixture(scope="module")
def depth():
    config = transformers.DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 16, 16],
        fusion_hidden_size=16,
        head_hidden_size=8,
        reassemble_factors=[4, 2, 1, 0.5],
    )
    torch.manual_seed(3)
    return DepthEstimator(transformers.DPTForDepthEstimation(config).eval(), None, input_size=32, model_id="tiny-dpt")


def _picture(seed: int, size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------------------
# BLIP-VQA


def _manual_p_yes(blip: BlipVqa, image: Image.Image, question: str, first_token: int) -> float:
    """BLIP's vqa_prob written out step by step, with a chosen first question token."""
    model = blip.model
    with torch.no_grad():
        embeds = model.vision_model(pixel_values=blip.pixel_values([image]), interpolate_pos_encoding=True)[0]
        encoded = blip.tokenizer([question], return_tensors="pt")
        ids = encoded["input_ids"].clone()
        ids[0, 0] = first_token
        states = model.text_encoder(
            input_ids=ids, attention_mask=encoded["attention_mask"], encoder_hidden_states=embeds
        )[0]
        logits = model.text_decoder(
            input_ids=torch.tensor([[blip.dec_id]]),
            encoder_hidden_states=states,
            encoder_attention_mask=encoded["attention_mask"],
        ).logits[0, 0]
    probs = torch.softmax(logits, dim=-1)
    return float(probs[blip.yes_id] / (probs[blip.yes_id] + probs[blip.no_id]))


def test_blip_token_ids_come_from_tokenizer_and_config(blip, bert_tokenizer):
    assert blip.yes_id == bert_tokenizer.convert_tokens_to_ids("yes")
    assert blip.no_id == bert_tokenizer.convert_tokens_to_ids("no")
    assert blip.dec_id == blip.model.config.text_config.bos_token_id == bert_tokenizer.convert_tokens_to_ids("[DEC]")
    assert blip.enc_id == bert_tokenizer.convert_tokens_to_ids("[ENC]") == blip.dec_id + 1


def test_blip_replaces_cls_with_enc_and_decodes_from_dec(blip):
    seen = {}

    def encoder_input(module, args, kwargs):
        seen["question"] = kwargs["input_ids"].clone()

    def decoder_output(module, args, kwargs, output):
        seen.update(start=kwargs["input_ids"].clone(), logits=output.logits.clone())

    encoder_hook = blip.model.text_encoder.register_forward_pre_hook(encoder_input, with_kwargs=True)
    decoder_hook = blip.model.text_decoder.register_forward_hook(decoder_output, with_kwargs=True)
    try:
        ((p_yes,),) = blip.yes_probabilities([_picture(0)], [["a green bench?"]])
    finally:
        encoder_hook.remove()
        decoder_hook.remove()
    assert seen["question"][0, 0].item() == blip.enc_id  # [CLS] replaced
    assert seen["question"][0, 1].item() == blip.tokenizer.convert_tokens_to_ids("a")
    assert seen["start"].tolist() == [[blip.dec_id]]  # one decoding step, from [DEC]
    probs = torch.softmax(seen["logits"][0, 0], dim=-1)
    assert p_yes == pytest.approx(float(probs[blip.yes_id] / (probs[blip.yes_id] + probs[blip.no_id])), abs=1e-6)
    assert float(probs[blip.yes_id]) < p_yes or float(probs[blip.no_id]) < 1 - p_yes  # renormalised, not raw


def test_blip_matches_manual_forward_and_enc_matters(blip, bert_tokenizer):
    image = _picture(1)
    ((p_yes,),) = blip.yes_probabilities([image], [["a red car?"]])
    assert p_yes == pytest.approx(_manual_p_yes(blip, image, "a red car?", blip.enc_id), abs=1e-5)
    cls = bert_tokenizer.cls_token_id
    assert abs(p_yes - _manual_p_yes(blip, image, "a red car?", cls)) > 1e-6  # what transformers alone would do


def test_blip_batching_shares_images_and_keeps_order(blip):
    images = [_picture(i) for i in range(3)]
    questions = [["a green bench?", "a blue bowl?"], [], ["a red car?"]]
    batched = blip.yes_probabilities(images, questions)
    assert [len(q) for q in batched] == [2, 0, 1]
    one_by_one = [blip.yes_probabilities([im], [qs])[0] for im, qs in zip(images, questions)]
    np.testing.assert_allclose(
        np.concatenate([np.array(q, dtype=float) for q in batched]),
        np.concatenate([np.array(q, dtype=float) for q in one_by_one]),
        atol=1e-5,
    )
    assert all(0.0 <= p <= 1.0 for q in batched for p in q)
    assert blip.pixel_values(images).shape == (3, 3, 48, 48)


def test_blip_official_vocabulary_ids_are_checked(bert_tokenizer):
    # a 30524-token text config is the real BLIP vocabulary: ids other than yes=2748, no=2053, [DEC]=30522 fail
    model = _blip_model(30524, 30522)
    processor = transformers.BlipProcessor(
        image_processor=transformers.BlipImageProcessorPil(), tokenizer=bert_tokenizer
    )
    with pytest.raises(ScorerError, match="differ from the official"):
        BlipVqa(model, processor)


# ---------------------------------------------------------------------------------------------------------
# CLIP


def test_clip_preprocessing_matches_torchvision_geometry():
    image = Image.new("RGB", (300, 200))
    resized = resize_short_side(image, 224, Image.Resampling.BICUBIC)
    assert resized.size == (336, 224)  # int(224 * 300 / 200) = 336
    assert center_crop(resized, 224).size == (224, 224)


def test_clip_similarity_is_plain_cosine(clip):
    images = [_picture(5), _picture(6, (80, 48))]
    texts = ["a green bench", "a red car"]
    values = clip.similarities(images, texts)
    with torch.no_grad():
        image_features = clip.model.get_image_features(pixel_values=clip.pixel_values(images)).pooler_output
        tokens = clip.tokenizer(texts, padding=True, return_tensors="pt")
        text_features = clip.model.get_text_features(**tokens).pooler_output
    expected = torch.nn.functional.cosine_similarity(image_features, text_features).tolist()
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert all(-1.0 <= v <= 1.0 for v in values)
    # pairs in order, a repeated text embedded once and still paired right
    assert clip.similarities([images[1], images[0]], [texts[1], texts[1]])[0] == pytest.approx(values[1], abs=1e-5)


# ---------------------------------------------------------------------------------------------------------
# OWLv2 stand-in and depth


def test_detector_boxes_in_official_frame_sorted(detector):
    images = [_picture(7, (512, 512)), _picture(8, (768, 512))]
    found = detector.detect(images, [["cat", "dog"], ["cat", "dog"]])
    for detections, frame in zip(found, [(479, 479), (480, 320)]):
        assert detections, "threshold 0 keeps every patch box"
        assert {d.label for d in detections} <= {"cat", "dog"}
        scores = [d.score for d in detections]
        assert scores == sorted(scores, reverse=True)
        for d in detections:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 <= x2 <= frame[0] and 0 <= y1 <= y2 <= frame[1]
    # batched with a shared query list == one image at a time
    alone = detector.detect(images[1:], [["cat", "dog"]])[0]
    assert [d.label for d in alone] == [d.label for d in found[1]]
    np.testing.assert_allclose([d.score for d in alone], [d.score for d in found[1]], atol=1e-5)
    assert detector.detect([images[0]], [[]]) == [[]]


def test_detector_threshold_and_nms(detector):
    strict = OpenVocabDetector(detector.model, detector.processor, threshold=1.0)
    assert strict.detect([_picture(9)], [["cat"]]) == [[]]
    a = Detection("cat", 0.9, (0.0, 0.0, 100.0, 100.0))
    overlapping = Detection("cat", 0.8, (10.0, 0.0, 110.0, 100.0))  # IoU 90/110 > 0.5: suppressed
    other_label = Detection("dog", 0.7, (10.0, 0.0, 110.0, 100.0))
    apart = Detection("cat", 0.95, (300.0, 0.0, 400.0, 100.0))
    assert non_max_suppression([a, overlapping, other_label, apart]) == [apart, a, other_label]


def test_official_depth_map_normalisation_and_frame():
    prediction = np.tile(np.linspace(5.0, 10.0, 32, dtype=np.float32), (32, 1))  # nearer to the right
    depth_map = official_depth_map(prediction, (768, 512))
    assert depth_map.shape == (320, 480)  # (height, width) of the detection frame
    assert depth_map.min() == 0.0 and depth_map.max() == 1.0
    assert np.allclose(depth_map * 255, np.round(depth_map * 255))  # 8-bit, as the official PNG round trip
    assert depth_map[:, -1].mean() > depth_map[:, 0].mean()
    assert not official_depth_map(np.ones((8, 8), dtype=np.float32), (64, 64)).any()  # constant -> zeros


def test_depth_estimator_maps(depth):
    images = [_picture(10, (512, 512)), _picture(11, (64, 96))]
    maps = depth.depth_maps(images)
    assert maps[0].shape == (479, 479) and maps[1].shape == (480, 320)
    for depth_map in maps:
        assert depth_map.dtype == np.float32 and 0.0 <= depth_map.min() and depth_map.max() <= 1.0


# ---------------------------------------------------------------------------------------------------------
# the scorer and its official files


def _images(root: Path, category: str, prompts: list[str], per_prompt: int = 2, objects=None) -> list[EvalImage]:
    images = []
    for p, prompt in enumerate(prompts):
        for k in range(per_prompt):
            index = p * per_prompt + k
            path = f"samples/{prompt}_{index:06d}.png"
            (root / "samples").mkdir(parents=True, exist_ok=True)
            _picture(100 + index, (64, 64)).save(root / path)
            job = ImageJob(category, prompt, p, k, 42 + k, path, f"records/{index:06d}.json")
            record = None if objects is None else {"chain": "...", "objects": objects.get(prompt, [])}
            images.append(EvalImage(job, root, record))
    return images


@pytest.fixture()
def scorer(blip, clip, detector, depth):
    return T2IOfficialScorer(blip=blip, clip=clip, detector=detector, depth=depth, chunk_size=3)


def _read(out_dir: Path, key: str) -> list[dict]:
    return json.loads((out_dir / RESULT_FILES[key]).read_text())


def test_attribute_category_scores_and_files(scorer, tmp_path):
    objects = {
        "a green bench and a blue bowl": [
            {"name": "green bench", "box": [0, 0, 500, 500]},
            {"name": "blue bowl", "box": [500, 500, 900, 900]},
        ]
    }
    images = _images(tmp_path, "color", ["a green bench and a blue bowl", "a red car and a blue cat"], objects=objects)
    scores = scorer.score("color", images, tmp_path)
    json.dumps([s.to_dict() for s in scores], allow_nan=False)  # details are plain JSON
    assert [s.path for s in scores] == [im.job.path for im in images]
    for s in scores:
        assert 0.0 <= s.score <= 1.0
        assert s.details["attribute"]["questions"] == [q + "?" for q in s.details["attribute"]["phrases"]]
        assert s.record == f"records/{images[scores.index(s)].job.path[-10:-4]}.json"
    assert scores[0].details["attribute"]["phrases"] == ["a green bench", "a blue bowl"]
    assert [s.plan_score for s in scores] == [1.0, 1.0, 0.0, 0.0]  # second prompt: empty plan -> 0
    rows = _read(tmp_path, "blip")
    assert [r["question_id"] for r in rows] == [0, 1, 2, 3]
    assert all(isinstance(r["answer"], str) and re.fullmatch(r"\d\.\d{4}", r["answer"]) for r in rows)
    assert [float(r["answer"]) for r in rows] == [s.score for s in scores]
    assert (tmp_path / "annotation_blip" / "blip_vqa_score.txt").read_text().startswith("BLIP-VQA score:")


def test_spatial_category_uses_file_numbers_and_plan(scorer, tmp_path):
    objects = {
        "a girl on the left of a frog": [
            {"name": "little girl", "box": [0, 400, 300, 600]},
            {"name": "frog", "box": [600, 400, 900, 600]},
        ]
    }
    images = _images(tmp_path, "spatial", ["a girl on the left of a frog"], per_prompt=3, objects=objects)
    images = images[1:]  # file numbers 1 and 2, at positions 0 and 1
    scores = scorer.score("spatial", images, tmp_path)
    json.dumps([s.to_dict() for s in scores], allow_nan=False)  # details are plain JSON
    for s in scores:
        assert s.details["spatial_2d"]["objects"] == ["person", "frog"]
        assert s.details["spatial_2d"]["relation"] == "on the left of"
        assert s.score == 0.0 or 0.5 <= s.score <= 1.0
        # the plan: both found with confidence 1, girl left of frog without overlap -> 0.25 + 0.25 + 0.5
        assert s.plan_score == 1.0
    rows = _read(tmp_path, "spatial_2d")
    assert [r["question_id"] for r in rows] == [1, 2]
    assert all(isinstance(r["answer"], float) for r in rows)
    mapping = json.loads((tmp_path / "labels/annotation_obj_detection_2d/mapping.json").read_text())
    assert mapping == [
        {"image": "a girl on the left of a frog_000001.png", "question_id": 1},
        {"image": "a girl on the left of a frog_000002.png", "question_id": 2},
    ]
    assert (tmp_path / "labels/annotation_obj_detection_2d/avg_score.txt").read_text().startswith("score avg:")


def test_non_spatial_is_clipscore_without_plan(scorer, tmp_path):
    images = _images(tmp_path, "non_spatial", ["a girl is walking a dog."], objects={})
    scores = scorer.score("non_spatial", images, tmp_path)
    assert all(s.plan_score is None and -1 <= s.score <= 1 for s in scores)
    assert [r["answer"] for r in _read(tmp_path, "clip")] == [s.score for s in scores]
    assert (tmp_path / "annotation_clip" / "score_avg.txt").exists()


def test_complex_category_writes_all_four_files(scorer, tmp_path):
    prompts = ["The red hat was on top of the brown coat rack.", "The black phone was resting on the brown charger."]
    objects = {
        prompts[0]: [
            {"name": "red hat", "box": [300, 0, 600, 300]},
            {"name": "brown coat rack", "box": [300, 300, 600, 900]},
        ]
    }
    scores = scorer.score("complex", _images(tmp_path, "complex", prompts, objects=objects), tmp_path)
    json.dumps([s.to_dict() for s in scores], allow_nan=False)  # details are plain JSON
    for key in ("blip", "spatial_2d", "clip", "three_in_one"):
        assert len(_read(tmp_path, key)) == 4
    first, phone = scores[0], scores[2]
    assert first.details["three_in_one"]["parts"] == ["spatial", "attribute"]
    assert first.details["spatial_2d"]["relation"] == "on top of"
    assert first.details["clip"]["text"] == "The hat was on top of the coat rack ."
    parts = first.details["three_in_one"]
    assert first.score == pytest.approx((parts["spatial"] + parts["attribute"]) / 2)
    assert phone.details["three_in_one"]["parts"] == ["action", "attribute"]
    # plan: attribute 1 (both phrases planned); spatial: "on top of" matches no relation of the rule, so its
    # position term is 0 (the plan is read with the rule's position term alone): mean 0.5
    assert first.plan_score == pytest.approx(0.5)
    assert [r["answer"] for r in _read(tmp_path, "three_in_one")] == pytest.approx([s.score for s in scores])


def test_numeracy_category(scorer, tmp_path):
    objects = {
        "two cats and a dog": [
            {"name": "cat", "box": [0, 0, 300, 300]},
            {"name": "cat", "box": [400, 0, 700, 300]},
            {"name": "dog", "box": [0, 500, 300, 900]},
        ]
    }
    images = _images(tmp_path, "numeracy", ["two cats and a dog"], objects=objects)
    scores = scorer.score("numeracy", images, tmp_path)
    json.dumps([s.to_dict() for s in scores], allow_nan=False)  # details are plain JSON
    for s in scores:
        assert s.details["numeracy"]["names"] == ["cat", "dog"]
        assert s.details["numeracy"]["counts"] == [2, 1]
        assert s.score in {0.0, 0.25, 0.5, 0.75, 1.0}
        assert s.plan_score == 1.0  # two cats and one dog planned
    rows = _read(tmp_path, "numeracy")
    assert [r["question_id"] for r in rows] == [0, 1]
    assert (tmp_path / "annotation_num" / "score.txt").read_text().startswith("total:")


def test_3d_category(scorer, tmp_path):
    images = _images(tmp_path, "3d_spatial", ["a cat in front of a dog"])
    scores = scorer.score("3d_spatial", images, tmp_path)
    json.dumps([s.to_dict() for s in scores], allow_nan=False)  # details are plain JSON
    for s in scores:
        assert 0.0 <= s.score <= 1.0 and s.plan_score is None
        assert s.details["spatial_3d"]["relation"] == "in front of"
    assert len(_read(tmp_path, "spatial_3d")) == 2
    assert (tmp_path / "labels/annotation_obj_detection_3d/avg_result.txt").read_text().startswith("avg score is")


def test_unreadable_image_scores_none(scorer, tmp_path):
    images = _images(tmp_path, "color", ["a green bench and a blue bowl"])
    images[1].path.write_bytes(b"not a png")
    scores = scorer.score("color", images, tmp_path)
    assert scores[0].score is not None
    assert scores[1].score is None and "cannot read" in scores[1].reason
    assert [r["question_id"] for r in _read(tmp_path, "blip")] == [0]


def test_models_load_lazily_and_fail_in_one_line(detector, tmp_path):
    missing = str(tmp_path / "no-such-model")
    scorer = T2IOfficialScorer(detector=detector, blip_model=missing, clip_model=missing, depth_model=missing)
    images = _images(tmp_path, "spatial", ["a cat next to a dog"])
    assert len(scorer.score("spatial", images, tmp_path)) == 2  # BLIP/CLIP/DPT never loaded
    with pytest.raises(ScorerError) as error:
        scorer.score("color", images, tmp_path)
    assert missing in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ScorerError, match="unknown category"):
        scorer.score("colour", images, tmp_path)
    assert any("UniDet replaced by tiny-owlv2" in note for note in scorer.notes)
    for loader in (BlipVqa, ClipScore, OpenVocabDetector, DepthEstimator):
        with pytest.raises(ScorerError) as error:
            loader.from_pretrained(missing)
        assert missing in str(error.value) and "\n" not in str(error.value)


def test_wrappers_load_from_local_folders(blip, clip, detector, depth, tmp_path):
    """The real loading path (hub id or local folder) on the tiny models saved to disk."""
    processors = {
        BlipVqa: transformers.BlipProcessor(
            image_processor=transformers.BlipImageProcessorPil(), tokenizer=blip.tokenizer
        ),
        ClipScore: transformers.CLIPProcessor(
            image_processor=transformers.CLIPImageProcessorPil(), tokenizer=clip.tokenizer
        ),
        OpenVocabDetector: detector.processor,
        DepthEstimator: transformers.DPTImageProcessorPil(),
    }
    wrappers = {BlipVqa: blip, ClipScore: clip, OpenVocabDetector: detector, DepthEstimator: depth}
    for loader, wrapper in wrappers.items():
        folder = tmp_path / loader.__name__
        wrapper.model.save_pretrained(folder)
        processors[loader].save_pretrained(folder)
        loaded = loader.from_pretrained(str(folder))
        assert loaded.model_id == str(folder)
        for name, value in wrapper.model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], value), name
    assert BlipVqa.from_pretrained(str(tmp_path / "BlipVqa")).enc_id == blip.enc_id


# ---------------------------------------------------------------------------------------------------------
# the whole path: `gotr1 eval t2i-compbench` samples, `gotr1 eval score --scorer official` reads the folder back


def test_cli_samples_then_scores_with_the_official_scorer(
    blip, clip, detector, bert_tokenizer, clip_tokenizer, tmp_path, capsys
):
    from gotr1.cli import main

    saved = {}
    for role, model, processor in (
        (
            "blip",
            blip.model,
            transformers.BlipProcessor(image_processor=transformers.BlipImageProcessorPil(), tokenizer=bert_tokenizer),
        ),
        (
            "clip",
            clip.model,
            transformers.CLIPProcessor(image_processor=transformers.CLIPImageProcessorPil(), tokenizer=clip_tokenizer),
        ),
        ("detector", detector.model, detector.processor),
    ):
        model.save_pretrained(tmp_path / role)
        processor.save_pretrained(tmp_path / role)
        saved[role] = tmp_path / role
    run = tmp_path / "run"
    assert (
        main(
            [
                "eval",
                "t2i-compbench",
                "--model",
                "tiny-random",
                "--max-reasoning-tokens",
                "12",
                "--categories",
                "color,spatial,non_spatial",
                "--images-per-prompt",
                "2",
                "--limit",
                "2",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "score",
                str(run),
                "--scorer",
                "official",
                *[arg for role, path in saved.items() for arg in ("--scorer-model", f"{role}={path}")],
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "color" in printed and "non_spatial" in printed and "note:" in printed
    blip_result = json.loads((run / "color" / "annotation_blip" / "vqa_result.json").read_text())
    assert [r["question_id"] for r in blip_result] == [0, 1, 2, 3]
    assert all(re.fullmatch(r"\d\.\d{4}", r["answer"]) for r in blip_result)
    assert (run / "spatial" / "labels" / "annotation_obj_detection_2d" / "vqa_result.json").is_file()
    assert (run / "non_spatial" / "annotation_clip" / "vqa_result.json").is_file()
    lines = [json.loads(line) for line in (run / "scores" / "official.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and {line["category"] for line in lines} == {"color", "spatial", "non_spatial"}
    results = json.loads((run / "results" / "official.json").read_text())
    assert results["summary"]["categories"]["color"]["images"] == 4
    assert any("UniDet" in note for note in results["notes"])  # the stand-in is named wherever its numbers are
    # the official scripts need samples/ to hold nothing but the images: scoring wrote beside it, never in it
    assert sorted(p.suffix for p in (run / "color" / "samples").iterdir()) == [".png"] * 4


def test_an_unloadable_scorer_model_is_a_one_line_error_that_keeps_the_run(tmp_path, capsys, monkeypatch):
    from gotr1.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub here: fail at once instead of retrying the network
    run = tmp_path / "run"
    assert (
        main(
            [
                "eval",
                "t2i-compbench",
                "--model",
                "tiny-random",
                "--max-reasoning-tokens",
                "8",
                "--categories",
                "color",
                "--images-per-prompt",
                "1",
                "--limit",
                "1",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    capsys.readouterr()
    assert main(["eval", "score", str(run), "--scorer", "official", "--scorer-model", f"blip={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gotr1: error:") and "nope" in err[0]
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
