"""The official GenEval scorer's model code paths on tiny random models built here (nothing is downloaded),
and the scorer end to end on a few PNGs in GenEval's layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gotr1.chain import Box, PlannedObject
from gotr1.eval.records import EvalImage, ImageJob, ImageScore, ScorerError
from gotr1.eval.rules.geneval import COLORS, GENEVAL_CLASSES, Detection, summarize
from gotr1.eval.scorers.clip_colour import GREY_BACKGROUND, ClipColourClassifier, colour_prompts, cut_out
from gotr1.eval.scorers.geneval_official import (
    GenEvalOfficialScorer,
    official_result_line,
    plan_detections,
    read_official_results,
    summarize_scores,
    write_official_results,
)
from gotr1.eval.scorers.mask2former import (
    Mask2FormerDetector,
    geneval_labels,
    mask_boxes,
    mmdet_resized_size,
    postprocess_instances,
)

# mmdetection's / transformers' COCO spellings, which GenEval renames at 64..66
MMDET_NAMES = [
    {"computer mouse": "mouse", "tv remote": "remote", "computer keyboard": "keyboard"}.get(n, n)
    for n in GENEVAL_CLASSES
]


@pytest.fixture(scope="module")
def tiny_mask2former():
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
    from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

    torch.manual_seed(0)
    swin = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=32,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=swin,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=32,
        num_queries=8,
        num_labels=80,
        id2label=dict(enumerate(MMDET_NAMES)),
    )
    model = Mask2FormerForUniversalSegmentation(config).eval()
    return model, Mask2FormerImageProcessorPil()


@pytest.fixture(scope="module")
def tiny_detector(tiny_mask2former):
    model, processor = tiny_mask2former
    return Mask2FormerDetector(model, processor, device="cpu", batch_size=4, scale=(96, 64))


@pytest.fixture(scope="module")
def tiny_clip():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    chars = sorted(ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return ClipColourClassifier(model, processor, device="cpu", batch_size=2)


# ---------------------------------------------------------------------------------------------
# Mask2Former, mmdetection-style


def test_mmdet_resize_rule():
    assert mmdet_resized_size(512, 512) == (800, 800)
    assert mmdet_resized_size(1024, 1024) == (800, 800)
    # scale = min(1333/640, 800/480) = 1.667: 640 -> int(1066.7 + 0.5) = 1067
    assert mmdet_resized_size(480, 640) == (800, 1067)
    # scale = min(1333/1000, 800/400) = 1.333: the long side caps it
    assert mmdet_resized_size(400, 1000) == (533, 1333)


def test_mask_boxes_end_one_past_the_last_pixel_and_are_zero_when_empty():
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:4, 2:7] = True  # rows 1..3, columns 2..6
    assert mask_boxes(masks).tolist() == [[2.0, 1.0, 7.0, 4.0], [0.0, 0.0, 0.0, 0.0]]


def test_postprocess_scores_are_class_prob_times_mean_mask_prob():
    # 2 queries, 3 classes (+ no object). Query 0 says class 1; its mask logits are +2 on a 2x3 block.
    class_logits = torch.tensor([[0.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    mask_logits = torch.full((2, 8, 8), -3.0)
    mask_logits[0, 2:4, 1:4] = 2.0
    labels, scores, boxes, masks = postprocess_instances(
        class_logits, mask_logits, (8, 8), (8, 8), (8, 8), max_per_image=3
    )
    best = int(scores.argmax())
    p_class = torch.softmax(class_logits[0], -1)[1]
    assert int(labels[best]) == 1
    # inside the mask every logit is 2: mean mask probability sigmoid(2)
    assert float(scores[best]) == pytest.approx(float(p_class * torch.sigmoid(torch.tensor(2.0))), rel=1e-5)
    assert boxes[best].tolist() == [1.0, 2.0, 4.0, 4.0]
    assert masks.shape == (3, 8, 8) and masks.dtype == torch.bool and int(masks[best].sum()) == 6


def test_postprocess_drops_the_padding_before_resizing_to_the_image():
    # padded input 8x8 of which the image is the top 4 rows; a mask only in the padding is empty
    class_logits = torch.tensor([[5.0, 0.0, 0.0]])
    mask_logits = torch.full((1, 8, 8), -3.0)
    mask_logits[0, 5:, :] = 3.0
    _, scores, boxes, masks = postprocess_instances(class_logits, mask_logits, (8, 8), (4, 8), (4, 8))
    assert masks.shape == (2, 4, 8) and not masks.any()
    assert scores.tolist() == [0.0, 0.0] and boxes.abs().sum() == 0


def test_labels_by_name_or_by_index():
    assert geneval_labels(dict(enumerate(MMDET_NAMES)), 80) == GENEVAL_CLASSES
    assert geneval_labels({i: f"LABEL_{i}" for i in range(80)}, 80) == GENEVAL_CLASSES
    shuffled = list(reversed(MMDET_NAMES))
    assert geneval_labels(dict(enumerate(shuffled)), 80) == tuple(reversed(GENEVAL_CLASSES))
    with pytest.raises(ValueError, match="not COCO classes"):
        geneval_labels({0: "wall", 1: "sky"}, 2)


def test_detector_returns_mask_boxes_scores_and_geneval_labels(tiny_detector):
    images = [
        Image.new("RGB", (40, 30), (200, 30, 30)),
        Image.new("RGB", (40, 30), (30, 200, 30)),
        Image.new("RGB", (64, 64), (30, 30, 200)),
    ]
    found = tiny_detector.detect(images)
    assert len(found) == 3
    for image, dets in zip(images, found):
        assert 0 < len(dets) <= 100
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        for d in dets:
            assert d.label in GENEVAL_CLASSES and 0.0 <= d.score <= 1.0
            assert d.mask is not None and d.mask.dtype == bool and d.mask.shape == (image.height, image.width)
            assert list(d.box) == mask_boxes(torch.from_numpy(d.mask)[None])[0].tolist()
    # batching same-size images changes nothing: one at a time gives the same detections
    single = Mask2FormerDetector(tiny_detector.model, None, device="cpu", batch_size=1, scale=(96, 64))
    alone = single.detect(images[1:2])[0]
    assert [d.label for d in alone] == [d.label for d in found[1]]
    np.testing.assert_allclose([d.score for d in alone], [d.score for d in found[1]], rtol=1e-4, atol=1e-6)
    # min_score drops what no rule could count
    assert all(d.score > 0.01 for d in tiny_detector.detect(images[:1], min_score=0.01)[0])


# ---------------------------------------------------------------------------------------------
# CLIP colour


def test_cut_out_pastes_the_mask_on_grey_and_crops_to_the_box():
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    mask = np.zeros((10, 20), dtype=bool)
    mask[3:7, 2:6] = True
    crop = cut_out(image, (1, 2, 8, 9), mask)
    assert crop.size == (7, 7)
    assert crop.getpixel((1, 1)) == (255, 0, 0)  # image (2, 3): inside the mask
    assert crop.getpixel((0, 0)) == GREY_BACKGROUND == (153, 153, 153)  # image (1, 2): outside
    assert crop.getpixel((6, 6)) == GREY_BACKGROUND
    assert cut_out(image, (1, 2, 8, 9), None).getpixel((0, 0)) == (255, 0, 0)  # no mask: plain crop
    with pytest.raises(ValueError, match="mask of shape"):
        cut_out(image, (0, 0, 1, 1), np.zeros((3, 3), bool))


def test_colour_prompts_are_the_three_templates_per_colour():
    prompts = colour_prompts("fire hydrant")
    assert len(prompts) == len(COLORS) == 10
    assert prompts[0] == [
        "a photo of a red fire hydrant",
        "a photo of a red-colored fire hydrant",
        "a photo of a red object",
    ]
    assert prompts[-1][1] == "a photo of a white-colored fire hydrant"


def test_colour_embedding_is_the_renormalised_mean_of_unit_template_embeddings(tiny_clip):
    model, tokenizer = tiny_clip.model, tiny_clip.processor.tokenizer
    expected = []
    with torch.no_grad():
        for texts in colour_prompts("car"):
            tokens = tokenizer(texts, padding=True, return_tensors="pt")
            out = model.get_text_features(**tokens)
            feats = out if isinstance(out, torch.Tensor) else out.pooler_output
            unit = feats / feats.norm(dim=-1, keepdim=True)
            mean = unit.mean(dim=0)
            expected.append(mean / mean.norm())
            raw_mean = feats.mean(dim=0)  # averaging before normalising would be a different vector
            assert not torch.allclose(raw_mean / raw_mean.norm(), expected[-1], atol=1e-4)
    got = tiny_clip.colour_embeddings("car")
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-4, atol=1e-5)
    assert tiny_clip.colour_embeddings("car") is got  # cached per class


def test_classify_names_one_colour_per_object_by_cosine_argmax(tiny_clip):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 30, 3), dtype=np.uint8))
    mask = np.zeros((24, 30), bool)
    mask[4:12, 5:20] = True
    dets = [
        Detection("car", 0.9, (5, 4, 20, 12), mask),
        Detection("car", 0.8, (0, 0, 30, 24), None),
        Detection("car", 0.7, (10, 10, 25, 20), None),
    ]
    colours = tiny_clip.classify(image, dets, "car")
    assert len(colours) == 3 and set(colours) <= set(COLORS)
    crops = [cut_out(image, d.box, d.mask) for d in dets]
    logits = tiny_clip.image_embeddings(crops) @ tiny_clip.colour_embeddings("car").T
    assert colours == [COLORS[i] for i in logits.argmax(1).tolist()]


# ---------------------------------------------------------------------------------------------
# The scorer end to end


RED_CAR = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}
TWO_CLOCKS = {
    "tag": "counting",
    "include": [{"class": "clock", "count": 2}],
    "exclude": [{"class": "clock", "count": 3}],
    "prompt": "a photo of two clocks",
}
DOG_RIGHT = {
    "tag": "position",
    "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}],
    "prompt": "a photo of a dog right of a teddy bear",
}


class StubDetector:
    """Hand-made detections, told apart by image size."""

    source = "stub-detector"

    def __init__(self, by_size):
        self.by_size = by_size

    def detect(self, images, min_score=0.0):
        return [list(self.by_size[image.size]) for image in images]


class StubColours:
    source = "stub-colours"

    def classify(self, image, detections, classname):
        return ["red" for _ in detections]


def make_run(root: Path, records: dict[int, dict | None]) -> list[EvalImage]:
    """Three prompts in GenEval's layout, one image each (sizes 32x32, 40x32, 48x32)."""
    images = []
    for index, (meta, width) in enumerate([(RED_CAR, 32), (TWO_CLOCKS, 40), (DOG_RIGHT, 48)]):
        path = f"{index:05d}/samples/0000.png"
        (root / path).parent.mkdir(parents=True)
        Image.new("RGB", (width, 32), (90, 90, 90)).save(root / path)
        (root / f"{index:05d}/metadata.jsonl").write_text(json.dumps(meta) + "\n")
        job = ImageJob(
            category=meta["tag"],
            prompt=meta["prompt"],
            prompt_index=index,
            image_index=0,
            seed=42,
            path=path,
            record=f"{index:05d}/plans/0000.json",
            metadata=meta,
        )
        images.append(EvalImage(job, root, records.get(index)))
    return images


