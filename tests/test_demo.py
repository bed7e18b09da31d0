"""The demo's callbacks called directly (no browser): generate, the table/text editor, re-render (keeping the rest
of the image or not), the edit by prompt, rewards with their ranges, download."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import pytest
import torch

from gotr1.chain import parse_chain
from gotr1.model.editing import EditError, EditSource
from gotr1.models import load_model
from gotr1.rewards.base import RewardResult
from gotr1.serving.demo import DemoApp, _enlarged, _softly, _table_value, build_demo, highlighted_chain
from gotr1.serving.engine import Engine, Scores
from gotr1.serving.plan_edit import apply_rows, cell_problems, plan_rows
from gotr1.worlds.shapes.parse import read_prompt
from gotr1.worlds.shapes.rl import reward_function

PROMPT = "a red circle to the left of a blue square"


@pytest.fixture(scope="module")
def bundle():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the model is tiny; on a busy 2-core machine more threads only contend
    yield load_model(None)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(bundle):
    return Engine(bundle, name="shapes", rewards=reward_function(), read_prompt=read_prompt, rewards_name="shapes")


@pytest.fixture
def app(engine, tmp_path):
    return DemoApp(engine, root=tmp_path)


@pytest.fixture(scope="module")
def generated(engine, tmp_path_factory):
    """Three samples of PROMPT, shared by the tests that only read them."""
    app = DemoApp(engine, root=tmp_path_factory.mktemp("demo"))
    session, view = app.generate(None, PROMPT, 3, 0)
    return app, session, view


def _with_objects(session):
    """The first sample whose chain plans at least one boxed object (the shapes model nearly always does)."""
    for index, entry in enumerate(session.entries):
        if any(obj.box is not None for obj in parse_chain(entry.chain).objects):
            return index
    pytest.fail("no generated chain planned a boxed object")


def test_generate_returns_n_samples_with_chains_images_and_rewards(generated, engine):
    app, session, view = generated
    assert len(session.entries) == 3 and len(view["gallery"]) == 3
    assert [(e.seed, e.sample_index) for e in session.entries] == [(0, 0), (0, 1), (0, 2)]
    entry = session.entries[0]
    assert entry.image.size == (engine.image_size, engine.image_size)
    assert view["chain_text"] == view["base_chain"] == entry.chain
    assert view["table"] == plan_rows(entry.chain)
    for name in ("image", "overlay", "plan"):  # 64-px images are shown enlarged
        assert min(view[name].size) >= 384
    # nearest-neighbour enlargement: every 6x6 block of the shown image is one source pixel
    assert view["image"].resize(entry.image.size, 0).tobytes() == entry.image.convert("RGB").tobytes()
    assert "total" in view["rewards"] and "missing" not in view["rewards"]
    for component in ("r_sem", "r_spa", "r_ri", "r_pi"):
        assert component in view["rewards"]
    assert view["gallery"][0][1] == f"#1 · {session.entries[0].scores.total:.2f}"


def test_same_seed_gives_the_same_samples(generated, engine, tmp_path):
    _, session, _ = generated
    again, _ = DemoApp(engine, root=tmp_path).generate(None, PROMPT, 2, 0)
    assert [e.chain for e in again.entries] == [e.chain for e in session.entries[:2]]


def test_chain_view_highlights_each_object_with_its_row_number(generated):
    _, session, _ = generated
    chain = session.entries[_with_objects(session)].chain
    spans = highlighted_chain(chain)
    objects = parse_chain(chain).objects
    labelled = [(text, label) for text, label in spans if label is not None]
    assert [label for _, label in labelled] == [str(i + 1) for i in range(len(objects))]
    assert all(text.startswith(obj.name) for (text, _), obj in zip(labelled, objects))


def test_table_edit_rewrites_the_chain_and_text_edit_rewrites_the_table(generated):
    app, session, _ = generated
    chain = session.entries[_with_objects(session)].chain
    rows = plan_rows(chain)
    x1, x2 = int(rows[0][1]), int(rows[0][3])
    rows[0][1] = str((x1 + x2) // 2)
    edited, problems = app.table_edited(rows, chain)
    assert parse_chain(edited).objects[0].box.x1 == (x1 + x2) // 2
    assert "Plan OK" in problems
    # free text is kept; only the box changed
    assert parse_chain(edited).text == parse_chain(chain).text

    typed = edited.replace(f"({(x1 + x2) // 2},", "(7,", 1)
    table, base, problems = app.text_edited(typed)
    assert table[0][1] == "7" and base == typed
    assert table == plan_rows(typed)


def test_table_edits_apply_to_the_chain_the_table_was_read_from(generated):
    """An empty name drops its object when parsed; row i must still mean object i of the base chain."""
    app, session, _ = generated
    chain = session.entries[_with_objects(session)].chain
    rows = plan_rows(chain)
    rows[0][0] = ""
    blanked, problems = app.table_edited(rows, chain)
    assert "empty_object_name" in problems
    rows[0][0] = "green triangle"
    renamed, _ = app.table_edited(rows, chain)  # the base, not the blanked text
    assert [o.name for o in parse_chain(renamed).objects][0] == "green triangle"
    assert len(parse_chain(renamed).objects) == len(parse_chain(chain).objects)


def test_rerender_adds_a_sample_from_the_edited_chain(generated, engine, tmp_path):
    """Typed boxes are snapped onto the model's grid (64 px: a pixel edge every 15.625 units) and the page says so."""
    app = DemoApp(engine, root=tmp_path)
    session, view = app.generate(None, PROMPT, 2, 0)
    session.selected = _with_objects(session)
    original = session.current
    rows = plan_rows(original.chain)
    rows[0][1:] = ["100", "500", "400", "900"]
    chain, _ = app.table_edited(rows, original.chain)
    session, view = app.rerender(session, chain)
    assert len(session.entries) == 3
    edited = session.current
    assert edited is session.entries[-1] and original in session.entries
    assert (edited.prompt, edited.seed, edited.sample_index) == (original.prompt, original.seed, original.sample_index)
    assert "(94,500),(406,906)" in edited.chain and "(94,500),(406,906)" in view["chain_text"]
    assert parse_chain(edited.chain).objects[0].box.x1 == 94
    assert view["table"][0][1:] == ["94", "500", "406", "906"]
    assert "(100,500),(400,900) drawn as (94,500),(406,906): the model's grid" in view["compare_note"].replace("\\", "")
    assert edited.record["edit"]["snapped"] == [{"typed": [100, 500, 400, 900], "drawn": [94, 500, 406, 906]}]
    assert edited.record["teacher_forced"] and edited.record["edited_from"] == original.label
    assert "edit 1" in edited.label and "edit 1" in view["heading"]
    assert edited.image.size == original.image.size
    # editing the edit numbers on from the same generated sample (a full re-render: the same plan is allowed)
    session, _ = app.rerender(session, edited.chain, keep=False)
    assert "edit 2" in session.current.label


