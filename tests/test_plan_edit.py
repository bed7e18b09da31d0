"""Editing a plan as table rows: rows go back into the chain in place; bad cells become validator problems."""

from gotr1.chain import ProblemKind, parse_chain
from gotr1.serving.plan_edit import apply_rows, plan_rows

CHAIN = (
    "A <|obj_start|>red circle<|obj_end|> <|box_start|>(80,310),(420,690)<|box_end|> left of a "
    "<|obj_start|>blue square<|obj_end|> <|box_start|>(560,300),(920,700)<|box_end|>."
)


def test_rows_round_trip_the_chain_unchanged():
    rows = plan_rows(CHAIN)
    assert rows == [["red circle", "80", "310", "420", "690"], ["blue square", "560", "300", "920", "700"]]
    assert apply_rows(CHAIN, rows) == CHAIN


def test_an_edited_box_and_name_replace_that_object_only_and_keep_the_free_text():
    rows = plan_rows(CHAIN)
    rows[0][1] = 100.0  # tables hand numbers back as floats
    rows[1][0] = "green square"
    edited = parse_chain(apply_rows(CHAIN, rows))
    assert [o.name for o in edited.objects] == ["red circle", "green square"]
    assert (edited.objects[0].box.x1, edited.objects[1].box.x2) == (100, 920)
    assert edited.text.startswith("A red circle") and " left of a green square" in edited.text
    assert edited.is_valid


def test_removed_rows_drop_objects_and_added_rows_follow_the_last_object():
    one = parse_chain(apply_rows(CHAIN, plan_rows(CHAIN)[:1]))
    assert [o.name for o in one.objects] == ["red circle"]
    added = parse_chain(apply_rows(CHAIN, [*plan_rows(CHAIN), ["yellow star", 10, 10, 200, 200], [None] * 5]))
    assert [o.name for o in added.objects] == ["red circle", "blue square", "yellow star"]
    assert added.is_valid
    from_text = parse_chain(apply_rows("Just words.", [["red circle", 1, 2, 300, 400]]))
    assert from_text.objects[0].box.x2 == 300 and from_text.text.startswith("Just words.")


def test_bad_cells_become_the_validators_problems_not_errors():
    rows = plan_rows(CHAIN)
    rows[0][1] = "left"  # a word for a number
    rows[1][3] = 1500  # outside the grid
    kinds = {p.kind for p in parse_chain(apply_rows(CHAIN, rows)).problems}
    assert ProblemKind.MALFORMED_BOX in kinds or ProblemKind.NON_INTEGER_COORDINATES in kinds
    assert ProblemKind.OUT_OF_RANGE in kinds
    empty = parse_chain(apply_rows(CHAIN, [["", 1, 2, 3, 4]]))
    assert ProblemKind.EMPTY_OBJECT_NAME in {p.kind for p in empty.problems}