def stub_scorer() -> GenEvalOfficialScorer:
    detections = {
        (32, 32): [Detection("car", 0.75, (2.0, 3.0, 20.0, 25.0))],
        # one sure clock and one under the counting threshold: 1 of 2
        (40, 32): [Detection("clock", 0.95, (0, 0, 10, 10)), Detection("clock", 0.6, (20, 0, 30, 10))],
        (48, 32): [Detection("teddy bear", 0.8, (0, 0, 10, 30)), Detection("dog", 0.9, (30, 0, 46, 30))],
    }
    return GenEvalOfficialScorer(StubDetector(detections), StubColours())


PLANS = {
    0: {"objects": [{"name": "a red car", "box": [100, 100, 600, 800]}]},
    1: {"objects": [{"name": "clock", "box": [0, 0, 400, 400]}, {"name": "a clock", "box": [500, 0, 900, 400]}]},
    2: None,  # no record: no plan to judge
}


def test_scorer_applies_the_rules_and_keeps_the_official_line(tmp_path):
    images = make_run(tmp_path, PLANS)
    scorer = stub_scorer()
    scores = [s for image in images for s in scorer.score(image.category, [image], tmp_path)]
    car, clocks, dog = scores
    assert (car.score, car.reason, car.plan_score) == (1.0, "", 1.0)
    assert car.record == "00000/plans/0000.json" and car.path == "00000/samples/0000.png"
    assert car.details["details"] == {"car": [[2.0, 3.0, 20.0, 25.0, 0.75]]}
    assert car.details["metadata"] == RED_CAR and car.details["colors"] == {"car": ["red"]}
    # counting reads at > 0.9: one clock; the plan has two clocks
    assert (clocks.score, clocks.reason, clocks.plan_score) == (0.0, "expected clock>=2, found 1", 1.0)
    assert clocks.details["details"] == {"clock": [[0.0, 0.0, 10.0, 10.0, float(np.float32(0.95))]]}
    # dog centre x 38 vs bear 5: (33 - 0.1 x 26) / 33 = 0.92 -> right of
    assert (dog.score, dog.reason, dog.plan_score) == (1.0, "", None)
    assert set(scorer.notes[0].split()) >= {"stub-detector"}


