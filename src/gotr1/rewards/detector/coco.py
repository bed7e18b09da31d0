"""COCO's 80 class names as the detector spells them, and the English -> COCO lexicon that maps a planned
object's name to the class a detector can find."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

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
