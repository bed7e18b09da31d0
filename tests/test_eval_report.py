"""`gotr1 eval` report: runs side by side, the failure split, escaping, tolerance, and a real browser render."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from gotr1.eval.benchmark import summarize_category
from gotr1.eval.records import ImageScore
from gotr1.eval.report import ReportError, best_and_worst, write_report
from gotr1.layout import object_color

EVIL = 'a red <b>circle</b> & "blue" square'
CHAIN = "<script>alert('x')</script> a red circle at [100,100,400,400]"
NOTE = "detector: OWLv2 stands in for UniDet (approximation; not the official number)"
REFERENCES = [
    {"label": "GoT-R1-1B", "scores": {"color": 0.7632, "spatial": 0.2674, "shape": 0.5174}, "source": "GoT-R1 paper"},
    {"label": "Colour-only model", "scores": {"color": 0.5}, "source": "somebody's table"},
    {"label": "Unrelated", "scores": {"texture": 0.1}, "source": "not shown: no category of ours"},
]
# (category, prompt, image index, score, plan score); None score = could not score
SFT = [
    ("color", EVIL, 0, 0.2, 0.3),  # plan wrong
    ("color", EVIL, 1, 0.9, 1.0),
    ("color", "a green triangle", 0, 0.3, 0.8),  # image off a right plan
    ("color", "a green triangle", 1, 0.4, None),  # plan not judged
    ("color", "a yellow star", 0, 1.0, 1.0),
    ("color", "a yellow star", 1, None, None),  # not scored
    ("spatial", "a circle left of a square", 0, 0.0, 0.0),
    ("spatial", "a circle left of a square", 1, 0.0, 0.0),
    ("spatial", "a square above a star", 0, 1.0, 1.0),
    ("spatial", "a square above a star", 1, 0.6, 0.2),
]
GRPO = [(c, p, k, None if s is None else min(1.0, s + 0.3), ps) for c, p, k, s, ps in SFT]


def _draw(path: Path, color: str, size: int = 96) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((10, 10, 50, 50), fill=color)
    ImageDraw.Draw(image).rectangle((55, 40, 90, 85), fill="blue")
    image.save(path)


def make_run(
    root: Path, model: str, rows, *, benchmark: str = "t2i-compbench", scorer: str = "judge", results: bool = True
) -> Path:
    """A scored run folder as `gotr1 eval sample` + `score` leave it (images, records, plan overlays)."""
    root.mkdir(parents=True)
    (root / "run.json").write_text(
        json.dumps(
            {
                "benchmark": benchmark,
                "model": model,
                "model_source": f"/models/{model}",
                "sampling": {"cfg_weight": 5.0},
                "images_per_prompt": 2,
                "options": {},
                "categories": ["color", "spatial"],
                "updated": "2025-01-01",
            }
        )
    )
    scores = []
    for n, (category, prompt, _k, score, plan) in enumerate(rows):
        image = f"{category}/samples/{n:06d}.png"
        record = f"{category}/plans/{n:06d}.json"
        if n != 3:  # one image never written
            _draw(root / image, ["red", "green", "orange"][n % 3])
        if n == 0:  # sampling drew the plan overlay: the report shows it as is
            _draw(root / f"{category}/plans/{n:06d}.png", "purple")
        if n not in (3, 4):  # one record missing on disk, and image 3 has neither
            (root / record).parent.mkdir(parents=True, exist_ok=True)
            (root / record).write_text(
                json.dumps(
                    {
                        "prompt": prompt,
                        "chain": CHAIN,
                        "objects": [
                            {"name": "red circle", "box": [100, 100, 500, 500]},
                            {"name": "square", "box": None},
                            {"name": "broken", "box": [1, 2]},
                        ],
                        "plan": f"{category}/plans/{n:06d}.png",
                    }
                )
            )
        scores.append(
            ImageScore(
                image,
                category,
                prompt,
                score,
                plan,
                None if score is not None else "no detection",
                record if n != 5 else None,
            )
        )
    (root / "scores").mkdir()
    (root / "scores" / f"{scorer}.jsonl").write_text("".join(json.dumps(s.to_dict()) + "\n" for s in scores))
    if results:
        categories = {c: summarize_category([s for s in scores if s.category == c], 0.5) for c in ("color", "spatial")}
        summary = {"categories": categories, "overall": sum(c["score"] for c in categories.values()) / 2}
        (root / "results").mkdir()
        (root / "results" / f"{scorer}.json").write_text(
            json.dumps(
                {
                    "benchmark": benchmark,
                    "scorer": scorer,
                    "notes": [NOTE],
                    "run": json.loads((root / "run.json").read_text()),
                    "summary": summary,
                    "references": REFERENCES,
                }
            )
        )
    return root


@pytest.fixture()
def runs(tmp_path: Path) -> tuple[Path, Path]:
    return make_run(tmp_path / "sft", "janus-sft", SFT), make_run(tmp_path / "grpo", "janus-grpo", GRPO)


def _row(page: str, start: str) -> str:
    """The HTML of the table row that opens with ``start``."""
    at = page.index(start)
    return page[at : page.index("</tr>", at)]


def _cell(row: str, attribute: str) -> str:
    match = re.search(re.escape(attribute) + r"[^>]*>([^<]*)", row)
    assert match, f"no {attribute} in {row[:200]}"
    return match.group(1)


def test_report_compares_runs_and_splits_failures(runs, tmp_path):
    sft, grpo = runs
    out = write_report([sft, grpo], tmp_path / "report", grid_images=6)
    assert out == tmp_path / "report" / "report.html"
    page = out.read_text()

    # scores table: both runs, each category, overall; the best run per column is bold
    sft_row = _row(page, '<tr class="run" data-run="sft (janus-sft)">')
    grpo_row = _row(page, '<tr class="run" data-run="grpo (janus-grpo)">')
    assert _cell(sft_row, 'data-category="color"') == "0.5600"  # (0.2 + 0.9 + 0.3 + 0.4 + 1.0) / 5
    assert _cell(sft_row, 'data-category="spatial"') == "0.4000"
    assert _cell(sft_row, 'data-category="overall"') == "0.4800"
    assert "5/6 scored" in sft_row  # the unscored image is counted, not hidden
    assert _cell(grpo_row, 'data-category="spatial"') == "0.6250"
    assert '<td class="best" data-category="spatial">0.6250' in grpo_row

    # published rows, labelled, with cells only where a category was published
    ref = _row(page, '<tr class="reference" data-reference="GoT-R1-1B">')
    assert "published" in ref and "GoT-R1 paper" in ref and _cell(ref, 'data-category="color"') == "0.7632"
    colour_only = _row(page, '<tr class="reference" data-reference="Colour-only model">')
    assert _cell(colour_only, 'data-category="spatial"') == ""
    assert _cell(colour_only, 'data-category="overall"') == ""
    assert 'data-reference="Unrelated"' not in page
    assert "Published references" in page

    # the substitute's notes are shown up front, and the runs are marked as such
    assert NOTE in page and 'class="callout warn"' in page and "Not the official t2i-compbench metric" in page
    assert page.index(NOTE) < page.index('id="scores"')

    # failure split: color in SFT has 3 failures of 5 scored: one of each kind
    split = _row(page, '<tr data-category="color" data-run="sft (janus-sft)">')
    assert _cell(split, 'data-split="total"') == "3 / 5"
    assert _cell(split, 'data-split="plan_wrong"') == "1" and "33%" in split
    assert _cell(split, 'data-split="image_off_plan"') == "1"
    assert _cell(split, 'data-split="plan_not_judged"') == "1"
    spatial = _row(page, '<tr data-category="spatial" data-run="sft (janus-sft)">')
    assert _cell(spatial, 'data-split="plan_wrong"') == "2" and "100%" in spatial  # 0.6 passes
    total = _row(page, '<tr class="total" data-category="All categories" data-run="sft (janus-sft)">')
    assert _cell(total, 'data-split="total"') == "5 / 9" and _cell(total, 'data-split="plan_wrong"') == "3"

    # text from prompts and chains is escaped everywhere
    assert "&lt;b&gt;circle&lt;/b&gt; &amp; &quot;blue&quot; square" in page
    assert "<b>circle" not in page and "<script" not in page and "&lt;script&gt;alert" in page

    # self-contained: every picture embedded, nothing fetched
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, re.I)
    assert "@import" not in page
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(sources) > 10 and all(
        s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in sources
    )

    # no overlay PNG on disk: the plan is drawn over the image (the planned box's colour appears)
    tile = re.search(r'data-path="color/samples/000002.png"><img src="data:image/(?:png|jpeg);base64,([^"]+)"', page)
    with Image.open(io.BytesIO(base64.b64decode(tile.group(1)))) as thumb:
        colors = {c for _, c in thumb.convert("RGB").getcolors(1 << 16)}
    assert object_color("red circle") in colors

    # tolerant: a missing image and a missing record become text
    assert "image missing: color/samples/000003.png" in page
    assert "no sample record" in page
    assert "not scored: no detection" in page

    # grids: up to grid_images per run and category (color has 6 images, spatial 4)
    assert page.count('<div class="grid" data-run=') == 4
    assert page.count('<figure class="tile"') == 2 * (6 + 4)
    few = write_report([sft], tmp_path / "few", grid_images=3).read_text()
    color = few[few.index('id="cat-color"') : few.index('id="cat-spatial"')]
    shown = re.findall(r'<figure class="tile" data-path="([^"]*)"', color)
    assert shown == ["color/samples/000000.png", "color/samples/000002.png", "color/samples/000004.png"]  # 3 prompts

    # best and worst prompts per category: mean per prompt, never in both lists
    card = page[page.index('<div class="card" data-run="sft (janus-sft)">') :]
    best = card[card.index('class="prompts best"') : card.index("</table>")]
    assert best.index("a yellow star") < best.index("&lt;b&gt;circle")
    worst = card[card.index('class="prompts worst"') :]
    assert "a green triangle" in worst[: worst.index("</table>")]

    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results["benchmark"] == "t2i-compbench" and results["scorer"] == "judge"
    assert set(results["runs"]) == {"sft (janus-sft)", "grpo (janus-grpo)"}
    assert results["runs"]["sft (janus-sft)"]["summary"]["categories"]["color"]["failures"]["plan_wrong"] == 1
    sft_results = results["runs"]["sft (janus-sft)"]
    assert sft_results["notes"] == [NOTE] and sft_results["model"] == "janus-sft"
    assert [r["label"] for r in results["references"]] == ["GoT-R1-1B", "Colour-only model"]


def test_labels_are_escaped_and_a_run_without_results_file_is_named(tmp_path):
    sft = make_run(tmp_path / "a", "m", SFT)
    grpo = make_run(tmp_path / "b", "m", GRPO)
    page = write_report([sft, grpo], tmp_path / "out", labels=["SFT <1B>", "GRPO"]).read_text()
    assert 'data-run="SFT &lt;1B&gt;"' in page and "<1B>" not in page
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["runs"]) == ["SFT <1B>", "GRPO"]
    bare = make_run(tmp_path / "c", "m", SFT, results=False)
    with pytest.raises(ReportError, match="results/judge.json"):
        write_report([bare], tmp_path / "out2")


def test_best_and_worst_never_overlap():
    scores = [ImageScore(f"{i}.png", "c", f"p{i}", i / 10) for i in range(3)]
    best, worst = best_and_worst(scores)
    assert [b[0] for b in best] == ["p2", "p1"] and [w[0] for w in worst] == ["p0"]
    assert best_and_worst([]) == ([], [])


def test_errors_name_the_runs(runs, tmp_path):
    sft, _ = runs
    geneval = make_run(tmp_path / "gen", "m", SFT, benchmark="geneval")
    with pytest.raises(ReportError, match=r"different benchmarks: .*sft \(t2i-compbench\).*gen \(geneval\)"):
        write_report([sft, geneval], tmp_path / "o")

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "run.json").write_text(json.dumps({"benchmark": "t2i-compbench"}))
    with pytest.raises(
        ReportError,
        match=f"^{re.escape(str(bare))} has no scores; run gotr1 eval score {re.escape(str(bare))} --scorer NAME$",
    ):
        write_report([bare], tmp_path / "o")

    shutil.copy(sft / "scores" / "judge.jsonl", sft / "scores" / "official.jsonl")
    shutil.copy(sft / "results" / "judge.json", sft / "results" / "official.json")
    with pytest.raises(ReportError, match=r"several scorers \(judge, official\); choose one with --scorer"):
        write_report([sft], tmp_path / "o")
    assert write_report([sft], tmp_path / "o", scorer="official").is_file()
    with pytest.raises(ReportError, match=r"no scores from scorer 'clip' \(it has judge, official\)"):
        write_report([sft], tmp_path / "o", scorer="clip")
    with pytest.raises(ReportError, match="1 labels for 2 runs"):
        write_report([sft, sft], tmp_path / "o", scorer="judge", labels=["x"])
    with pytest.raises(ReportError, match="no run.json"):
        write_report([tmp_path], tmp_path / "o")
    (sft / "scores" / "official.jsonl").write_text('{"path": "x.png", "category": "color"}\nnot json\n')
    with pytest.raises(ReportError, match=r"official.jsonl:2: not a score line"):
        write_report([sft], tmp_path / "o", scorer="official")


def _browser_available() -> bool:
    if importlib.util.find_spec("playwright") is None:
        return False
    from gotr1.eval.browser import BrowserUnavailable, find_chromium

    try:
        find_chromium()
    except BrowserUnavailable:
        return False
    return True


def test_report_renders_in_headless_chromium(runs, tmp_path):
    if not _browser_available():
        if os.environ.get("GOTR1_REQUIRE_BROWSER"):  # CI installs both: there a skip would hide a failure
            pytest.fail("GOTR1_REQUIRE_BROWSER is set but playwright or chromium is missing")
        pytest.skip("needs the playwright package and a Chromium (apt-get install chromium)")
    from gotr1.eval.browser import screenshot

    html = write_report(list(runs), tmp_path / "report", grid_images=4)
    report = screenshot(
        html,
        tmp_path / "report.png",
        selectors=(
            "table.scores tr.run",
            "table.scores tr.reference",
            "table.split tbody tr",
            "figure.tile",
            "img.chart",
        ),
    )
    assert report.console_errors == [] and report.blocked_requests == []
    assert report.images > 10 and report.broken_images == 0
    assert report.counts == {
        "table.scores tr.run": 2,
        "table.scores tr.reference": 2,
        "table.split tbody tr": 6,
        "figure.tile": 16,
        "img.chart": 1,
    }
    assert "t2i-compbench" in report.title
    with Image.open(report.png) as png:
        assert png.width == 1280 and png.height > 1500  # the whole page, not just the first screen