def test_plan_detections_scale_the_plan_and_read_colour_words():
    objects = [
        PlannedObject("a red car", Box(100, 200, 500, 600)),
        PlannedObject("a unicorn", Box(0, 0, 10, 10)),
        PlannedObject("a dog", None),
        PlannedObject("an orange", Box(0, 0, 1000, 1000)),
    ]
    dets = plan_detections(objects, (200, 100))
    # listed backwards so that the first-written object wins the tie at confidence 1.0
    assert [(d.label, d.colour) for d in dets] == [("orange", None), ("car", "red")]
    assert dets[1].box == (20.0, 20.0, 100.0, 60.0) and dets[1].score == 1.0


def test_plan_without_objects_scores_zero(tmp_path):
    images = make_run(tmp_path, {0: {"objects": []}})
    score = stub_scorer().score("colors", images[:1], tmp_path)[0]
    assert (score.score, score.plan_score) == (1.0, 0.0)


def test_results_jsonl_is_written_as_geneval_writes_it(tmp_path):
    images = make_run(tmp_path, PLANS)
    scorer = stub_scorer()
    scores = [s for image in images for s in scorer.score(image.category, [image], tmp_path)]
    # a stored score (read back from JSON) writes the same line
    scores = [ImageScore.from_dict(json.loads(json.dumps(s.to_dict()))) for s in scores]
    target = write_official_results(Path("run"), scores, tmp_path / "results.jsonl")
    text = target.read_text()
    assert text.endswith("\n") and text.count("\n") == 3
    # pandas 1.5 to_json(orient="records", lines=True): compact, "/" escaped; metadata/details as JSON text
    assert text.splitlines()[0] == (
        '{"filename":"run\\/00000\\/samples\\/0000.png","tag":"colors","prompt":"a photo of a red car",'
        '"correct":true,"reason":"",'
        '"metadata":"{\\"tag\\": \\"colors\\", \\"include\\": [{\\"class\\": \\"car\\", \\"count\\": 1, '
        '\\"color\\": \\"red\\"}], \\"prompt\\": \\"a photo of a red car\\"}",'
        '"details":"{\\"car\\": [[2.0, 3.0, 20.0, 25.0, 0.75]]}"}'
    )
    rows = read_official_results(target)
    assert [list(r) for r in rows] == [["filename", "tag", "prompt", "correct", "reason", "metadata", "details"]] * 3
    assert rows[1]["correct"] is False and rows[1]["reason"] == "expected clock>=2, found 1"
    assert json.loads(rows[2]["metadata"]) == DOG_RIGHT
    # summary_scores.py's numbers: tag means 1, 0, 1 -> overall 2/3
    assert summarize(rows).overall == pytest.approx(2 / 3) == summarize_scores(scores).overall
    # default place and an absolute run folder: filenames are run_dir joined with the image path
    default = write_official_results(tmp_path, scores)
    assert default == tmp_path / "results.jsonl"
    assert read_official_results(default)[0]["filename"] == os.path.join(str(tmp_path), "00000/samples/0000.png")