def test_bad_edits_show_problems_and_still_render(app):
    session, _ = app.generate(None, PROMPT, 1, 3)
    chain = session.current.chain
    rows = [
        ["red circle", "abc", "10", "200", "200"],  # a word where a number goes
        ["blue square", "100", "100", "1500", "300"],  # off the grid
        ["green square", "600", "600", "500", "700"],  # x2 < x1
        ["", "10", "10", "50", "50"],  # empty name
    ]
    edited, problems = app.table_edited(rows, chain)
    for kind in ("malformed_box", "out_of_range", "swapped_corners", "empty_object_name"):
        assert kind in problems
    with pytest.warns(UserWarning, match="rendered as written"):
        session, view = app.rerender(session, edited)
    assert session.current.record["problems"]
    assert "problem(s)" in view["problems"]
    assert session.current.image is not None


def test_problems_quote_chain_text_escaped(app):
    html = app.problems_html("<|obj_start|>x<|obj_end|> <|box_start|><script>alert(1)</script><|box_end|>")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_download_zip_holds_record_image_and_plan(generated, engine):
    app, session, view = generated
    with zipfile.ZipFile(view["download"]) as archive:
        assert sorted(archive.namelist()) == ["chain.json", "image.png", "plan.png"]
        record = json.loads(archive.read("chain.json"))
    entry = session.entries[0]
    assert record["chain"] == entry.chain and record["seed"] == 0 and record["sample_index"] == 0
    assert set(record["rewards"]) == {"total", "r_sem", "r_spa", "r_ri", "r_pi"}
    assert record["sampling"]["cfg_weight"] == engine.sampling.cfg_weight
    assert view["download"].startswith(str(app.root))


