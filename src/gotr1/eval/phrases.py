"""The words T2I-CompBench's official scripts read out of a prompt.

The official scripts parse prompts with spaCy ``en_core_web_sm``: BLIP-VQA asks about each ``noun_chunks``
phrase, the 2D/3D spatial scripts take the first and last token tagged NOUN, the complex 2D script looks for
the nouns around a preposition, the complex CLIPScore drops the ADJ tokens, and numeracy walks the tokens.
spaCy is an optional dependency here: when it and its English model are installed they are used (lazily,
once); otherwise a small tagger and chunker of our own stands in. The stand-in is a lexicon plus a few
word-order rules, written for the benchmark's prompt style ("a green bench and a red car", "a giraffe next to
a lamp", "The fluffy cat is on the left of the soft pillow."); on the free-form sentences (about a fifth of
the attribute prompts) it can split or tag differently from spaCy, so numbers from it are approximations:
:func:`parser_note` says which one ran, for the report.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "DROPPED_CHUNKS",
    "MAX_PHRASES",
    "PERSON_WORDS",
    "Token",
    "blip_phrases",
    "blip_question",
    "complex_spatial_nouns",
    "first_last_nouns",
    "noun_chunks",
    "parser_method",
    "parser_note",
    "pre_question",
    "tag",
    "to_detector_label",
    "without_adjectives",
    "words",
]

SPACY_MODEL = "en_core_web_sm"
# BLIP_vqa.py drops these chunks (they come from "on the left of", "on top of", ...) and asks at most 8.
DROPPED_CHUNKS = ("top", "the side", "the left", "the right")
MAX_PHRASES = 8
# The spatial and numeracy scripts look people up under UniDet's label "person".
PERSON_WORDS = ("girl", "boy", "man", "woman")
# BLIP's question cleaning (pre_question in the official data utils): these characters are deleted.
_QUESTION_STRIP = re.compile(r"[.!\"()*#:;~]")


@dataclass(frozen=True)
class Token:
    """A word with its coarse part of speech (spaCy's ``pos_`` tag set) and character span."""

    text: str
    pos: str
    start: int
    end: int


# ---------------------------------------------------------------------------------------------------------
# Backend choice


@functools.cache
def _spacy_nlp() -> Any | None:
    """spaCy's English pipeline when both spaCy and ``en_core_web_sm`` are installed, else None."""
    try:
        import spacy  # noqa: PLC0415 (optional dependency, imported only when parsing)
    except ImportError:
        log.info("noun phrases: spaCy is not installed, using the fallback chunker")
        return None
    try:
        return spacy.load(SPACY_MODEL)
    except OSError as error:
        log.info(
            "noun phrases: spaCy model %s cannot be loaded (%s), using the fallback chunker",
            SPACY_MODEL,
            str(error).splitlines()[0],
        )
        return None


def parser_method() -> str:
    """``"spacy"`` when spaCy ``en_core_web_sm`` parses prompts, ``"fallback"`` otherwise."""
    return "spacy" if _spacy_nlp() is not None else "fallback"


def parser_note() -> str:
    """One line for a report saying which parser produced the noun phrases and nouns."""
    if _spacy_nlp() is not None:
        return f"noun phrases: spaCy {SPACY_MODEL} (as the official scripts)"
    return (
        f"noun phrases: fallback chunker, spaCy {SPACY_MODEL} not installed "
        "(free-form prompts may be chunked differently from the official scripts)"
    )


# ---------------------------------------------------------------------------------------------------------
# Fallback tagger: lexicon + word-order rules

_DETERMINERS = frozenset(
    "a an the this these those each every some any another no its his her their my your our both all either "
    "neither".split()
)
_NUMBERS = frozenset("one two three four five six seven eight nine ten eleven twelve twenty hundred dozen".split())
_PRONOUNS = frozenset(
    "i you he she it we they me him us them who whom which what whose himself herself itself themselves "
    "something anything everything nothing someone anyone everyone somebody anybody everybody".split()
)
_CONJUNCTIONS = frozenset("and or but nor".split())
_SUBORDINATORS = frozenset("while because as if than although though when where whereas until since".split())
_ADPOSITIONS = frozenset(
    "of on in at by for with from to into onto over under above below behind beside besides between through "
    "near inside outside against across along around among amongst during without within upon toward towards "
    "about off up down out like beneath atop underneath past via amid throughout".split()
)
_AUXILIARIES = frozenset(
    "is are was were be been being am has have had do does did can could will would should may might must "
    "shall 's".split()
)
_ADVERBS = frozenset(
    "next very too also not just so then there here together nearby neatly most more less apart away almost "
    "really quite".split()
)
# Common verbs of the benchmark's sentences; unknown words are nouns unless a rule below says otherwise.
_VERBS = frozenset(
    "sit sits sat sitting stand stands stood standing hang hangs hung hanging hold holds held holding rest rests "
    "rested resting lie lies lay lying lays place placed park parked mount mounted arrange arranged attach "
    "attached stack stacked use used make makes made read reads feature features featured flash flashes shine "
    "shines shone display displays displayed provide provides provided serve serves mix mixes write writes "
    "wrote cut cuts boil boils cook cooks bake bakes pound pounds keep keeps kept beat beats slice "
    "measure measures stir stirs illuminate illuminates attract attracts attracted decorate decorates "
    "perch perches nap naps release releases jot jots propel propels propelled control controls controlled "
    "sparkle sparkles sparkled float floats floated lead leads led flow flows flowed create creates created "
    "dominate dominates dominated fascinate fascinates fascinated struggle struggles struggled "
    "look looks looking marvel marvels marveling marvelling speak speaks speaking head heads heading "
    "go goes going walk walks walking run runs running play plays playing eat eats eating drink drinks "
    "drinking ride rides riding fly flies flying swim swims swimming jump jumps jumping carry carries "
    "carrying wear wears wearing watch watches watching catch catches catching throw throws throwing pull "
    "pulls pulling push pushes pushing lounge lounges lounging filled fill fills adorned adorn adorns pass "
    "passes passed passing soar soars soared soaring reflect reflects reflected sleep sleeps sleeping "
    "chase chases chasing climb climbs climbing lean leans leaning crawl crawls crawling give gives giving "
    "take takes taking bring brings bringing put puts putting set sets seem seems stay stays stayed cover "
    "strode hidden hide hides surround surrounds surrounded face faces facing".split()
)
_ADJECTIVES = frozenset(
    # colours
    "red orange yellow green blue purple pink brown black white gray grey gold golden silver beige tan whitish "
    "navy violet cyan magenta maroon turquoise teal dark light bright pale colorful colourful "
    # shapes and sizes
    "round square rectangular circular oval oblong triangular spherical cubic conical cylindrical pyramidal "
    "pentagonal hexagonal octagonal big small tall short long large tiny huge little wide narrow thick thin "
    "high low giant "
    # textures and materials spaCy tags as adjectives
    "metallic wooden fluffy plastic stainless soft hard smooth rough furry shiny "
    # other common modifiers
    "empty clean dirty modern ancient vintage cozy tasty unique favorite favourite precious beloved "
    "picturesque celestial electronic blank contrasting same different useful necessary fashionable unlikely "
    "sunny lazy other old new young happy sad beautiful cute fresh hot cold warm wet dry heavy many few "
    "several whole main only sloped checkered sharp crisp crunchy gentle bold dramatic striking majestic "
    "towering polished ornate grand cool natural timeless perfect rich soothing maternal emotional abstract "
    "stunning romantic pillowy endless human artistic delectable twisted gnarled rounded curved smooth "
    "sparkling rustic elegant vibrant delicate sturdy sleek worn weathered crystal-clear clear tranquil "
    "serene lush quiet busy crowded cheerful calm wild fierce strong brave proud".split()
)
_LY_NOUNS = frozenset("family belly lily jelly bully rally holly trolley assembly".split())
_ADJECTIVE_ENDINGS = ("ical", "ous", "ful", "ive", "able", "ible", "ular")

_TOKEN_PATTERN = re.compile(r"\d+(?:[:.,]\d+)*|[A-Za-z]+|'[A-Za-z]+|[^\sA-Za-z\d]")


def _lexical_pos(word: str, first: bool) -> str:
    lower = word.lower()
    if lower in _DETERMINERS:
        return "DET"
    if lower in _NUMBERS or lower[0].isdigit():
        return "NUM"
    if lower in _PRONOUNS:
        return "PRON"
    if lower in _CONJUNCTIONS:
        return "CCONJ"
    if lower in _SUBORDINATORS:
        return "SCONJ"
    if lower in _ADPOSITIONS:
        return "ADP"
    if lower in _AUXILIARIES:
        return "AUX"
    if lower in _ADVERBS or (
        lower.endswith("ly") and len(lower) > 4 and not lower.endswith("fly") and lower not in _LY_NOUNS
    ):
        return "ADV"
    if lower in _VERBS:
        return "VERB"
    if lower in _ADJECTIVES:
        return "ADJ"
    if lower.endswith(_ADJECTIVE_ENDINGS):
        return "ADJ?"  # "comfortable chair" but "a table": decided by what follows
    if lower.startswith("'"):
        return "PART"
    if not lower[0].isalnum():
        return "PUNCT"
    if word[0].isupper() and not first:
        return "PROPN"
    return "NOUN"


def _fallback_tag(text: str) -> list[Token]:
    """Lexicon tags, then the few word-order rules that matter for chunks and nouns."""
    matches = list(_TOKEN_PATTERN.finditer(text))
    words = [m.group() for m in matches]
    tags = [_lexical_pos(word, first=i == 0 or words[i - 1] in ".!?") for i, word in enumerate(words)]
    n = len(words)

    def following(i: int) -> str:
        return tags[i + 1] if i + 1 < n else "END"

    for i in range(n):  # an adjective-looking ending is an adjective only before another modifier
        if tags[i] == "ADJ?":
            tags[i] = "ADJ" if following(i) in ("NOUN", "PROPN", "ADJ", "ADJ?") else "NOUN"
    for i, word in enumerate(words):
        lower = word.lower()
        prev = tags[i - 1] if i else "START"
        prev_word = words[i - 1] if i else ""
        # "that"/"which" right after a noun open a relative clause; "that" before a noun is a determiner.
        if lower == "that":
            tags[i] = "DET" if following(i) in ("NOUN", "ADJ", "PROPN") else "PRON"
        # A word we took for a noun that comes right after a noun and right before a determiner is a verb:
        # "the metallic whisk and wooden bowl MIX the fluffy batter".
        elif tags[i] == "NOUN" and prev in ("NOUN", "PROPN", "PRON") and following(i) in ("DET", "NUM"):
            tags[i] = "VERB"
        # -ing / -ed forms: verbs after an auxiliary or a preposition, or before a determiner or preposition
        # ("for serving dinner", "was resting on"); after a noun, an -ed form not followed by a noun is a verb
        # ("the kittens played together"), and so is "left" ("the only containers left in"); between
        # modifiers they are adjectives ("The smooth, rounded stones").
        elif tags[i] == "NOUN" and lower.endswith(("ing", "ed")) and len(lower) > 4:
            if prev in ("DET", "ADJ") or (prev_word == "," and i > 1 and tags[i - 2] == "ADJ"):
                if following(i) in ("NOUN", "ADJ") or (i + 1 < n and words[i + 1] == ","):
                    tags[i] = "ADJ"  # inside a noun phrase: "the crying baby", "the ornate ceiling of"
            elif prev in ("AUX", "ADP") or following(i) in ("DET", "ADP", "PRON"):
                tags[i] = "VERB"
            elif prev in ("NOUN", "PROPN") and lower.endswith("ed") and following(i) not in ("NOUN", "ADJ"):
                tags[i] = "VERB"
        elif lower == "left" and prev in ("NOUN", "PROPN"):
            tags[i] = "VERB"
    # An adjective that ends a determiner phrase with no noun after it is the noun itself: "a red ORANGE",
    # "a brown orange". It needs a modifier before it, so "the other" stays an adjective.
    for i in range(n):
        if tags[i] != "ADJ" or following(i) in ("NOUN", "PROPN", "ADJ"):
            continue
        j = i - 1
        while j >= 0 and tags[j] in ("ADJ", "NOUN"):
            j -= 1
        if j < i - 1 and j >= 0 and tags[j] in ("DET", "NUM") and "NOUN" not in tags[i + 1 : i + 2]:
            tags[i] = "NOUN"
    return [Token(m.group(), pos, m.start(), m.end()) for m, pos in zip(matches, tags)]


def _fallback_chunks(text: str, tokens: Sequence[Token]) -> list[str]:
    """Maximal determiner/modifier runs ending in a noun, plus lone pronouns: spaCy's noun_chunks shape."""
    chunks: list[str] = []
    n = len(tokens)
    i = 0
    modifier = ("ADJ", "NOUN", "PROPN", "NUM")
    while i < n:
        start = i
        if tokens[i].pos == "DET":  # articles, demonstratives and possessives ("its square lid") open a phrase
            i += 1
        last_noun = -1
        j = i
        while j < n:
            pos = tokens[j].pos
            if pos in modifier:
                if pos in ("NOUN", "PROPN"):
                    last_noun = j
                j += 1
                continue
            nxt = tokens[j + 1].pos if j + 1 < n else "END"
            prev = tokens[j - 1].pos if j > start else "START"
            # "black and white floor tiles", "a long, narrow yellow kitchen": a conjunction or comma between
            # two adjectives stays inside the phrase; "Rubik's cube" and "diamond-studded" do too.
            if (
                (tokens[j].text in ("and", ",") and prev == "ADJ" and nxt == "ADJ")
                or (tokens[j].text == "," and prev == "ADJ" and nxt == "NOUN" and last_noun < 0)
                or (tokens[j].text in ("'s", "-") and prev in modifier and nxt in modifier + ("VERB",))
            ):
                j += 1
                if tokens[j - 1].text == "-" and j < n and tokens[j].pos == "VERB":
                    j += 1  # "diamond-studded": the participle after a hyphen modifies the noun
                continue
            break
        if last_noun >= 0:
            chunks.append(text[tokens[start].start : tokens[last_noun].end])
            i = last_noun + 1
        elif j == start and tokens[start].pos == "PRON":
            chunks.append(tokens[start].text)
            i = start + 1
        else:
            i = max(j, start + 1)
    return chunks


# ---------------------------------------------------------------------------------------------------------
# Public parsing functions (spaCy when available)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[tuple[Token, ...], tuple[str, ...]]:
    nlp = _spacy_nlp()
    if nlp is None:
        tokens = _fallback_tag(text)
        return tuple(tokens), tuple(_fallback_chunks(text, tokens))
    doc = nlp(text)
    tokens = tuple(Token(t.text, t.pos_, t.idx, t.idx + len(t.text)) for t in doc)
    return tokens, tuple(chunk.text for chunk in doc.noun_chunks)


def tag(text: str) -> list[Token]:
    """The prompt's tokens with coarse part-of-speech tags (spaCy's, or the fallback's)."""
    return list(_parse(text)[0])


def noun_chunks(text: str) -> list[str]:
    """The prompt's noun phrases, in order, as spaCy's ``doc.noun_chunks`` would give them."""
    return list(_parse(text)[1])


def blip_phrases(prompt: str, max_phrases: int = MAX_PHRASES) -> list[str]:
    """The phrases BLIP-VQA is asked about: noun chunks minus the relation leftovers, at most 8."""
    return [chunk for chunk in noun_chunks(prompt) if chunk not in DROPPED_CHUNKS][:max_phrases]


def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's question cleaning: lower-case, delete ``.!"()*#:;~``, strip trailing spaces, at most 50 words."""
    question = _QUESTION_STRIP.sub("", question.lower()).rstrip(" ")
    words = question.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else question


def blip_question(phrase: str) -> str:
    """The question asked for one phrase: ``"a green bench?"``."""
    return pre_question(f"{phrase}?")


def to_detector_label(word: str | None) -> str | None:
    """girl/boy/man/woman are looked up as UniDet's ``person``; other words as they are."""
    return "person" if word in PERSON_WORDS else word


def first_last_nouns(prompt: str) -> tuple[str | None, str | None]:
    """The simple spatial scripts' two objects: the first and the last token tagged NOUN (not yet mapped to
    detector labels). The official script raises on a prompt with no noun; here both are None."""
    nouns = [token.text for token in tag(prompt) if token.pos == "NOUN"]
    if not nouns:
        return None, None
    return nouns[0], nouns[-1]


_COMPLEX_PREPOSITIONS = ("on top of", "on bottom of", "on the left", "on the right", "next to", "on side of", "near")


def complex_spatial_nouns(prompt: str) -> tuple[str | None, str | None]:
    """The complex 2D script's two objects (``--complex True``): for each preposition from its list (``on top
    of``, ``on bottom of``, ``on the left``, ``on the right``, ``next to``, ``on side of``, ``near``, matched on
    3-, 2- then 1-token windows), the nearest NOUN/PROPN before it and the first NOUN after it (else the first
    PROPN followed by a non-PROPN, never the last token). Exactly two objects or none: a prompt with two such
    prepositions gives four and scores 0, as in the official script."""
    tokens = tag(prompt)
    n = len(tokens)
    objects: list[str] = []

    def window(i: int, size: int) -> str:  # spaCy's ``doc[i:i + size].text``: the prompt's own text
        return prompt[tokens[i].start : tokens[min(i + size, n) - 1].end]

    for i in range(n):
        size = next((k for k in (3, 2, 1) if window(i, k) in _COMPLEX_PREPOSITIONS), 0)
        if not size:
            continue
        for j in range(i - 1, -1, -1):
            if tokens[j].pos in ("NOUN", "PROPN"):
                objects.append(tokens[j].text)
                break
        reached_end = False
        for j in range(i + size, n):
            if tokens[j].pos == "NOUN":
                objects.append(tokens[j].text)
                break
            if j == n - 1:
                reached_end = True
        if reached_end:
            for j in range(i + size, n):
                if j + 1 < n and tokens[j].pos == "PROPN" and tokens[j + 1].pos != "PROPN":
                    objects.append(tokens[j].text)
                    break
    if len(objects) == 2:
        return objects[0], objects[1]
    return None, None


def without_adjectives(prompt: str) -> str:
    """The complex CLIPScore text: the prompt's tokens minus those tagged ADJ, joined by single spaces."""
    return " ".join(token.text for token in tag(prompt) if token.pos != "ADJ")


def words(prompt: str) -> list[str]:
    """The prompt's tokens (spaCy's tokenizer, or the fallback's), as numeracy walks them."""
    return [token.text for token in tag(prompt)]
