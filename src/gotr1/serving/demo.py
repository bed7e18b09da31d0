"""The browser demo: sample GoT-R1 chains and images, look at each plan, edit it and re-render.

One page over a shared :class:`~gotr1.serving.engine.Engine`. A person types a prompt (Enter or the button)
and gets N samples (same seed, sample indices 0..N-1, so each is reproducible on its own); the selected sample
shows its image, its plan over the image and on a blank canvas (64-px images enlarged by whole pixels), its
chain with the objects highlighted and, when the engine has rewards, every reward component with its range
(a missing one says why, never 0; a 0 says what it means).

Editing: the selected sample's plan is a table (name, x1, y1, x2, y2) beside the full chain text. The two
stay in step through `.input` events only (user edits, never programmatic updates, so no loops): a text edit
re-reads the table from the text; a table edit is written into the chain the table was last read from
(`plan_rows` / `apply_rows`), so row i always means that chain's object i. "Re-render" draws the edited chain
with the sample's prompt, seed, sample index and sampling settings, and adds the result as a new sample; the
original stays. Typed boxes are first snapped onto the coordinates the model writes (`chain.snap_chain`), and
the page says which moved. With "keep everything else" (the default) only the image tokens under the changed
boxes are re-sampled and every other token is the original's (`Engine.prepare_edit`, a Job with `source_ids`
and `edit_mask`); the original and the edit are shown side by side with the re-sampled cells tinted. Without
it the whole image is re-sampled. "Edit by prompt" gives the sample a new prompt: the model plans it keeping
what it can of the old plan, and only the cells that plan changes are re-sampled.

Bad edits are data, not errors: a word for a number, a box off the grid, x2 < x1 or an empty name are
written into the chain as typed, the table marks the cell at fault, the validator's problems are shown (and
warned about on re-render), and the chain is still rendered — the model sees the malformed chain as it would
see its own mistakes. Only a chain that cannot be rendered at all (too long for the model's context) or an
edit that changes nothing ("keep everything else" with the same plan) is refused.

Everything a person types is escaped before it reaches HTML (problem messages quote chain text).
"""

from __future__ import annotations

import functools
import html
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import weakref
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import torch
from PIL import Image, ImageDraw

from ..chain import (
    BEGIN_OF_IMAGE,
    GRID,
    Box,
    PlannedObject,
    parse_chain,
    relation_contradictions,
    snap_chain,
    validate_chain,
)
from ..layout import draw_plan, object_color, plan_overlay
from ..model.edit_masks import snapped_record
from ..model.editing import EditError, EditPlan, EditSource
from ..model.editing import prepare_edit as plan_edit
from ..model.loading import PromptTooLong
from ..model.sampler import MAX_CFG_WEIGHT, MAX_TEMPERATURE, SamplingConfig
from .engine import Engine, Job, Sample, Scores
from .plan_edit import PLAN_COLUMNS, apply_rows, cell_problems, plan_rows

__all__ = ["DemoApp", "DemoSession", "build_demo", "launch_demo"]

log = logging.getLogger(__name__)

DISPLAY_SIDE = 384  # small images are enlarged (nearest) to at least this for display
THUMBNAIL_SIDE = 192
PANEL_MIN_WIDTH = 230  # three image panels side by side in an 800-px window
MAX_CHAINS = 8
MAX_ENTRIES = 48  # samples kept per session; the oldest edits go first
MAX_PROMPT_CHARS = 4000  # checked before tokenising, so a pasted book cannot stall the server
MAX_CHAIN_CHARS = 20000
MAX_SEED = 2**31 - 1

# Component names in the order the detail view fills them (see DemoApp.view).
VIEW_FIELDS = (
    "gallery",
    "heading",
    "image",
    "overlay",
    "plan",
    "rewards",
    "chain_view",
    "table",
    "chain_text",
    "base_chain",
    "problems",
    "download",
    "compare",
    "compare_note",
    "before",
    "after",
    "edit_prompt",
)

BAD_CELL_STYLE = "background: #ffe1d6; color: #8a1c00; font-weight: 600; outline: 2px solid #e8590c;"


@dataclass
class Entry:
    """One sample as the session keeps it: what to show and to download, and its image tokens for edits (not the
    sampler's other tensors)."""

    uid: int
    label: str
    prompt: str
    seed: int
    sample_index: int
    chain: str
    image: Image.Image
    record: dict[str, Any]
    sampling: SamplingConfig
    source: EditSource  # what an edit of this sample starts from: prompt, chain and image tokens
    scores: Scores | None = None
    score_note: str = ""
    root: int = 0  # uid of the generated sample this one was edited from (its own uid if generated)
    edited_from: str | None = None  # label of the sample whose chain was edited
    before: Image.Image | None = None  # an edit: the image it was edited from
    edit_mask: torch.Tensor | None = None  # an edit that kept the rest: [N] bool, True = re-sampled token cell
    edit_note: str = ""  # an edit: what it changed (Markdown, escaped)


@dataclass
class DemoSession:
    """One browser tab's samples, which one is selected, and its download folder."""

    entries: list[Entry] = field(default_factory=list)
    selected: int = 0
    folder: Path | None = None
    next_uid: int = 0
    edits: dict[int, int] = field(default_factory=dict)  # generated sample's uid -> edits made from it

    @property
    def current(self) -> Entry | None:
        return self.entries[self.selected] if 0 <= self.selected < len(self.entries) else None