def test_refusals_raise_gradio_errors_and_the_app_keeps_working(app):
    with pytest.raises(gr.Error, match="Type a prompt"):
        app.generate(None, "   ", 2, 0)
    with pytest.raises(gr.Error, match="too long"):
        app.generate(None, "word " * 600, 2, 0)
    with pytest.raises(gr.Error, match="Seed"):
        app.generate(None, PROMPT, 2, -1)
    with pytest.raises(gr.Error, match="chains"):
        app.generate(None, PROMPT, 9, 0)
    with pytest.raises(gr.Error, match="temperature"):
        app.generate(None, PROMPT, 1, 0, image_temperature=-1)
    with pytest.raises(gr.Error, match="Generate a sample first"):
        app.rerender(None, "anything")
    session, _ = app.generate(None, PROMPT, 1, 0)
    with pytest.raises(gr.Error, match="context"):
        app.rerender(session, "a red circle " * 400)
    with pytest.raises(gr.Error, match="Nothing to edit"):  # keeping everything else, the same plan changes nothing
        app.rerender(session, session.current.chain)
    with pytest.raises(gr.Error, match="Type the new prompt"):
        app.prompt_edit(session, "  ")
    with pytest.raises(gr.Error, match="Generate a sample first"):
        app.prompt_edit(None, PROMPT)
    session, view = app.rerender(session, session.current.chain, keep=False)  # still works after refusals
    assert len(session.entries) == 2


def test_checks_name_the_input_to_blame_without_sampling(app, engine):
    """The page's validators: each refusal points at one input, and nothing is sampled to find out."""
    assert app.check_generate(PROMPT, 4, 0, 3.0, 1.0, 1.0) is None
    assert app.check_generate("", 4, 0, 3.0, 1.0, 1.0) == ("prompt", "Type a prompt first.")
    assert app.check_generate("word " * 600, 4, 0, 3.0, 1.0, 1.0)[0] == "prompt"
    assert app.check_generate(PROMPT, 0, 0, 3.0, 1.0, 1.0)[0] == "num_chains"
    assert app.check_generate(PROMPT, 4, 1.5, 3.0, 1.0, 1.0) == ("seed", "Must be a whole number")
    assert app.check_generate(PROMPT, 4, 0, "lots", 1.0, 1.0) == ("cfg_weight", "CFG weight must be a number")
    assert app.check_generate(PROMPT, 4, 0, 3.0, -0.5, 1.0) == (
        "text_temperature",
        "Text temperature must be from 0 to 100",
    )
    assert app.check_rerender(None, "x")[0] == "chain"
    session, _ = app.generate(None, PROMPT, 1, 0)
    assert app.check_rerender(session, session.current.chain, keep=False) is None
    field, message = app.check_rerender(session, session.current.chain, keep=True)
    assert field == "chain" and message.startswith("Nothing to edit")
    field, message = app.check_rerender(session, "a red circle " * 400)
    assert field == "chain" and f"context of {engine.context_length} tokens" in message
    assert app.check_prompt_edit(session, "a blue circle") is None
    assert app.check_prompt_edit(session, "") == ("edit_prompt", "Type the new prompt for this sample.")
    assert app.check_prompt_edit(session, "word " * 600)[0] == "edit_prompt"
    assert app.check_prompt_edit(None, "a blue circle")[0] == "edit_prompt"