def test_result_line_escapes_like_pandas():
    details = {
        "tag": "colors",
        "prompt": "a café/bar",
        "correct": False,
        "reason": "a\nb",
        "metadata": {},
        "details": {},
    }
    assert official_result_line("x/y.png", details) == (
        '{"filename":"x\\/y.png","tag":"colors","prompt":"a caf\\u00e9\\/bar","correct":false,"reason":"a\\nb",'
        '"metadata":"{}","details":"{}"}'
    )


def test_unscorable_images_get_none_and_are_left_out_of_results(tmp_path):
    images = make_run(tmp_path, {})
    (tmp_path / images[0].job.path).write_bytes(b"not a png")
    bad_meta = EvalImage(ImageJob(**{**images[1].job.__dict__, "metadata": None}), tmp_path)
    scores = stub_scorer().score("colors", [images[0]], tmp_path) + stub_scorer().score(
        "counting", [bad_meta], tmp_path
    )
    assert [s.score for s in scores] == [None, None]
    assert scores[0].reason.startswith("cannot read 00000/samples/0000.png")
    assert "metadata of 00001/samples/0000.png" in scores[1].reason
    target = write_official_results(tmp_path, scores)
    assert target.read_text() == "\n"


def test_scorer_on_tiny_models_end_to_end(tmp_path, tiny_mask2former, tiny_clip):
    model, processor = tiny_mask2former
    detector = Mask2FormerDetector(model, processor, device="cpu", scale=(96, 64))
    # thresholds at 0 so that the random detector's detections reach the colour and position checks
    from gotr1.eval.rules.geneval import GenEvalOptions

    scorer = GenEvalOfficialScorer(detector, tiny_clip, options=GenEvalOptions(threshold=0.0, counting_threshold=0.0))
    images = make_run(tmp_path, PLANS)
    scores = [s for image in images for s in scorer.score(image.category, [image], tmp_path)]
    for s, image in zip(scores, images):
        assert s.score in (0.0, 1.0) and isinstance(s.reason, str)
        assert s.details["tag"] == image.category and s.details["correct"] == (s.score == 1.0)
        for name, rows in s.details["details"].items():
            assert name in GENEVAL_CLASSES and all(len(r) == 5 for r in rows) and len(rows) <= 16
    lines = write_official_results(tmp_path, scores).read_text().splitlines()
    assert len(lines) == 3
    # A colour clause about the class the random detector is surest of: CLIP names that object's colour.
    pil = images[0].image()
    top = detector.detect([pil])[0][0]
    meta = {"tag": "colors", "include": [{"class": top.label, "count": 1, "color": "red"}], "prompt": "p"}
    job = ImageJob(**{**images[0].job.__dict__, "metadata": meta})
    score = scorer.score("colors", [EvalImage(job, tmp_path)], tmp_path)[0]
    expected = tiny_clip.classify(pil, [top], top.label)
    assert score.details["colors"] == {top.label: expected}
    assert score.score == (1.0 if expected == ["red"] else 0.0)


def test_unloadable_models_are_one_line_errors(tmp_path):
    images = make_run(tmp_path, {})
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ScorerError) as info:
        GenEvalOfficialScorer(detector=str(empty)).score("colors", images[:1], tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(empty) in message and message.startswith("cannot load the GenEval detector")
    missing = str(tmp_path / "no-such-clip")
    scorer = GenEvalOfficialScorer(detector=StubDetector({}), clip=missing)
    with pytest.raises(ScorerError) as info:
        scorer.score("colors", images[:1], tmp_path)
    assert "\n" not in str(info.value) and missing in str(info.value)
    with pytest.raises(ScorerError, match="not 'shapes'"):
        scorer.score("shapes", images[:1], tmp_path)