def _remove_folder(session: DemoSession | None) -> None:
    """State delete callback: a closed tab's download folder goes with it."""
    if session is not None and session.folder is not None:
        shutil.rmtree(session.folder, ignore_errors=True)


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def _md_escape(text: object) -> str:
    """Text for a Markdown component: HTML-escaped and every Markdown marker backslashed."""
    # quotes stay as they are: an entity's '#' would be backslashed, and quotes mean nothing to Markdown
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _enlarged(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """`image` scaled up by a whole factor with nearest neighbour, so 64-px pixels stay crisp squares."""
    scale = max(1, -(-side // max(1, image.width)))
    rgb = image.convert("RGB")
    return rgb.resize((rgb.width * scale, rgb.height * scale), Image.NEAREST) if scale > 1 else rgb


class Refused(gr.Error):
    """A request the demo turns down, and the input that is to blame (shown next to it on the page)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, print_exception=False)  # bad input, not a bug: no traceback in the log
        self.field = field


def _text(value: Any, name: str, field: str) -> str:
    """`value` as text a page could have sent: a string (None: empty) holding only valid Unicode (the raw API
    can send a lone surrogate, which no tokenizer or JSON encoder takes); Refused otherwise."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(field, f"{name} must be text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(field, f"{name} holds characters that are not valid Unicode text") from None
    return value


def _number(value: Any, name: str, field: str, *, minimum: float, maximum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Refused(field, f"{name} must be a number") from None
    if number != number or number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum:g} to {maximum:g}" if maximum is not None else f"at least {minimum:g}"
        raise Refused(field, f"{name} must be {bound}")
    return number


class GalleryClick(gr.EventData):
    """A gallery select event's index, or None when the request carries none. (gr.SelectData raises inside
    Gradio, with a traceback, on event data without 'index' and 'value', which the raw API can send.)"""

    def __init__(self, target: Any, data: Any) -> None:
        super().__init__(target, data)
        self.index = data.get("index") if isinstance(data, dict) else None


def _table_rows(value: Any) -> list[list[str]]:
    """A Dataframe's value (list of rows, pandas frame or {'data': ...}) as rows of text cells."""
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):  # pandas, if a caller passes one
        value = value.values.tolist()
    elif isinstance(value, dict):  # the Dataframe's own payload (the table event takes it unprocessed)
        value = value.get("data") or []
    if not isinstance(value, (list, tuple)):
        raise Refused("table", "The table must be rows of cells.")
    return [list(row) for row in value if isinstance(row, (list, tuple))]


class DemoApp:
    """The demo's callbacks, free of Gradio components so tests can call them directly.

    Each event handler takes the session (None before the first generation) and returns it with a `view`:
    a dict of VIEW_FIELDS -> plain values (PIL images, rows, strings) that `build_demo` maps to components.
    Refusals raise `gr.Error` (the page shows it, nothing changes); problems in an edit only warn.
    """

    def __init__(self, engine: Engine, root: Path | None = None) -> None:
        self.engine = engine
        if root is None:  # our own folder, removed with the app (and at exit, or by close())
            self.root = Path(tempfile.mkdtemp(prefix="gotr1-demo-"))
            self._remove_root = weakref.finalize(self, shutil.rmtree, str(self.root), True)
        else:
            self.root = Path(root)
            self._remove_root = None

    def close(self) -> None:
        """Remove the app's own download folder now (a folder given as `root` is the caller's and stays)."""
        if self._remove_root is not None:
            self._remove_root()

    # -- events ----------------------------------------------------------------------------------
    def generate(
        self,
        session: DemoSession | None,
        prompt: str,
        num_chains: float = 4,
        seed: float = 0,
        cfg_weight: float | None = None,
        text_temperature: float | None = None,
        image_temperature: float | None = None,
    ) -> tuple[DemoSession, dict[str, Any]]:
        """N chains for `prompt` (seed `seed`, sample indices 0..N-1), replacing the session's samples."""
        prompt, count, seed_value, sampling = self._generate_request(
            prompt, num_chains, seed, cfg_weight, text_temperature, image_temperature
        )
        samples = self._run([Job(prompt, seed_value, index) for index in range(count)], sampling)
        session = session or DemoSession()
        self._clear_downloads(session)
        session.entries, session.edits = [], {}
        for sample in samples:
            uid = session.next_uid
            session.next_uid += 1
            session.entries.append(self._entry(sample, sampling, uid, f"#{sample.job.sample_index + 1}", root=uid))
        session.selected = 0
        return session, self.view(session)

    def check_generate(self, prompt, num_chains, seed, cfg_weight, text_temperature, image_temperature):
        """(input, message) for the first input that would make `generate` refuse, else None."""
        try:
            self._generate_request(prompt, num_chains, seed, cfg_weight, text_temperature, image_temperature)
        except Refused as exc:
            return exc.field, exc.message
        return None

    def select(self, session: DemoSession | None, index: int) -> tuple[DemoSession | None, dict[str, Any]]:
        """Show sample `index` (a gallery click) and load its plan into the editor."""
        if isinstance(index, bool) or not isinstance(index, int):  # the raw API can send anything
            raise Refused("gallery", f"Pick a sample in the gallery (a sample number, not {type(index).__name__}).")
        if session is not None and 0 <= index < len(session.entries):
            session.selected = index
        return session, self.view(session)

    def table_edited(self, rows: Any, base_chain: str) -> tuple[str, str]:
        """A table edit written into the chain the table was read from -> (new chain text, problems HTML)."""
        chain = _text(apply_rows(_text(base_chain, "The chain", "chain"), _table_rows(rows)), "A cell", "table")
        return chain, self.problems_html(chain)

    def text_edited(self, chain: str) -> tuple[list[list[str]], str, str]:
        """A chain text edit -> (its table rows, the new base chain for table edits, problems HTML)."""
        chain = _text(chain, "The chain", "chain")
        return plan_rows(chain), chain, self.problems_html(chain)

    def rerender(
        self, session: DemoSession | None, chain: str, keep: bool = True, redraw: bool = False
    ) -> tuple[DemoSession, dict[str, Any]]:
        """A new image from the edited chain with the selected sample's prompt, seed, index and settings.

        Typed boxes are snapped onto the model's grid first (each move is reported). `keep`: re-sample only the
        image tokens under the boxes the edit changes and keep the others (refused when it changes nothing); with
        `redraw` too, sample every token and keep only the pixels outside those boxes' cells (a new colour in the
        shapes world needs it: docs/editing.md); otherwise the whole image. The chain is rendered even when the
        validator finds problems (they are warned about and shown); a chain that does not fit in the model's
        context is refused.
        """
        entry, chain = self._rerender_request(session, chain)
        problems = validate_chain(chain)
        if keep:
            plan = self._prepare(entry, "chain", chain=chain)
            job = _edit_job(entry, plan, redraw)
            snapped = plan.snapped
        else:
            plan = None
            chain, snapped = snap_chain(chain, self.engine.image_size)
            job = Job(entry.prompt, entry.seed, entry.sample_index, chain=chain)
        if problems:
            gr.Warning(
                f"The edited chain has {len(problems)} problem(s), listed under the editor; it is rendered as "
                "written, so the model sees the malformed plan."
            )
        sample = self._run([job], entry.sampling)[0]
        return session, self._add_edit(session, entry, sample, "plan", plan, snapped)

    def check_rerender(self, session: DemoSession | None, chain: str, keep: bool = True):
        """(input, message) when `rerender` would refuse, else None. Nothing is sampled to find out: a plan
        edit's mask comes from the two chains alone, so it is worked out here without the engine's lock."""
        try:
            entry, chain = self._rerender_request(session, chain)
            if keep:
                plan_edit(self.engine.sampler, entry.source, chain=chain)
        except Refused as exc:
            return exc.field, exc.message
        except EditError as exc:
            return "chain", _sentence(exc)
        return None

    def prompt_edit(self, session: DemoSession | None, prompt: str) -> tuple[DemoSession, dict[str, Any]]:
        """The selected sample redrawn for a new prompt: the model writes candidate plans for it, the one that
        keeps most of the old plan in place is drawn, and only the cells that plan changes are re-sampled."""
        entry, prompt = self._prompt_edit_request(session, prompt)
        plan = self._prepare(entry, "edit_prompt", prompt=prompt, seed=entry.seed, sampling=entry.sampling)
        sample = self._run([_edit_job(entry, plan)], entry.sampling)[0]
        return session, self._add_edit(session, entry, sample, "prompt", plan, [])

    def check_prompt_edit(self, session: DemoSession | None, prompt: str):
        """(input, message) when `prompt_edit` would refuse before sampling, else None."""
        try:
            self._prompt_edit_request(session, prompt)
        except Refused as exc:
            return exc.field, exc.message
        return None

    # -- what the page shows ---------------------------------------------------------------------
    def view(self, session: DemoSession | None) -> dict[str, Any]:
        """Every VIEW_FIELDS value for the session's selected sample (blank when there is none).

        "compare" says whether the sample is an edit; then "before" / "after" are the image it was edited from
        and the edit, with the re-sampled token cells tinted when the rest was kept (else None)."""
        entry = session.current if session is not None else None
        gallery = [(self._thumbnail(e), self._caption(e)) for e in session.entries] if session is not None else []
        if session is None or entry is None:
            return {
                "gallery": gallery,
                "heading": "",
                "image": None,
                "overlay": None,
                "plan": None,
                "rewards": "",
                "chain_view": [],
                "table": [],
                "chain_text": "",
                "base_chain": "",
                "problems": "",
                "download": None,
                "compare": False,
                "compare_note": "",
                "before": None,
                "after": None,
                "edit_prompt": "",
            }
        objects = parse_chain(entry.chain).objects
        overlay = plan_overlay(entry.image.convert("RGB"), objects, min_side=DISPLAY_SIDE)
        return {
            "gallery": gallery,
            "heading": self._heading(entry, session),
            "image": _enlarged(entry.image),
            "overlay": overlay,
            "plan": draw_plan(objects, overlay.size),
            "rewards": self.rewards_html(entry),
            "chain_view": highlighted_chain(entry.chain),
            "table": plan_rows(entry.chain),
            "chain_text": entry.chain,
            "base_chain": entry.chain,
            "problems": self.problems_html(entry.chain),
            "download": str(self.download(session)),
            "compare": entry.before is not None,
            "compare_note": entry.edit_note,
            "before": None if entry.before is None else _enlarged(entry.before),
            "after": None if entry.before is None else self.edited_image(entry),
            "edit_prompt": entry.prompt,
        }

    @staticmethod
    def edited_image(entry: Entry) -> Image.Image:
        """The sample enlarged, the token cells its edit re-sampled tinted and outlined (every pixel outside them
        as it is); after a full re-render, just the enlarged sample."""
        if entry.edit_mask is None:
            return _enlarged(entry.image)
        return _mask_view(entry.image, entry.edit_mask)

    def rewards_html(self, entry: Entry) -> str:
        """Each reward component with its range, and the total; a missing one says why, never shows 0; a 0 says
        what it means (and, for an image reward, names planned boxes at the image's edge, whose objects come
        out cut off)."""
        if self.engine.rewards is None:
            return '<div class="gotr1-note">No rewards are configured for this model.</div>'
        if entry.scores is None:
            note = entry.score_note or "not scored"
            return f'<div class="gotr1-note">Rewards: {_escape(note)}</div>'
        rows = []
        components = entry.scores.components
        for name, value in components.items():
            title, why_zero = _REWARD_MEANING.get(name, ("", ""))
            reason = entry.scores.reasons.get(name, "")
            if value is None:
                shown = f'<span class="gotr1-missing">missing{": " + _escape(reason) if reason else ""}</span>'
            else:
                shown = f"{value:.3f}"
            tip = f' title="{_escape(title)}"' if title else ""
            rows.append(f'<tr><td{tip}>{_escape(name)}</td><td>{shown}</td><td class="gotr1-range">0–1</td></tr>')
            if value == 0:
                why = reason if reason and reason not in _UNINFORMATIVE_REASONS else why_zero
                if name in _IMAGE_REWARDS:
                    why = " ".join(filter(None, (why, _edge_note(entry.chain, entry.image.width))))
                if why:
                    rows.append(f'<tr class="gotr1-why"><td colspan="3">0: {_escape(why)}</td></tr>')
        total = entry.scores.total
        total_shown = (
            f"{total:.3f}"
            if total is not None
            else '<span class="gotr1-missing">missing: a component is missing</span>'
        )
        method = getattr(self.engine.rewards, "combine", None)
        top = _total_range(method, components, getattr(self.engine.rewards, "weights", None))
        how = _COMBINE_TITLES.get(method, f"combined by {method}" if isinstance(method, str) else "")
        tip = f' title="{_escape(how)}"' if how else ""
        rows.append(
            f'<tr class="gotr1-total"><td{tip}>total</td><td>{total_shown}</td>'
            f'<td class="gotr1-range">{_escape(top)}</td></tr>'
        )
        if total == 0 and method in _NEEDS_EVERY_STAGE:
            zeros = [n for n, v in components.items() if v == 0]
            if zeros:
                verb = "is" if len(zeros) == 1 else "are"
                rows.append(
                    f'<tr class="gotr1-why"><td colspan="3">0: {_escape(" and ".join(zeros))} {verb} 0, and the '
                    f"{_escape(method)} needs every stage to score</td></tr>"
                )
        title = f"Rewards ({_escape(self.engine.rewards_name)})" if self.engine.rewards_name else "Rewards"
        head = '<tr class="gotr1-head"><th></th><th>score</th><th>range</th></tr>'
        return f'<table class="gotr1-rewards"><caption>{title}</caption>{head}{"".join(rows)}</table>'

    @staticmethod
    def problems_html(chain: str) -> str:
        """The validator's verdict on `chain` as a visible message."""
        if not chain.strip():
            empty = "The chain is empty: the image is drawn from the prompt alone."
            return f'<div class="gotr1-problems gotr1-bad">{empty}</div>'
        problems = validate_chain(chain)
        marked = [
            f"<li>row {i + 1}: {_escape(mark)}</li>"
            for i, row in enumerate(cell_problems(plan_rows(chain)))
            for mark in dict.fromkeys(m for m in row if m)
        ]
        cells = f"<div>Marked in the table:<ul>{''.join(marked)}</ul></div>" if marked else ""
        if not problems:
            count = len(parse_chain(chain).objects)
            if not count:
                return '<div class="gotr1-problems gotr1-bad">No format problems, but the chain plans no objects.</div>'
            contradictions = relation_contradictions(chain)
            if contradictions:  # well formed, but its words and boxes disagree: the model reads both
                items = "".join(f"<li>{_escape(c)}</li>" for c in contradictions)
                return (
                    f'<div class="gotr1-problems gotr1-bad">{count} object(s), no format problems, but the words '
                    f"contradict the boxes (edit the words too):<ul>{items}</ul></div>"
                )
            return f'<div class="gotr1-problems gotr1-ok">Plan OK: {count} object(s), no format problems.</div>'
        items = "".join(f"<li><code>{_escape(p.kind)}</code> {_escape(p.message)}</li>" for p in problems)
        return (
            f'<div class="gotr1-problems gotr1-bad"><b>{len(problems)} problem(s)</b> — re-render draws the chain as '
            f"written (boxes off the grid are clamped, swapped corners reordered, unreadable boxes dropped):"
            f"<ul>{items}</ul>{cells}</div>"
        )

    def download(self, session: DemoSession) -> Path:
        """A zip of the selected sample: chain.json (its record), image.png, plan.png (the plan over it) and, for
        an edit, before.png (the image it was edited from) and mask.png (the re-sampled cells tinted). Named
        after the sample's label (gotr1-1-edit-2.zip), in a folder of its own."""
        entry = session.current
        assert entry is not None
        if session.folder is None or not session.folder.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            session.folder = Path(tempfile.mkdtemp(prefix="session-", dir=self.root))
        folder = session.folder / str(entry.uid)
        path = folder / f"gotr1-{re.sub(r'[^0-9a-z]+', '-', entry.label.lower()).strip('-') or entry.uid}.zip"
        if path.is_file():
            return path
        folder.mkdir(exist_ok=True)
        overlay = plan_overlay(entry.image.convert("RGB"), parse_chain(entry.chain).objects, min_side=DISPLAY_SIDE)
        handle, name = tempfile.mkstemp(suffix=".part", dir=folder)  # one per writer, then renamed
        os.close(handle)
        partial = Path(name)
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("chain.json", json.dumps(entry.record, indent=2, ensure_ascii=False))
            archive.writestr("image.png", _png(entry.image))
            archive.writestr("plan.png", _png(overlay))
            if entry.before is not None:
                archive.writestr("before.png", _png(entry.before))
            if entry.edit_mask is not None:
                archive.writestr("mask.png", _png(self.edited_image(entry)))
        partial.replace(path)
        return path

    def chain_overflow(self, prompt: str, chain: str) -> str | None:
        """Why `chain` cannot be teacher-forced after `prompt` (it leaves no room for the image), else None."""
        try:
            self.engine.check_prompt(prompt, chain=chain)
        except PromptTooLong as exc:
            return f"The edited chain does not fit: {exc}."
        return None

    # -- helpers ---------------------------------------------------------------------------------
    def _generate_request(self, prompt, num_chains, seed, cfg_weight, text_temperature, image_temperature):
        """The checked inputs of a generation: (prompt, chain count, seed, sampling settings); Refused if not."""
        prompt = _text(prompt, "The prompt", "prompt").strip()
        if not prompt:
            raise Refused("prompt", "Type a prompt first.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise Refused("prompt", f"The prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are taken.")
        try:
            self.engine.check_prompt(prompt)
        except PromptTooLong as exc:
            raise Refused("prompt", f"Prompt too long: {_escape(exc)}") from None
        count = _number(num_chains, "Number of chains", "num_chains", minimum=1, maximum=MAX_CHAINS)
        seed_value = _number(0 if seed is None else seed, "Seed", "seed", minimum=0, maximum=MAX_SEED)
        if not count.is_integer() or not seed_value.is_integer():
            raise Refused("seed" if count.is_integer() else "num_chains", "Must be a whole number")
        base = self.engine.sampling

        def setting(value, default, name, field, maximum=MAX_TEMPERATURE):
            return default if value is None else _number(value, name, field, minimum=0, maximum=maximum)

        sampling = replace(
            base,
            cfg_weight=setting(cfg_weight, base.cfg_weight, "CFG weight", "cfg_weight", MAX_CFG_WEIGHT),
            text_temperature=setting(text_temperature, base.text_temperature, "Text temperature", "text_temperature"),
            image_temperature=setting(
                image_temperature, base.image_temperature, "Image temperature", "image_temperature"
            ),
        )
        return prompt, int(count), int(seed_value), sampling

    def _rerender_request(self, session: DemoSession | None, chain: str) -> tuple[Entry, str]:
        """The sample to re-render and the chain to force; Refused when there is none or it cannot fit."""
        entry = session.current if session is not None else None
        if entry is None:
            raise Refused("chain", "Generate a sample first, then edit its plan.")
        chain = _text(chain, "The chain", "chain").removesuffix(BEGIN_OF_IMAGE)
        if len(chain) > MAX_CHAIN_CHARS:
            raise Refused("chain", f"The chain is {len(chain)} characters; at most {MAX_CHAIN_CHARS} are taken.")
        too_long = self.chain_overflow(entry.prompt, chain)
        if too_long:
            raise Refused("chain", too_long)
        return entry, chain

    def _prompt_edit_request(self, session: DemoSession | None, prompt: str) -> tuple[Entry, str]:
        """The sample to edit and its new prompt; Refused when there is none or the prompt is empty or too long."""
        entry = session.current if session is not None else None
        if entry is None:
            raise Refused("edit_prompt", "Generate a sample first, then give it a new prompt.")
        prompt = _text(prompt, "The new prompt", "edit_prompt").strip()
        if not prompt:
            raise Refused("edit_prompt", "Type the new prompt for this sample.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise Refused(
                "edit_prompt", f"The prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are taken."
            )
        try:
            self.engine.check_prompt(prompt)
        except PromptTooLong as exc:
            raise Refused("edit_prompt", f"Prompt too long: {_escape(exc)}") from None
        return entry, prompt

    def _prepare(self, entry: Entry, field: str, **what: Any) -> EditPlan:
        """The engine's plan of an edit of `entry` (chain= or prompt=); its EditError refused on `field`."""
        try:
            return self.engine.prepare_edit(entry.source, **what)
        except EditError as exc:
            raise Refused(field, _sentence(exc)) from None
        except PromptTooLong as exc:
            raise Refused(field, _escape(exc)) from None
        except Exception as exc:  # the page says what failed and stays usable
            raise _failed("Planning the edit", exc) from None

    def _add_edit(
        self,
        session: DemoSession,
        entry: Entry,
        sample: Sample,
        kind: str,
        plan: EditPlan | None,
        snapped: Sequence[tuple[Box, Box]],
    ) -> dict[str, Any]:
        """`sample`, an edit of `entry`, added to the session as "<root> edit <n>" and selected; its view."""
        root_label = entry.label.split(" edit ")[0]
        session.edits[entry.root] = edits = session.edits.get(entry.root, 0) + 1
        uid = session.next_uid
        session.next_uid += 1
        edited = self._entry(
            sample, entry.sampling, uid, f"{root_label} edit {edits}", root=entry.root, edited_from=entry.label
        )
        mask = sample.generation.edit_mask
        edited.before = entry.image
        edited.edit_mask = None if mask is None else mask.detach().to("cpu", torch.bool).reshape(-1).clone()
        edited.edit_note = _edit_note(entry, edited, kind, plan, snapped, sample.generation.redrawn)
        edited.record["edit"] = {
            "kind": kind,
            "from": entry.label,
            "from_prompt": entry.prompt,
            "from_chain": entry.chain,
            "kept_the_rest": mask is not None,
            "redrawn": sample.generation.redrawn,
            "mask_cells": None if mask is None else int(edited.edit_mask.sum()),
            "cells": int(entry.source.image_ids.numel()),
            "changes": [change.to_dict() for change in (plan.changes if plan is not None else [])],
            "snapped": snapped_record(snapped),
        }
        session.entries.append(edited)
        self._trim(session)
        session.selected = len(session.entries) - 1
        return self.view(session)

    def _run(self, jobs: Sequence[Job], sampling: SamplingConfig) -> list[Sample]:
        try:
            return self.engine.run(jobs, sampling)
        except PromptTooLong as exc:
            raise gr.Error(_escape(exc)) from None
        except Exception as exc:  # the page says what failed and stays usable
            raise _failed("Sampling", exc) from None

    def _source(self, sample: Sample) -> EditSource:
        """What a later edit of `sample` starts from: its tokens, or, for a redrawn edit (no token grid decodes
        to its pixels), its image encoded by the model's VQ."""
        if sample.generation.redrawn:
            return self.engine.source_from_image(sample.image, sample.job.prompt, sample.chain)
        return EditSource.from_generation(sample.generation)

    def _entry(
        self,
        sample: Sample,
        sampling: SamplingConfig,
        uid: int,
        label: str,
        *,
        root: int,
        edited_from: str | None = None,
    ) -> Entry:
        record = sample.record()
        record["model"] = self.engine.name
        record["sampling"] = sampling.sample_settings()
        record["teacher_forced"] = sample.job.chain is not None
        if edited_from is not None:
            record["edited_from"] = edited_from
        return Entry(
            uid=uid,
            label=label,
            prompt=sample.job.prompt,
            seed=sample.job.seed,
            sample_index=sample.job.sample_index,
            chain=sample.chain,
            image=sample.image,
            record=record,
            sampling=sampling,
            source=_cpu(self._source(sample)),
            scores=sample.scores,
            score_note=sample.score_note,
            root=root,
            edited_from=edited_from,
        )

    def _trim(self, session: DemoSession) -> None:
        """Keep at most MAX_ENTRIES samples, dropping the oldest edits (generated samples stay)."""
        while len(session.entries) > MAX_ENTRIES:
            index = next((i for i, e in enumerate(session.entries) if e.uid != e.root), 0)
            session.entries.pop(index)

    @staticmethod
    def _clear_downloads(session: DemoSession) -> None:
        if session.folder is not None and session.folder.is_dir():
            for path in session.folder.iterdir():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _thumbnail(entry: Entry) -> Image.Image:
        """The image enlarged, each planned box outlined in its object's colour; no names (unreadable at a
        thumbnail's size, and cut by its edges): the selected sample shows them."""
        image = _enlarged(entry.image, THUMBNAIL_SIDE)
        draw = ImageDraw.Draw(image)
        for obj in parse_chain(entry.chain).objects:
            if obj.box is not None:
                x1, y1, x2, y2 = obj.box.clamped().ordered().to_pixels(*image.size)
                right, bottom = max(x1, x2 - 1), max(y1, y2 - 1)
                draw.rectangle((x1, y1, right, bottom), outline=object_color(obj.name), width=2)
        return image

    def _caption(self, entry: Entry) -> str:
        if self.engine.rewards is None:
            return entry.label
        if entry.scores is None:
            return f"{entry.label} · not scored"
        total = entry.scores.total
        return f"{entry.label} · {'missing' if total is None else f'{total:.2f}'}"

    def _heading(self, entry: Entry, session: DemoSession) -> str:
        settings = entry.sampling
        origin = ""
        if entry.edited_from:
            kind = entry.record.get("edit", {}).get("kind", "plan")
            origin = f" — its {kind} edited from {_md_escape(entry.edited_from)}"
        text = (
            f"### Sample {entry.label}{origin}\n"
            f"Prompt: {_md_escape(entry.prompt)} · seed {entry.seed} · sample index {entry.sample_index} · "
            f"CFG {settings.cfg_weight:g} · text T {settings.text_temperature:g} · "
            f"image T {settings.image_temperature:g}"
        )
        if entry.record.get("hit_token_cap"):
            text += " · the chain reached the reasoning-token cap"
        return text


# What each GoT-R1 reward component asks (shown on hover) and what a 0 means.
_REWARD_MEANING = {
    "r_sem": (
        "R_sem, prompt → chain: does the chain plan the objects the prompt asks for, and nothing else?",
        "the chain plans none of the objects the prompt asks for (or no objects at all).",
    ),
    "r_spa": (
        "R_spa, prompt → plan: do the planned boxes keep the prompt's counts and relations?",
        "the planned boxes keep none of the prompt's counts and relations (or the chain has no boxes).",
    ),
    "r_ri": (
        "R_RI, chain → image: is each planned object drawn where the chain put it (box overlap)?",
        "no planned object was found drawn in its box: not drawn, drawn elsewhere or in another colour or "
        "shape, or cut off by the image's edge so that its shape is not recognised.",
    ),
    "r_pi": (
        "R_PI, prompt → image: does the image show what the prompt asks for (objects, counts, relations)?",
        "the image meets none of the prompt's checks; an object cut off by the image's edge is not recognised "
        "as its shape, so it counts as a wrong object.",
    ),
    "r_hps": ("R_HPS: a human-preference score of the image", "the preference scorer rates the image lowest."),
}
_IMAGE_REWARDS = ("r_ri", "r_pi")
# Reasons a reward gives for every value, which say nothing about a 0.
_UNINFORMATIVE_REASONS = {"exact", "judged", "located"}
_COMBINE_TITLES = {
    "product": "GoT-R1's product: R_PI × (R_sem + R_spa) × R_RI, from 0 to 2",
    "mean_product": "R_PI × (R_sem + R_spa) / 2 × R_RI, from 0 to 1",
    "v2": "R_PI × (R_sem + R_spa) / 2 × R_RI × R_HPS, from 0 to 1",
    "sum": "the weighted sum of the components",
}
_NEEDS_EVERY_STAGE = ("product", "mean_product", "v2")


def _total_range(method: Any, components: dict[str, Any], weights: Any) -> str:
    """The total's range under the rewards' combine method ('' when it is not known)."""
    if method == "product":
        return "0–2"
    if method in ("mean_product", "v2"):
        return "0–1"
    if method == "sum":
        weights = weights if isinstance(weights, dict) else {}
        parts = [float(weights.get(name, 1.0)) for name in components]
        low, high = sum(min(0.0, w) for w in parts), sum(max(0.0, w) for w in parts)
        return f"{low:g}–{high:g}"
    return ""


def _edge_note(chain: str, image_width: int) -> str:
    """The planned boxes at (or within two pixels of) the image's edge, whose objects tend to come out cut off
    and so unrecognised ('' if none)."""
    margin = 2 * GRID / max(1, image_width)
    names = [
        obj.name
        for obj in parse_chain(chain).objects
        if obj.box is not None
        and (min(obj.box.x1, obj.box.y1) <= margin or max(obj.box.x2, obj.box.y2) >= GRID - margin)
    ]
    if not names:
        return ""
    listed = ", ".join(repr(name) for name in dict.fromkeys(names))
    return f"Here the planned box of {listed} reaches the image's edge, where the object is easily cut off."


def _cpu(source: EditSource) -> EditSource:
    """`source` with its image tokens in host memory (a session keeps dozens; the sampler moves them back)."""
    source.image_ids = source.image_ids.detach().cpu()
    return source


def _edit_job(entry: Entry, plan: EditPlan, redraw: bool = False) -> Job:
    """The job that draws an edit of `entry`: its seed and index, the plan's chain, the source's tokens kept
    outside the plan's mask (`redraw`: only its pixels)."""
    return Job(
        plan.prompt,
        entry.seed,
        entry.sample_index,
        chain=plan.chain,
        source_ids=entry.source.image_ids,
        edit_mask=plan.mask,
        redraw=redraw,
    )


def _failed(what: str, exc: Exception) -> gr.Error:
    """The page's one line for an unexpected failure (logged with its traceback): the demo stays usable."""
    log.exception("demo: %s failed", what.lower())
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return gr.Error(f"{what} failed: {_escape(first)}")


def _box_text(box: Box | None) -> str:
    return "no box" if box is None else f"({box.x1},{box.y1}),({box.x2},{box.y2})"


def _snap_line(typed: Box, drawn: Box) -> str:
    """'(700,100),(900,300) drawn as (703,94),(906,297): the model's grid' for a typed box that was snapped."""
    return f"{_box_text(typed)} drawn as {_box_text(drawn)}: the model's grid"


def _sentence(exc: Exception) -> str:
    """An exception's one-line message as a sentence for the page (capitalised, escaped)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _escape(text[:1].upper() + text[1:])


def _edit_note(entry: Entry, edited: Entry, kind: str, plan: EditPlan | None, snapped, redrawn: bool = False) -> str:
    """What an edit did, in Markdown (everything quoted from the chain or prompt escaped)."""
    lines = [f"**{_md_escape(entry.label)}** (left) and its edit **{_md_escape(edited.label)}** (right)."]
    if kind == "prompt":
        lines.append(f"New prompt: {_md_escape(edited.prompt)} (was: {_md_escape(entry.prompt)}).")
    changes = plan.changes if plan is not None else []
    if changes:
        described = "; ".join(
            f"{_md_escape(c.name)} {c.change} "
            + (
                f"to {_md_escape(_box_text(c.after))}"
                if c.change == "added"
                else f"from {_md_escape(_box_text(c.before))}"
                if c.change == "removed"
                else f"{_md_escape(_box_text(c.before))} → {_md_escape(_box_text(c.after))}"
            )
            for c in changes
        )
        lines.append(f"Changed: {described}.")
    mask = edited.edit_mask
    if mask is None:
        lines.append("The whole image was re-sampled (“keep everything else” was off).")
    elif bool(mask.all()):
        lines.append(f"The edit covers all {mask.numel()} token cells: nothing of {_md_escape(entry.label)} is kept.")
    elif redrawn:
        count, total = int(mask.sum()), mask.numel()
        lines.append(
            f"Redrew every token from the plan and kept {_md_escape(entry.label)}'s pixels outside the {count} "
            f"tinted cells of {total}."
        )
    else:
        count, total = int(mask.sum()), mask.numel()
        lines.append(
            f"Re-sampled {count} of {total} token cells ({count / total:.0%}, tinted); the other {total - count} "
            f"are {_md_escape(entry.label)}'s."
        )
    step = GRID / edited.image.width  # the model's coordinates: one pixel edge every `step` grid units
    for typed, drawn in snapped:
        lines.append(f"Box {_md_escape(_snap_line(typed, drawn))} (one pixel is {step:g} units).")
    return "  \n".join(lines)


MASK_TINT = (255, 0, 170)


def _mask_view(image: Image.Image, mask: torch.Tensor) -> Image.Image:
    """`image` enlarged with the cells of `mask` ([side * side] bool, row-major) tinted and their outer edge
    drawn inside them, so the picture under the tint stays readable and nothing outside the cells changes."""
    shown = _enlarged(image)
    side = int(round(mask.numel() ** 0.5))
    cells = mask.reshape(side, side).tolist()
    step_x, step_y = shown.width / side, shown.height / side
    alpha = Image.new("L", shown.size, 0)
    draw = ImageDraw.Draw(alpha)
    line = max(2, round(min(step_x, step_y) / 12))
    for r in range(side):
        for c in range(side):
            if not cells[r][c]:
                continue
            x0, y0 = round(c * step_x), round(r * step_y)
            x1, y1 = round((c + 1) * step_x) - 1, round((r + 1) * step_y) - 1
            draw.rectangle((x0, y0, x1, y1), fill=64)
            edges = (  # (free neighbour?, the strip of this cell along that side)
                (r == 0 or not cells[r - 1][c], (x0, y0, x1, y0 + line - 1)),
                (r == side - 1 or not cells[r + 1][c], (x0, y1 - line + 1, x1, y1)),
                (c == 0 or not cells[r][c - 1], (x0, y0, x0 + line - 1, y1)),
                (c == side - 1 or not cells[r][c + 1], (x1 - line + 1, y0, x1, y1)),
            )
            for free, strip in edges:
                if free:
                    draw.rectangle(strip, fill=255)
    return Image.composite(Image.new("RGB", shown.size, MASK_TINT), shown, alpha)


def _table_value(rows: list[list[str]]) -> dict[str, Any]:
    """The plan table's value: `rows`, with every cell `cell_problems` finds fault with marked."""
    marks = cell_problems(rows)
    styling = [[BAD_CELL_STYLE if mark else "" for mark in row] for row in marks]
    return {
        "headers": list(PLAN_COLUMNS),
        "data": rows,
        "metadata": {"styling": styling if any(any(r) for r in styling) else None, "display_value": None},
    }


def highlighted_chain(chain: str) -> list[tuple[str, str | None]]:
    """The chain as (text, category) spans: free text plain, each object as 'name (x1,y1)-(x2,y2)' labelled
    with its number (its table row)."""
    spans: list[tuple[str, str | None]] = []
    number = 0
    for segment in parse_chain(chain).segments:
        if isinstance(segment, PlannedObject):
            number += 1
            box = segment.box
            where = "no box" if box is None else f"({box.x1},{box.y1})-({box.x2},{box.y2})"
            spans.append((f"{segment.name} {where}", str(number)))
        else:
            spans.append((segment, None))
    return spans


def chain_colors(chain: str) -> dict[str, str]:
    """Each object number's colour: its name's colour in the plan drawings."""
    objects = parse_chain(chain).objects
    return {str(i + 1): _hex(object_color(obj.name)) for i, obj in enumerate(objects)}


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


_CSS = """
.gotr1-problems { padding: 8px 12px; border-radius: 6px; font-size: 14px; }
.gotr1-problems ul { margin: 4px 0 0 18px; }
.gotr1-ok { background: #e9f7ef; border: 1px solid #57b77c; color: #14532d; }
.gotr1-bad { background: #fff4e5; border: 1px solid #f0a030; color: #6b3a00; }
.gotr1-rewards { border-collapse: collapse; font-size: 15px; width: 100%; }
.gotr1-rewards caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
.gotr1-rewards th { font-weight: 400; font-size: 12px; color: #666; text-align: right; padding: 0 10px; }
.gotr1-rewards td { padding: 3px 10px; border-bottom: 1px solid #ddd; }
.gotr1-rewards td:nth-child(2) { text-align: right; font-variant-numeric: tabular-nums; }
.gotr1-rewards td[title] { cursor: help; }
.gotr1-rewards .gotr1-range { text-align: right; color: #666; font-size: 13px; white-space: nowrap; }
.gotr1-rewards .gotr1-why td { font-size: 13px; color: #7a3e00; background: #fff8ee; text-align: left; }
.gotr1-total td { font-weight: 700; border-top: 2px solid #888; }
.gotr1-missing { color: #a15c00; font-style: italic; }
.gotr1-note { color: #555; font-style: italic; }
/* 64-px images: enlarged by whole pixels on the server, drawn crisp, square and as wide as their panel (no
   empty band below, nothing cut off); the panel's name sits above the image instead of over its top */
.gotr1-pixels { height: auto !important; }
.gotr1-pixels .image-container, .gotr1-pixels .image-frame, .gotr1-pixels .image-container > button {
  height: auto !important; width: 100% !important; }
.gotr1-pixels img { image-rendering: pixelated; width: 100% !important; height: auto !important;
  max-width: 100% !important; max-height: none !important; aspect-ratio: 1 / 1; object-fit: contain; }
.gotr1-pixels label[data-testid="block-label"] { position: static; margin-bottom: 2px; }
#samples img { image-rendering: pixelated; }
/* the gallery is as tall as its thumbnails (Gradio fixes it at 450 px), scrolling beyond two rows; as many
   columns as fit at a readable size */
#samples .grid-wrap { min-height: 0; height: auto; max-height: 460px; }
#samples .grid-container { grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)) !important; }
/* the download's file name wraps (at its hyphens) instead of being cut to "gotr1-s... .zip" */
#download .filename { flex-wrap: wrap; overflow: visible; font-size: 13px; }
#download .filename .stem { white-space: normal; overflow: visible; text-overflow: clip; }
/* gallery captions ("#1 edit 2 · 1.93") wrap rather than end in "..." */
#samples .caption-label { white-space: normal; max-width: calc(100% - 8px); opacity: 0.85; }
#plan-table td, #plan-table th { padding-left: 6px; padding-right: 6px; }
#compare-note { font-size: 14px; }
"""


def _theme() -> gr.themes.Base:
    """System fonts only: the page loads nothing from the internet (the default theme fetches Google fonts)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


@dataclass(frozen=True)
class _Controls:
    """The generation inputs and the gallery they fill (the page's top row)."""

    prompt: gr.Textbox
    num_chains: gr.Slider
    seed: gr.Number
    cfg: gr.Number
    text_t: gr.Number
    image_t: gr.Number
    generate: gr.Button
    gallery: gr.Gallery


@dataclass(frozen=True)
class _Detail:
    """The selected sample's read-only views: heading, an edit beside its original, the three images, rewards,
    download, highlighted chain."""

    heading: gr.Markdown
    compare: gr.Row
    compare_note: gr.Markdown
    before: gr.Image
    after: gr.Image
    image: gr.Image
    overlay: gr.Image
    plan: gr.Image
    rewards: gr.HTML
    download: gr.File
    chain_view: gr.HighlightedText


@dataclass(frozen=True)
class _Editor:
    """The plan editor (the table and the chain text kept in step, "keep everything else", the re-render button
    and the verdict) and the edit by prompt."""

    table: gr.Dataframe
    chain_text: gr.Textbox
    keep: gr.Checkbox
    redraw: gr.Checkbox
    rerender: gr.Button
    problems: gr.HTML
    edit_prompt: gr.Textbox
    prompt_edit: gr.Button


class _Handlers(NamedTuple):
    """The page's own callbacks over `app` (their names are the event names Gradio records)."""

    on_generate: Any
    check_generate: Any
    on_select: Any
    on_rerender: Any
    check_rerender: Any
    on_prompt_edit: Any
    check_prompt_edit: Any
    on_table_edit: Any
    on_text_edit: Any


def _sampling_inputs(sampling: SamplingConfig) -> tuple[gr.Number, gr.Number, gr.Number, gr.Number]:
    """Seed (0 to start), CFG weight and the two temperatures, two to a row, defaulting to the engine's settings."""
    with gr.Row():
        seed = gr.Number(
            value=0,
            precision=0,
            minimum=0,
            maximum=MAX_SEED,
            label="Seed",
            min_width=100,
            elem_id="seed",
        )
        cfg = gr.Number(
            value=sampling.cfg_weight, minimum=0, step=0.5, label="CFG weight", min_width=100, elem_id="cfg"
        )
    with gr.Row():
        text_t = gr.Number(
            value=sampling.text_temperature,
            minimum=0,
            step=0.1,
            label="Text temperature",
            min_width=100,
            elem_id="text-temp",
        )
        image_t = gr.Number(
            value=sampling.image_temperature,
            minimum=0,
            step=0.1,
            label="Image temperature",
            min_width=100,
            elem_id="image-temp",
        )
    return seed, cfg, text_t, image_t


def _controls_panel(engine: Engine) -> _Controls:
    """The top row: prompt and sampling inputs on the left, the samples gallery on the right (below it on a
    narrow window)."""
    gallery_label = "**Samples** — click one to inspect and edit it"
    if engine.rewards is not None:
        gallery_label += " (captions: sample · total reward)"
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            prompt = gr.Textbox(  # one line grows to three; Enter generates
                label="Prompt (Enter generates)",
                placeholder="a red circle to the left of a blue square",
                lines=1,
                max_lines=3,
                max_length=MAX_PROMPT_CHARS,
                elem_id="prompt",
            )
            num_chains = gr.Slider(1, MAX_CHAINS, value=4, step=1, label="Number of chains", elem_id="num-chains")
            seed, cfg, text_t, image_t = _sampling_inputs(engine.sampling)
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
        with gr.Column(scale=5, min_width=400):
            gr.Markdown(gallery_label)  # above, not Gradio's floating label, which covers the thumbnails
            gallery = gr.Gallery(
                label="Samples",
                show_label=False,
                columns=6,
                allow_preview=False,
                object_fit="contain",
                format="png",
                elem_id="samples",
            )
    return _Controls(prompt, num_chains, seed, cfg, text_t, image_t, generate, gallery)


def _pixels(label: str, elem_id: str) -> gr.Image:
    """A read-only image panel for an enlarged 64-px image: square, as wide as its column, crisp pixels."""
    return gr.Image(
        label=label,
        type="pil",
        format="png",
        interactive=False,
        min_width=PANEL_MIN_WIDTH,
        buttons=["download", "fullscreen"],
        elem_id=elem_id,
        elem_classes=["gotr1-pixels"],
    )


def _detail_panel() -> _Detail:
    """The selected sample: heading; for an edit, the original beside the edit with its re-sampled cells; the
    image / plan over it / plan alone; rewards and download; the chain."""
    heading = gr.Markdown(elem_id="sample-heading")
    with gr.Row(equal_height=False, visible=False, elem_id="compare") as compare:  # shown for an edit
        before = _pixels("Before: the sample it was edited from", "compare-before")
        after = _pixels("After: the re-sampled token cells tinted", "compare-after")
        compare_note = gr.Markdown(min_width=PANEL_MIN_WIDTH, elem_id="compare-note")
    with gr.Row(equal_height=False):  # four across; on a narrow window the rewards go below the images
        image = _pixels("Image", "plain-image")
        overlay = _pixels("Plan over the image", "result-image")
        plan = _pixels("Plan", "plan-canvas")
        with gr.Column(min_width=PANEL_MIN_WIDTH):
            rewards = gr.HTML(elem_id="rewards")
            download = gr.File(label="Download this sample (zip)", interactive=False, elem_id="download")
    chain_view = gr.HighlightedText(
        label="Reasoning chain (objects numbered as in the table)",
        show_legend=False,
        combine_adjacent=False,
        elem_id="chain-view",
    )
    return _Detail(heading, compare, compare_note, before, after, image, overlay, plan, rewards, download, chain_view)


def _editor_panel() -> _Editor:
    """The plan editor: table beside the chain text (below it on a narrow window), "keep everything else" and
    the re-render button, the validator's verdict; then the edit by prompt."""
    gr.Markdown(
        "### Edit the plan\nChange a cell or the text (they stay in step), then re-render: same seed, new plan. "
        f"Boxes are on the 0..{GRID} grid; a cell the chain cannot use is marked."
    )
    with gr.Row(equal_height=False):
        table = gr.Dataframe(
            headers=list(PLAN_COLUMNS),
            datatype="str",
            type="array",
            column_count=len(PLAN_COLUMNS),
            column_widths=["36%", "14%", "14%", "14%", "14%"],  # the rest: the row numbers
            interactive=True,
            show_row_numbers=True,
            wrap=True,
            label=f"Objects (boxes on the 0..{GRID} grid)",
            scale=1,
            min_width=380,
            elem_id="plan-table",
        )
        with gr.Column(scale=1, min_width=380):
            chain_text = gr.Textbox(
                label="Chain (free text and tags)",
                lines=5,
                max_lines=14,
                max_length=MAX_CHAIN_CHARS,
                elem_id="chain-text",
            )
            keep = gr.Checkbox(
                value=True,
                label="Keep everything else: re-sample only the cells of the boxes you changed",
                elem_id="keep",
            )
            redraw = gr.Checkbox(
                value=False,
                label="Redraw: sample the whole image, keep only the pixels outside those cells (a full image's "
                "time; what a new colour needs here)",
                elem_id="redraw",
            )
            rerender = gr.Button("Re-render with this plan", variant="primary", elem_id="rerender")
    problems = gr.HTML(elem_id="problems")
    gr.Markdown(
        "### Edit by prompt\nA new prompt for this sample: the model plans it keeping what it can of the old "
        "plan in place, and only the cells that plan changes are re-sampled."
    )
    with gr.Row(equal_height=True):
        edit_prompt = gr.Textbox(
            label="New prompt for this sample (Enter edits)",
            lines=1,
            max_lines=3,
            max_length=MAX_PROMPT_CHARS,
            scale=4,
            min_width=300,
            elem_id="edit-prompt",
        )
        prompt_edit = gr.Button("Edit by prompt", variant="primary", scale=1, min_width=160, elem_id="prompt-edit")
    return _Editor(table, chain_text, keep, redraw, rerender, problems, edit_prompt, prompt_edit)


def _view_components(detail: _Detail, editor: _Editor, gallery: gr.Gallery, base_chain: gr.State) -> dict[str, Any]:
    """VIEW_FIELDS -> component, in that order, so a `DemoApp.view` dict maps onto the page's outputs."""
    components = {
        "gallery": gallery,
        "heading": detail.heading,
        "image": detail.image,
        "overlay": detail.overlay,
        "plan": detail.plan,
        "rewards": detail.rewards,
        "chain_view": detail.chain_view,
        "table": editor.table,
        "chain_text": editor.chain_text,
        "base_chain": base_chain,
        "problems": editor.problems,
        "download": detail.download,
        "compare": detail.compare,
        "compare_note": detail.compare_note,
        "before": detail.before,
        "after": detail.after,
        "edit_prompt": editor.edit_prompt,
    }
    assert tuple(components) == VIEW_FIELDS
    return components


def _show(state: DemoSession | None, view: dict[str, Any]) -> list[Any]:
    """A (session, view) pair as output values: the gallery keeps its selection, the chain its colours, the
    table its marked cells; the before/after pair shows only for an edit."""
    values = dict(view)
    selected = state.selected if state is not None and state.entries else None
    values["gallery"] = gr.Gallery(value=view["gallery"], selected_index=selected)
    values["chain_view"] = gr.HighlightedText(value=view["chain_view"], color_map=chain_colors(view["chain_text"]))
    values["table"] = _table_value(view["table"])
    values["compare"] = gr.Row(visible=view["compare"])
    return [state, *(values[name] for name in VIEW_FIELDS)]


def _softly(handler, outputs: int):
    """Run `handler`; a failure becomes a message and leaves the page as it was. (A raised error
    would mark every output component as failed and cover them, the editor included.)"""

    @functools.wraps(handler)  # keeps the signature Gradio reads (gr.SelectData)
    def run(*args):
        try:
            return handler(*args)
        except gr.Error as exc:
            gr.Warning(str(exc.message), title="Not done")
        except Exception as exc:  # noqa: BLE001 - the page must stay usable whatever happened
            log.exception("demo: %s failed", handler.__name__)
            gr.Warning(_escape(str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__), title="Error")
        return [gr.skip()] * outputs

    return run


def _verdicts(refusal, fields):
    """One gr.validate per input: the refused one carries the message, shown beside it."""
    return [
        gr.validate(refusal is None or refusal[0] != field, refusal[1] if refusal and refusal[0] == field else "")
        for field in fields
    ]


def _handlers(app: DemoApp) -> _Handlers:
    """The event callbacks and validators over `app`, each returning page outputs (see `_show`)."""

    def on_generate(state, text, count, seed_value, cfg_weight, text_temperature, image_temperature):
        return _show(*app.generate(state, text, count, seed_value, cfg_weight, text_temperature, image_temperature))

    def check_generate(state, *values):
        fields = ("session", "prompt", "num_chains", "seed", "cfg_weight", "text_temperature", "image_temperature")
        return _verdicts(app.check_generate(*values), fields)

    def on_select(state, event: GalleryClick):
        return _show(*app.select(state, event.index))

    def on_rerender(state, chain, keep, redraw):
        return _show(*app.rerender(state, chain, bool(keep), bool(redraw)))

    def check_rerender(state, chain, keep, redraw):
        return _verdicts(app.check_rerender(state, chain, bool(keep)), ("session", "chain", "keep", "redraw"))

    def on_prompt_edit(state, prompt):
        return _show(*app.prompt_edit(state, prompt))

    def check_prompt_edit(state, prompt):
        return _verdicts(app.check_prompt_edit(state, prompt), ("session", "edit_prompt"))

    def on_table_edit(rows, base_chain):
        chain, problems = app.table_edited(rows, base_chain)
        return chain, problems, _table_value(plan_rows(chain) if rows is None else _table_rows(rows))

    def on_text_edit(chain):
        rows, base, problems = app.text_edited(chain)
        return _table_value(rows), base, problems

    return _Handlers(
        on_generate,
        check_generate,
        on_select,
        on_rerender,
        check_rerender,
        on_prompt_edit,
        check_prompt_edit,
        on_table_edit,
        on_text_edit,
    )


def _wire_events(
    app: DemoApp, session: gr.State, base_chain: gr.State, controls: _Controls, editor: _Editor, view_outputs: list
) -> None:
    """Generation, re-render and prompt edits share the engine's queue slot; the editor's sync events skip it."""
    handlers = _handlers(app)
    generate_inputs = [
        session,
        controls.prompt,
        controls.num_chains,
        controls.seed,
        controls.cfg,
        controls.text_t,
        controls.image_t,
    ]
    private = {"api_visibility": "private"}  # the HTTP server is the API; these are the page's own
    engine_slot = {"concurrency_id": "engine", **private}
    for trigger in (controls.generate.click, controls.prompt.submit):
        trigger(
            _softly(handlers.on_generate, len(view_outputs)),
            generate_inputs,
            view_outputs,
            validator=handlers.check_generate,
            **engine_slot,
        )
    controls.gallery.select(_softly(handlers.on_select, len(view_outputs)), [session], view_outputs, **private)
    # Cheap and unqueued; "always_last" so the final keystroke is never dropped while one is in flight.
    editing = {"queue": False, "trigger_mode": "always_last", "show_progress": "hidden", **private}
    table, chain_text = editor.table, editor.chain_text
    # Unprocessed: Gradio's own Dataframe preprocessing raises (a traceback) on a None payload. The table is
    # given back with the cells at fault marked (an output update, which fires no `.input`).
    table.input(
        handlers.on_table_edit, [table, base_chain], [chain_text, editor.problems, table], preprocess=False, **editing
    )
    chain_text.input(handlers.on_text_edit, [chain_text], [table, base_chain, editor.problems], **editing)
    editor.rerender.click(
        _softly(handlers.on_rerender, len(view_outputs)),
        [session, chain_text, editor.keep, editor.redraw],
        view_outputs,
        validator=handlers.check_rerender,
        **engine_slot,
    )
    for trigger in (editor.prompt_edit.click, editor.edit_prompt.submit):
        trigger(
            _softly(handlers.on_prompt_edit, len(view_outputs)),
            [session, editor.edit_prompt],
            view_outputs,
            validator=handlers.check_prompt_edit,
            **engine_slot,
        )


def build_demo(engine: Engine, *, app: DemoApp | None = None) -> gr.Blocks:
    """The demo page over `engine` (not launched; `launch_demo` adds the queue, theme and CSS)."""
    app = app or DemoApp(engine)
    with gr.Blocks(
        title=f"GoT-R1 demo — {engine.name}",
        analytics_enabled=False,
        delete_cache=(3600, 6 * 3600),  # hourly, drop shown images older than six hours
    ) as demo:
        gr.Markdown(
            f"## GoT-R1 demo — `{_escape(engine.name)}`\n"
            "The model writes a reasoning chain that plans the image (objects and their boxes on a "
            f"0..{GRID} grid), then draws it. Generate samples, pick one, edit its plan (or its prompt) and "
            "re-render it: by default only what the edit changes is redrawn."
        )
        session = gr.State(None, delete_callback=_remove_folder)
        base_chain = gr.State("")
        controls = _controls_panel(engine)
        detail = _detail_panel()
        editor = _editor_panel()
        components = _view_components(detail, editor, controls.gallery, base_chain)
        view_outputs = [session, *components.values()]
        _wire_events(app, session, base_chain, controls, editor, view_outputs)
    demo.gotr1_app = app  # the callbacks, for tests and scripts
    return demo


def launch_demo(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    max_queue: int = 16,
    concurrency: int = 1,
    prevent_thread_lock: bool = False,
) -> gr.Blocks:
    """Serve the demo on host:port (blocking unless `prevent_thread_lock`); returns the launched Blocks.

    max_queue: requests waiting beyond this are turned away with a message; concurrency: events that run
    at once (sampling is serialised by the engine's lock anyway).

    Gradio launches quietly (its own start-up lines tell people to set `share=True` in `launch()`, which a
    `gotr1 demo` user cannot); the address is logged here instead, naming `--share`.

    Blocking, SIGTERM stops it as Ctrl-C does (the server closes) and the app's temporary folder is removed
    before this returns; the default SIGTERM would end the process with the folder left behind.
    """
    blocking = not prevent_thread_lock and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if blocking else None
    demo = None
    try:
        demo = build_demo(engine)
        demo.queue(max_size=max_queue, default_concurrency_limit=concurrency)
        demo.launch(
            server_name=host,
            server_port=port,
            share=share,
            prevent_thread_lock=True,  # blocked below, after saying where the page is
            show_error=True,
            quiet=True,
            ssr_mode=False,
            theme=_theme(),
            css=_CSS,
            footer_links=[],
        )
        if not prevent_thread_lock:
            log.info("%s", _address_line(demo, share))
            demo.block_thread()
    finally:
        if blocking:
            signal.signal(signal.SIGTERM, previous)
            if demo is not None:
                demo.gotr1_app.close()
    return demo


def _address_line(demo: gr.Blocks, share: bool) -> str:
    """Where the demo is, and how to share it (gotr1's flag, not Gradio's launch() argument)."""
    line = f"gotr1 demo: open {demo.local_url} in a browser (Ctrl-C stops it)"
    if share and demo.share_url:
        return f"{line}; public link: {demo.share_url}"
    if share:
        return f"{line}; --share could not open a public link (see above)"
    return f"{line}; add --share for a public gradio.live link"


def _interrupt(signum, frame) -> None:
    """SIGTERM as a KeyboardInterrupt: Gradio's launch then closes its server and returns."""
    raise KeyboardInterrupt
