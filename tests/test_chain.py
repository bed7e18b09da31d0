"""Tests for the GoT reasoning-chain format (gotr1.chain)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gotr1.chain import (
    BEGIN_OF_IMAGE,
    BOX_END,
    BOX_START,
    GRID,
    LAYOUT_TOKENS,
    OBJ_END,
    OBJ_START,
    Box,
    ChainProblem,
    ParsedChain,
    PlannedObject,
    ProblemKind,
    Segment,
    format_chain,
    format_object,
    parse_chain,
    validate_chain,
)

# A chain published with GoT-R1, verbatim.
PUBLISHED_CHAIN = (
    "A <|obj_start|>vibrant red tulip bouquet<|obj_end|> "
    "<|box_start|>(36,66),(907,694)<|box_end|> is artfully arranged in a <|obj_start|>yellow "
    "vase<|obj_end|> <|box_start|>(202,482),(729,964)<|box_end|>, which sits atop a "
    "<|obj_start|>tablecloth<|obj_end|> <|box_start|>(0,643),(997,997)<|box_end|> adorned with a "
    "<|obj_start|>floral pattern<|obj_end|> <|box_start|>(0,528),(998,995)<|box_end|>. The "
    "tulips, in full bloom, display a rich, deep red hue with tightly closed buds at the base. "
    "The vase, a glossy yellow with a smooth, slightly curved shape, contrasts vividly with the "
    "bold red of the flowers. To the right, a <|obj_start|>teal vase<|obj_end|> "
    "<|box_start|>(646,449),(968,918)<|box_end|> with a narrow neck and a rounded body adds "
    "another splash of color to the composition. The arrangement is balanced, with the tulips "
    "slightly leaning towards the right, creating a sense of natural movement. The background is "
    "a neutral, soft white, which enhances the vibrancy of the flowers and the bright yellow of "
    "the vase, making them the focal point of the scene. The overall composition is simple yet "
    "striking, with the interplay of colors and textures creating a visually appealing still "
    "life.<begin_of_image>"
)

PUBLISHED_OBJECTS = [
    PlannedObject("vibrant red tulip bouquet", Box(36, 66, 907, 694)),
    PlannedObject("yellow vase", Box(202, 482, 729, 964)),
    PlannedObject("tablecloth", Box(0, 643, 997, 997)),
    PlannedObject("floral pattern", Box(0, 528, 998, 995)),
    PlannedObject("teal vase", Box(646, 449, 968, 918)),
]

ALL_TAGS = (*LAYOUT_TOKENS, BEGIN_OF_IMAGE)
KINDS = {kind.value for kind in ProblemKind}


def kinds(problems: list[ChainProblem]) -> list[str]:
    return [problem.kind for problem in problems]


def tagged(name: str, box_text: str) -> str:
    return f"{OBJ_START}{name}{OBJ_END} {BOX_START}{box_text}{BOX_END}"


# --- the published chain -------------------------------------------------------


def test_published_chain_parses_into_its_five_objects() -> None:
    parsed = parse_chain(PUBLISHED_CHAIN)
    assert parsed.objects == PUBLISHED_OBJECTS
    assert parsed.boxes == [obj.box for obj in PUBLISHED_OBJECTS]
    assert parsed.problems == []
    assert parsed.is_valid
    assert parsed.ended_with_image_start


def test_published_chain_formats_back_to_itself() -> None:
    parsed = parse_chain(PUBLISHED_CHAIN)
    assert format_chain(parsed, end_with_image_start=True) == PUBLISHED_CHAIN
    assert format_chain(parsed) == PUBLISHED_CHAIN.removesuffix(BEGIN_OF_IMAGE)


def test_published_chain_plain_text_inlines_names() -> None:
    text = parse_chain(PUBLISHED_CHAIN).text
    assert text.startswith(
        "A vibrant red tulip bouquet is artfully arranged in a yellow vase, which sits atop a "
        "tablecloth adorned with a floral pattern. The tulips"
    )
    assert text.endswith("visually appealing still life.")
    assert not any(marker in text for marker in (*ALL_TAGS, "(36,66)"))


def test_published_chain_validates_cleanly_even_when_image_start_is_required() -> None:
    assert validate_chain(PUBLISHED_CHAIN, require_image_start=True) == []


# --- constants and formatting --------------------------------------------------


def test_layout_tokens_are_in_tokenizer_order() -> None:
    assert LAYOUT_TOKENS == ("<|box_start|>", "<|box_end|>", "<|obj_start|>", "<|obj_end|>")
    assert BEGIN_OF_IMAGE == "<begin_of_image>"
    assert GRID == 1000


def test_format_object_with_and_without_box() -> None:
    assert (
        format_object(PlannedObject("yellow vase", Box(202, 482, 729, 964)))
        == "<|obj_start|>yellow vase<|obj_end|> <|box_start|>(202,482),(729,964)<|box_end|>"
    )
    assert format_object(PlannedObject("sky", None)) == "<|obj_start|>sky<|obj_end|>"


def test_format_chain_accepts_plain_segments() -> None:
    segments: list[Segment] = ["A ", PlannedObject("cat", Box(1, 2, 3, 4)), " naps."]
    expected = "A " + tagged("cat", "(1,2),(3,4)") + " naps."
    assert format_chain(segments) == expected
    assert format_chain(segments, end_with_image_start=True) == expected + BEGIN_OF_IMAGE


def test_plain_text_tidies_whitespace() -> None:
    chain = "A  " + tagged("red\tcat", "(1,2),(3,4)") + ",  sleeping. \n  It purrs.  "
    assert parse_chain(chain).text == "A red cat, sleeping.\nIt purrs."


def test_problem_kinds_compare_equal_to_their_names() -> None:
    kind: str = ProblemKind.ZERO_AREA
    assert kind == "zero_area"
    assert str(kind) == "zero_area"


# --- Box -----------------------------------------------------------------------


def test_box_measures() -> None:
    box = Box(100, 200, 400, 600)
    assert (box.width, box.height, box.area) == (300, 400, 120_000)
    assert box.center == (250.0, 400.0)


def test_box_accepts_odd_values_without_judging_them() -> None:
    swapped = Box(900, 900, 100, 100)
    assert swapped.area == 0
    assert swapped.ordered() == Box(100, 100, 900, 900)
    assert Box(-5, 10, 1200, 20).clamped() == Box(0, 10, 1000, 20)


@pytest.mark.parametrize("bad", [1.0, "1", None, True])
def test_box_rejects_non_int_coordinates(bad: object) -> None:
    with pytest.raises(TypeError):
        Box(bad, 0, 10, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (Box(0, 0, 100, 100), Box(0, 0, 100, 100), 1.0),
        (Box(0, 0, 100, 100), Box(200, 200, 300, 300), 0.0),
        (Box(0, 0, 100, 100), Box(100, 0, 200, 100), 0.0),  # touching edges
        (Box(0, 0, 100, 100), Box(0, 0, 50, 100), 0.5),  # one half of the other
        (Box(0, 0, 100, 100), Box(50, 0, 150, 100), 1 / 3),  # overlapping by half a width
        (Box(5, 5, 5, 5), Box(5, 5, 5, 5), 0.0),  # empty union
    ],
)
def test_iou_known_cases(a: Box, b: Box, expected: float) -> None:
    assert a.iou(b) == pytest.approx(expected)
    assert b.iou(a) == pytest.approx(expected)


@st.composite
def grid_boxes(draw: st.DrawFn) -> Box:
    """Valid boxes: inside the grid with x1 < x2 and y1 < y2."""
    x1, x2 = sorted(draw(st.lists(st.integers(0, GRID), min_size=2, max_size=2, unique=True)))
    y1, y2 = sorted(draw(st.lists(st.integers(0, GRID), min_size=2, max_size=2, unique=True)))
    return Box(x1, y1, x2, y2)


@given(grid_boxes(), grid_boxes())
def test_iou_is_symmetric_and_bounded(a: Box, b: Box) -> None:
    assert a.iou(b) == pytest.approx(b.iou(a))
    assert 0.0 <= a.iou(b) <= 1.0
    assert a.iou(a) == 1.0


@given(grid_boxes(), st.integers(1, 4096), st.integers(1, 4096))
def test_grid_to_pixels_and_back_is_exact(box: Box, width: int, height: int) -> None:
    assert Box.from_pixels(*box.to_pixels(width, height), width, height) == box


@given(
    st.lists(st.floats(0, 640), min_size=2, max_size=2),
    st.lists(st.floats(0, 480), min_size=2, max_size=2),
)
def test_pixels_to_grid_and_back_is_within_half_a_cell(xs: list[float], ys: list[float]) -> None:
    (x1, x2), (y1, y2) = sorted(xs), sorted(ys)
    back = Box.from_pixels(x1, y1, x2, y2, 640, 480).to_pixels(640, 480)
    cell_x, cell_y = 640 / GRID, 480 / GRID
    for got, want, cell in zip(back, (x1, y1, x2, y2), (cell_x, cell_y, cell_x, cell_y), strict=True):
        assert abs(got - want) <= cell / 2 + 1e-9


def test_from_pixels_clamps_and_orders() -> None:
    assert Box.from_pixels(-5, 700, 2000, 100, 640, 480) == Box(0, 208, 1000, 1000)


def test_from_pixels_rejects_empty_images() -> None:
    with pytest.raises(ValueError):
        Box.from_pixels(0, 0, 1, 1, 0, 10)


# --- each problem on hand-made input -------------------------------------------

CAT = PlannedObject("cat", Box(1, 2, 3, 4))


@pytest.mark.parametrize(
    ("chain", "expected_kinds", "expected_segments"),
    [
        pytest.param("A <|obj_start|>cat", ["unclosed_tag"], ["A cat"], id="unclosed-object"),
        pytest.param(
            "<|obj_start|>cat<|obj_end|> <|box_start|>(1,2),(3,4)",
            ["unclosed_tag", "object_without_box"],
            [PlannedObject("cat", None), " (1,2),(3,4)"],
            id="unclosed-box",
        ),
        pytest.param("a cat<|obj_end|> sits", ["stray_tag"], ["a cat sits"], id="stray-closer"),
        pytest.param(
            "<|obj_start|>a <|obj_start|>cat<|obj_end|> <|box_start|>(1,2),(3,4)<|box_end|>",
            ["stray_tag"],
            ["a ", CAT],
            id="nested-opener",
        ),
        pytest.param(
            "a cat <|box_start|>(1,2),(3,4)<|box_end|>.",
            ["box_without_object"],
            ["a cat ."],
            id="box-without-object",
        ),
        pytest.param(
            "<|obj_start|>cat<|obj_end|> sits",
            ["object_without_box"],
            [PlannedObject("cat", None), " sits"],
            id="object-without-box",
        ),
        pytest.param(
            "<|obj_start|>cat<|obj_end|> sits <|box_start|>(1,2),(3,4)<|box_end|>",
            ["object_without_box", "box_without_object"],
            [PlannedObject("cat", None), " sits "],
            id="box-too-far-from-object",
        ),
        pytest.param(
            "<|obj_start|> \t<|obj_end|> <|box_start|>(1,2),(3,4)<|box_end|> x",
            ["empty_object_name"],
            [" x"],
            id="empty-name",
        ),
        pytest.param(
            tagged("cat", "(36.5,66),(907,694)"),
            ["non_integer_coordinates"],
            [PlannedObject("cat", None)],
            id="non-integer",
        ),
        pytest.param(
            tagged("cat", "(1e2,66),(907,694)"),
            ["non_integer_coordinates"],
            [PlannedObject("cat", None)],
            id="exponent",
        ),
        pytest.param(tagged("cat", "(36,66)"), ["malformed_box"], [PlannedObject("cat", None)], id="one-pair"),
        pytest.param(
            tagged("cat", "(a,b),(c,d)"),
            ["malformed_box"],
            [PlannedObject("cat", None)],
            id="letters",
        ),
        pytest.param(tagged("cat", ""), ["malformed_box"], [PlannedObject("cat", None)], id="empty-box"),
        pytest.param(
            tagged("cat", "(-5,66),(1200,694)"),
            ["out_of_range"],
            [PlannedObject("cat", Box(0, 66, 1000, 694))],
            id="out-of-range",
        ),
        pytest.param(
            tagged("cat", "(907,694),(36,66)"),
            ["swapped_corners"],
            [PlannedObject("cat", Box(36, 66, 907, 694))],
            id="swapped",
        ),
        pytest.param(
            tagged("cat", "(10,66),(10,694)"),
            ["zero_area"],
            [PlannedObject("cat", Box(10, 66, 10, 694))],
            id="zero-area",
        ),
        pytest.param(tagged("cat", "( 1 , 2 ) , ( 3 ,4 )"), [], [CAT], id="whitespace-inside-box"),
        pytest.param(
            "<|obj_start|>cat<|obj_end|>\n<|box_start|>(1,2),(3,4)<|box_end|>",
            [],
            [CAT],
            id="newline-before-box",
        ),
    ],
)
def test_problem_on_hand_made_chain(chain: str, expected_kinds: list[str], expected_segments: list[object]) -> None:
    parsed = parse_chain(chain)
    assert sorted(kinds(parsed.problems)) == sorted(expected_kinds)
    assert parsed.segments == expected_segments
    assert parsed.is_valid == (not expected_kinds)


def test_problem_offsets_point_at_the_defect() -> None:
    chain = "Two: " + tagged("cat", "(9,9),(1,1)") + " and a<|obj_end|>"
    by_kind = {problem.kind: problem.offset for problem in parse_chain(chain).problems}
    assert by_kind == {
        "swapped_corners": chain.index(BOX_START),
        "stray_tag": chain.index(OBJ_END, chain.index(BOX_END)),
    }


def test_text_after_image_start_is_reported_and_dropped() -> None:
    chain = "A cat.<begin_of_image> <img_7>"
    parsed = parse_chain(chain)
    assert parsed.ended_with_image_start
    assert parsed.segments == ["A cat."]
    assert parsed.problems == [
        ChainProblem("text_after_image_start", parsed.problems[0].message, chain.index("<img_7>"))
    ]


def test_whitespace_after_image_start_is_fine() -> None:
    parsed = parse_chain("A cat.<begin_of_image>\n  ")
    assert parsed.ended_with_image_start and parsed.is_valid


def test_missing_image_start_only_when_required() -> None:
    chain = "A " + tagged("cat", "(1,2),(3,4)")
    assert validate_chain(chain) == []
    assert kinds(validate_chain(chain, require_image_start=True)) == ["missing_image_start"]
    assert validate_chain(chain, require_image_start=True)[0].offset == len(chain)


def test_huge_coordinates_are_clamped_not_crashed_on() -> None:
    parsed = parse_chain(tagged("cat", f"(1,2),({'9' * 5000},-{'9' * 5000})"))
    assert parsed.objects == [PlannedObject("cat", Box(1, 0, 1000, 2))]
    assert set(kinds(parsed.problems)) == {"out_of_range", "swapped_corners"}


def test_tags_spliced_together_by_repairs_do_not_leak_into_text() -> None:
    parsed = parse_chain("<|obj_<|box_end|>start|>cat")
    assert kinds(parsed.problems) == ["stray_tag"]
    assert all(tag not in parsed.text for tag in ALL_TAGS)


# --- round trips ---------------------------------------------------------------


def tag_free(text: str) -> bool:
    return not any(tag in text for tag in ALL_TAGS)


# Pieces that look like chain syntax, to make generated text tricky to read.
LOOKALIKES = ["<", ">", "|", "<|obj_", "start|>", "_end|>", "(1,2),(3,4)", "(", ")", ",", " ", "\n"]

free_texts = (
    st.lists(st.one_of(st.text(max_size=8), st.sampled_from(LOOKALIKES)), max_size=6).map("".join).filter(tag_free)
)
names = free_texts.map(str.strip).filter(lambda name: bool(name) and tag_free(name))
planned_objects = st.builds(PlannedObject, names, grid_boxes())


@st.composite
def valid_segments(draw: st.DrawFn) -> list[Segment]:
    """Free text and valid objects, alternating; empty text pieces left out."""
    segments: list[Segment] = []
    for text, obj in draw(st.lists(st.tuples(free_texts, planned_objects), max_size=6)):
        segments += [text, obj] if text else [obj]
    tail = draw(free_texts)
    return [*segments, tail] if tail else segments


@given(valid_segments(), st.booleans())
def test_valid_segments_survive_format_then_parse(segments: list[Segment], end_with_image_start: bool) -> None:
    chain = format_chain(segments, end_with_image_start=end_with_image_start)
    parsed = parse_chain(chain)
    assert parsed.problems == []
    assert parsed.segments == segments
    assert parsed.objects == [s for s in segments if isinstance(s, PlannedObject)]
    assert parsed.ended_with_image_start == end_with_image_start


@given(valid_segments())
def test_format_parse_format_is_stable(segments: list[Segment]) -> None:
    chain = format_chain(segments)
    assert format_chain(parse_chain(chain)) == chain


# --- damaged chains --------------------------------------------------------------


@st.composite
def damaged_chains(draw: st.DrawFn) -> str:
    """A valid chain with characters and tags randomly deleted and inserted."""
    chain = draw(st.one_of(st.just(PUBLISHED_CHAIN), valid_segments().map(format_chain)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(chain)))
        edit = draw(st.sampled_from(["delete", "insert_text", "insert_tag"]))
        if edit == "delete":
            chain = chain[:at] + chain[at + draw(st.integers(1, 15)) :]
        elif edit == "insert_text":
            chain = chain[:at] + draw(st.one_of(st.text(max_size=4), st.sampled_from(LOOKALIKES))) + chain[at:]
        else:
            chain = chain[:at] + draw(st.sampled_from(ALL_TAGS)) + chain[at:]
    return chain


def assert_well_formed_result(chain: str, parsed: ParsedChain) -> None:
    assert isinstance(parsed, ParsedChain)
    for problem in parsed.problems:
        assert isinstance(problem, ChainProblem)
        assert problem.kind in KINDS
        assert 0 <= problem.offset <= len(chain)
    for segment in parsed.segments:
        if isinstance(segment, str):
            assert segment and tag_free(segment)
        else:
            assert segment.name == segment.name.strip() != ""
            assert tag_free(segment.name)
            if segment.box is not None:
                assert segment.box == segment.box.clamped().ordered()
    assert parsed.is_valid == (parsed.problems == [])


@settings(max_examples=300)
@given(damaged_chains())
def test_damaged_chains_parse_into_data(chain: str) -> None:
    parsed = parse_chain(chain)
    assert_well_formed_result(chain, parsed)
    assert validate_chain(chain) == parsed.problems


@settings(max_examples=300)
@given(damaged_chains())
def test_repaired_chains_read_back_the_same(chain: str) -> None:
    parsed = parse_chain(chain)
    reparsed = parse_chain(format_chain(parsed))
    assert reparsed.segments == parsed.segments
    # Only what repairs cannot invent is left: missing boxes and empty boxes.
    assert set(kinds(reparsed.problems)) <= {"object_without_box", "zero_area"}


@given(st.text())
def test_any_text_parses(chain: str) -> None:
    assert_well_formed_result(chain, parse_chain(chain))


def test_breaking_any_tag_of_the_published_chain_is_reported() -> None:
    for tag in ALL_TAGS:
        start = PUBLISHED_CHAIN.find(tag)
        while start >= 0:
            for cut in range(start, start + len(tag)):
                broken = PUBLISHED_CHAIN[:cut] + PUBLISHED_CHAIN[cut + 1 :]
                assert validate_chain(broken, require_image_start=True), (tag, cut)
            start = PUBLISHED_CHAIN.find(tag, start + 1)