def test_prompt_outside_the_rewards_language_says_not_scored(app):
    session, view = app.generate(None, "hello world", 1, 0)
    assert "not scored" in view["rewards"] and "0.000" not in view["rewards"]
    assert "not scored" in view["gallery"][0][1]


class _HalfMissing:
    """Rewards where one component could not be scored."""

    def evaluate(self, prompts, chains, images):
        results = {"r_sem": RewardResult(0.5), "r_judge": RewardResult(None, reason="judge timed out")}
        return [SimpleNamespace(total=None, results=results) for _ in chains]


class _Down:
    def evaluate(self, prompts, chains, images):
        raise ConnectionError("judge at 127.0.0.1:9 refused the connection")


def test_missing_rewards_are_never_shown_as_zero(bundle, tmp_path):
    engine = Engine(bundle, name="shapes", rewards=_HalfMissing())
    _, view = DemoApp(engine, root=tmp_path).generate(None, PROMPT, 1, 0)
    assert "0.500" in view["rewards"] and "judge timed out" in view["rewards"]
    assert "missing" in view["rewards"] and "0.000" not in view["rewards"]

    engine = Engine(bundle, name="shapes", rewards=_Down())
    _, view = DemoApp(engine, root=tmp_path).generate(None, PROMPT, 1, 0)
    assert "rewards unavailable" in view["rewards"] and "0.000" not in view["rewards"]

    _, view = DemoApp(Engine(bundle, name="shapes"), root=tmp_path).generate(None, PROMPT, 1, 0)
    assert "No rewards" in view["rewards"]


def test_select_shows_another_sample(generated):
    app, session, _ = generated
    _, view = app.select(session, 2)
    assert view["chain_text"] == session.entries[2].chain and "#3" in view["heading"]
    app.select(session, 99)  # out of range: nothing changes
    assert session.selected == 2
    session.selected = 0


def test_build_demo_has_the_stable_element_ids(engine):
    demo = build_demo(engine)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    for elem_id in (
        "prompt",
        "generate",
        "num-chains",
        "seed",
        "cfg",
        "text-temp",
        "image-temp",
        "samples",
        "result-image",
        "plan-canvas",
        "chain-view",
        "plan-table",
        "chain-text",
        "rerender",
        "keep",
        "redraw",
        "problems",
        "rewards",
        "download",
        "compare-before",
        "compare-after",
        "compare-note",
        "edit-prompt",
        "prompt-edit",
    ):
        assert elem_id in ids


def _moved(chain: str) -> str:
    """`chain` with its first boxed object moved sideways by 400 units (same size, kept on the grid)."""
    rows = plan_rows(chain)
    x1, x2 = int(rows[0][1]), int(rows[0][3])
    shift = 400 if x2 + 400 <= 1000 else -min(400, x1)
    rows[0][1], rows[0][3] = str(x1 + shift), str(x2 + shift)
    return apply_rows(chain, rows)


def _pixels(image) -> torch.Tensor:
    return torch.tensor(list(image.convert("RGB").tobytes()), dtype=torch.int16).reshape(image.height, image.width, 3)


def test_keeping_everything_else_resamples_only_the_changed_cells(app):
    session, _ = app.generate(None, PROMPT, 2, 0)
    session.selected = _with_objects(session)
    original = session.current
    session, view = app.rerender(session, _moved(original.chain))  # "keep everything else" is the default
    edited = session.current
    mask = edited.edit_mask
    assert mask is not None and 0 < int(mask.sum()) < mask.numel()
    # every token outside the mask is the original's
    assert torch.equal(edited.source.image_ids[~mask], original.source.image_ids[~mask])
    # and so, but for the VQ decoder's spill across cell borders, is every pixel
    side = int(mask.numel() ** 0.5)
    cell = original.image.width // side
    inside = mask.reshape(side, side).repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    changed = (_pixels(original.image) - _pixels(edited.image)).abs().amax(-1) > 8
    assert (changed & ~inside).float().mean() < 0.01
    assert (changed & inside).any()
    # shown side by side: the original as it was, the edit with exactly the re-sampled cells tinted
    assert view["before"].tobytes() == _enlarged(original.image).tobytes()
    scale = view["after"].width // original.image.width
    tinted = (_pixels(view["after"]) != _pixels(view["image"])).any(-1)
    shown = inside.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    assert torch.equal(tinted, shown)
    assert f"Re-sampled {int(mask.sum())} of {mask.numel()} token cells" in view["compare_note"]
    assert edited.record["edit"] | {"changes": None, "snapped": None} == {
        "kind": "plan",
        "from": original.label,
        "from_prompt": original.prompt,
        "from_chain": original.chain,
        "kept_the_rest": True,
        "redrawn": False,
        "mask_cells": int(mask.sum()),
        "cells": mask.numel(),
        "changes": None,
        "snapped": None,
    }
    assert [c["change"] for c in edited.record["edit"]["changes"]] == ["moved"]
    with zipfile.ZipFile(view["download"]) as archive:
        assert {"before.png", "mask.png", "image.png", "chain.json"} <= set(archive.namelist())
    assert view["download"].endswith(f"gotr1-{original.label.strip('#')}-edit-1.zip")


def test_a_redrawn_rerender_keeps_the_pixels_outside_the_mask_and_is_edited_again_from_its_pixels(app, engine):
    session, _ = app.generate(None, PROMPT, 2, 0)
    session.selected = _with_objects(session)
    original = session.current
    session, view = app.rerender(session, _moved(original.chain), keep=True, redraw=True)
    edited = session.current
    mask = edited.edit_mask
    assert mask is not None and 0 < int(mask.sum()) < mask.numel() and edited.record["edit"]["redrawn"]
    side = int(mask.numel() ** 0.5)
    cell = original.image.width // side
    inside = mask.reshape(side, side).repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    changed = (_pixels(original.image) - _pixels(edited.image)).abs().amax(-1) > 8
    assert (changed & ~inside).float().mean() < 0.01 and (changed & inside).any()
    assert "Redrew every token from the plan" in view["compare_note"]
    # its source for a later edit: its own pixels through the VQ (no token grid decodes to them)
    encoded = EditSource.from_image(engine.bundle, edited.image, edited.prompt, edited.chain).image_ids
    assert torch.equal(edited.source.image_ids, encoded.cpu())


def test_without_keep_the_whole_image_is_resampled_from_the_snapped_plan(app):
    session, _ = app.generate(None, PROMPT, 1, 0)
    original = session.current
    rows = plan_rows(original.chain)
    rows[0][1:] = ["700", "100", "900", "300"]
    chain, _ = app.table_edited(rows, original.chain)
    session, view = app.rerender(session, chain, keep=False)
    edited = session.current
    assert edited.edit_mask is None and not edited.record["edit"]["kept_the_rest"]
    assert "(703,94),(906,297)" in edited.chain
    note = view["compare_note"].replace("\\", "")
    assert "(700,100),(900,300) drawn as (703,94),(906,297): the model's grid" in note
    assert "whole image was re-sampled" in note
    assert view["before"] is not None and view["after"].tobytes() == view["image"].tobytes()


def test_edit_by_prompt_redraws_only_what_the_new_plan_changes(app):
    session, _ = app.generate(None, PROMPT, 1, 0)
    original = session.current
    new_prompt = "a red circle to the left of a green square"
    session, view = app.prompt_edit(session, new_prompt)
    edited = session.current
    assert edited.prompt == new_prompt and view["edit_prompt"] == new_prompt
    assert edited.record["edit"]["kind"] == "prompt" and "its prompt edited from" in view["heading"]
    assert "green square" in edited.chain
    mask = edited.edit_mask
    assert mask is not None and 0 < int(mask.sum()) < mask.numel()
    assert torch.equal(edited.source.image_ids[~mask], original.source.image_ids[~mask])
    assert "New prompt" in view["compare_note"] and edited.scores is not None  # scored against the new prompt


def test_an_edit_error_is_shown_as_the_page_shows_errors(app, monkeypatch):
    session, _ = app.generate(None, PROMPT, 1, 0)

    def refuse(source, **what):
        raise EditError("nothing to edit: the new plan places the same objects in the same boxes")

    monkeypatch.setattr(app.engine, "prepare_edit", refuse)
    with pytest.raises(gr.Error, match="Nothing to edit"):
        app.prompt_edit(session, "a blue circle")
    handler = _softly(lambda state, text: app.prompt_edit(state, text), 3)
    with pytest.warns(UserWarning, match="Nothing to edit"):
        assert handler(session, "a blue circle") == [gr.skip()] * 3
    assert len(session.entries) == 1


def test_a_bad_cell_is_marked_and_its_row_keeps_what_was_typed(app):
    chain = (
        "A <|obj_start|>red circle<|obj_end|> <|box_start|>(abc,10),(200,1500)<|box_end|> and "
        "<|obj_start|>blue square<|obj_end|> <|box_start|>(600,100),(500,300)<|box_end|>."
    )
    rows = plan_rows(chain)
    assert rows == [["red circle", "abc", "10", "200", "1500"], ["blue square", "600", "100", "500", "300"]]
    marks = cell_problems(rows)
    assert [[bool(m) for m in row] for row in marks] == [
        [False, True, False, False, True],
        [False, True, False, True, False],  # x2 < x1: both of the pair
    ]
    styling = _table_value(rows)["metadata"]["styling"]
    assert [[bool(css) for css in row] for row in styling] == [[bool(m) for m in row] for row in marks]
    assert (
        _table_value(plan_rows(chain.replace("abc", "100").replace("1500", "150").replace("600", "400")))["metadata"][
            "styling"
        ]
        is None
    )
    problems = app.problems_html(chain)
    assert "row 1: x1 &#x27;abc&#x27; is not a whole number" in problems and "off the 0..1000 grid" in problems
    # a text edit re-reads the table the same way: cells as typed, not a blank row or a clamped 1000
    table, _, _ = app.text_edited(chain)
    assert table == rows


def test_rewards_show_their_range_and_why_a_zero(generated):
    app, session, _ = generated
    entry = session.entries[0]
    html = app.rewards_html(entry)
    assert html.count("0–1") == 4 and "0–2" in html and "0: " not in html  # the product is 0..2
    edge = entry.chain.replace(plan_rows(entry.chain)[0][1], "0", 1)  # first box moved to the image's edge
    zero = replace(
        entry,
        chain=edge,
        scores=Scores(0.0, {"r_sem": 1.0, "r_spa": 1.0, "r_ri": 0.0, "r_pi": 0.0}, {"r_pi": "exact"}),
    )
    html = app.rewards_html(zero)
    assert "0: no planned object was found drawn in its box" in html
    assert "cut off by the image&#x27;s edge" in html and "reaches the image&#x27;s edge" in html
    assert "0: r_ri and r_pi are 0, and the product needs every stage to score" in html
    assert "exact" not in html  # a reason every value carries says nothing about a 0
    told = replace(zero, scores=Scores(0.0, {"r_sem": 0.0}, {"r_sem": "the judge saw no plan"}))
    assert "0: the judge saw no plan" in app.rewards_html(told)


def test_raw_api_values_a_page_never_sends_are_refusals(app, engine):
    """The raw API can send what no browser does: a lone surrogate in text, a non-number gallery index, a
    table that is None. Each is a refusal naming the input (gr.Error), never an exception from deep inside."""
    surrogate = "a red \ud800 circle"
    assert app.check_generate(surrogate, 4, 0, 3.0, 1.0, 1.0) == (
        "prompt",
        "The prompt holds characters that are not valid Unicode text",
    )
    assert app.check_generate(PROMPT, 4, 0, 1e308, 1.0, 1.0) == ("cfg_weight", "CFG weight must be from 0 to 100")
    assert app.check_generate(PROMPT, 4, 0, 3.0, 1.0, 1e308)[0] == "image_temperature"
    session, _ = app.generate(None, PROMPT, 1, 0)
    assert app.check_rerender(session, surrogate)[0] == "chain"
    with pytest.raises(gr.Error, match="not valid Unicode"):
        app.text_edited(surrogate)
    with pytest.raises(gr.Error, match="not valid Unicode"):
        app.table_edited([[surrogate, "1", "2", "3", "4"]], session.current.chain)
    for index in ("1", None, [0, 1], 1.0, True):
        with pytest.raises(gr.Error, match="Pick a sample"):
            app.select(session, index)
    assert app.table_edited(None, "")[0] == ""  # the table event's unprocessed payload
    payload = {"headers": ["name", "x1", "y1", "x2", "y2"], "data": [["red circle", 1, 2, 300, 400]]}
    assert "red circle<|obj_end|> <|box_start|>(1,2),(300,400)" in app.table_edited(payload, "")[0]


def test_raw_api_requests_leave_no_traceback(engine, capfd):
    """Over HTTP, as a script would call the page's events: the table event given None and a gallery select
    whose event data lacks a usable index are answered, with nothing but a warning in the server's log."""
    import httpx

    from gotr1.serving.demo import launch_demo

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = launch_demo(engine, port=port, prevent_thread_lock=True)
    try:
        base = f"http://127.0.0.1:{port}"
        config = httpx.get(f"{base}/config", timeout=30).json()
        elem = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
        fn = {(elem.get(d["targets"][0][0]), d["targets"][0][1]): d["id"] for d in config["dependencies"]}

        def call(key, data, event_data=None):
            body = {"data": data, "fn_index": fn[key], "session_hash": "raw", "event_data": event_data}
            return httpx.post(f"{base}/gradio_api/run/predict", json=body, timeout=60)

        assert call(("plan-table", "input"), [None, None]).status_code == 200
        for event_data in (None, {}, {"index": "x"}, {"index": [1, 2], "value": None}):
            assert call(("samples", "select"), [None], event_data).status_code == 200
    finally:
        demo.close()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, out + err


def test_sigterm_stops_the_demo_and_removes_its_folder(tmp_path):
    """`gotr1 demo` ended by SIGTERM (a service manager, `kill`) shuts down cleanly: its temporary folder goes."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, TMPDIR=str(tmp_path), GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    command = [sys.executable, "-m", "gotr1.cli", "demo", "--model", "tiny-random", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "slow"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert list(tmp_path.glob("gotr1-demo-*")), "the demo made no folder of its own"
        # The page answers as soon as Gradio's server is up, a moment before the demo says where it is: wait for
        # that line (a stuck demo is killed after 60 s, which ends the read), then stop it.
        started, watchdog = [], threading.Timer(60, proc.kill)
        watchdog.start()
        try:
            for line in proc.stdout:
                started.append(line)
                if "gotr1 demo: open" in line:
                    break
        finally:
            watchdog.cancel()
        proc.send_signal(signal.SIGTERM)
        output = "".join(started) + proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 130), output
    assert "Traceback" not in output, output
    assert not list(tmp_path.glob("gotr1-demo-*")), output
    # the start-up line names gotr1's own flag, not Gradio's launch(share=True)
    assert f"http://127.0.0.1:{port}/" in output and "--share" in output, output
    assert "share=True" not in output, output


def test_the_validator_names_words_the_boxes_contradict():
    from gotr1.serving.demo import DemoApp

    chain = (
        "<|obj_start|>red circle<|obj_end|> <|box_start|>(750,500),(1000,750)<|box_end|> to the left of "
        "<|obj_start|>blue square<|obj_end|> <|box_start|>(0,0),(250,250)<|box_end|>"
    )
    html = DemoApp.problems_html(chain)
    assert "contradict" in html and "to the left of" in html and "Plan OK" not in html
    assert "Plan OK" in DemoApp.problems_html(chain.replace("to the left of", "below"))
